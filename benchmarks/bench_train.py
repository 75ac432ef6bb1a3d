"""Training throughput on this machine's device: model step vs data loader.

    python benchmarks/bench_train.py [--steps 5] [--workers 2] [--device auto]

For the ``demo`` and ``paper`` presets it prints volumes/s of a forward+backward+Adam step
(batch 4; fp32, and bf16 autocast), volumes/s of the training data loader reading cached
volumes (with augmentation on every item, the worst case), and which of the two bounds a step.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nsclc_engine.data import AugmentConfig, CachedItem, CachedVolumeDataset
from nsclc_engine.model import build_resnet18
from nsclc_engine.preprocess import PRESETS


def model_volumes_per_s(shape, device, precision: str, steps: int, batch: int = 4) -> float:
    model = build_resnet18().to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    volumes = torch.rand((batch, 1, *shape), device=device)
    targets = torch.randint(0, 2, (batch,), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")

    def step():
        with autocast:
            loss = torch.nn.functional.cross_entropy(model(volumes).float(), targets)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - start)


def loader_volumes_per_s(shape, workers: int, n: int = 32, batch: int = 4) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        items = []
        for i in range(n):
            path = Path(tmp) / f"P{i}.image.npy"
            np.save(path, np.random.default_rng(i).random(shape, dtype=np.float32))
            items.append(CachedItem(f"P{i}", 0, path))
        dataset = CachedVolumeDataset(items, AugmentConfig(classes="all"), augment_labels=[0, 1])
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch, num_workers=workers)
        next(iter(loader))  # start the workers
        start = time.perf_counter()
        count = sum(len(batch[1]) for batch in loader)
        return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(auto if args.device == "auto" else args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {name}; torch {torch.__version__}; threads {torch.get_num_threads()}")
    for preset in ("demo", "paper"):
        shape = PRESETS[preset].out_shape
        fp32 = model_volumes_per_s(shape, device, "fp32", args.steps)
        bf16 = model_volumes_per_s(shape, device, "bf16", args.steps)
        loader = loader_volumes_per_s(shape, args.workers)
        memory = ""
        if device.type == "cuda":
            memory = f", peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB"
        bound = "the model" if loader > max(fp32, bf16) else "the data loader"
        print(
            f"{preset} {shape}: model fp32 {fp32:.1f} vol/s, bf16 {bf16:.1f} vol/s (bf16/fp32 "
            f"{bf16 / fp32:.2f}); loader ({args.workers} workers, augmenting) {loader:.1f} vol/s; "
            f"loader/model(best) {loader / max(fp32, bf16):.1f}: {bound} bounds a step{memory}"
        )


if __name__ == "__main__":
    main()
