"""Training throughput on this machine's device: model step vs data loader.

    python benchmarks/bench_train.py [--steps 5] [--workers N] [--device auto]

For the ``demo`` and ``paper`` presets it prints volumes/s of a forward+backward+Adam step
(fp32 and bf16 autocast at batch 4; on CUDA also bf16 with channels_last_3d and bf16 at batch
16, with the peak GPU memory of each), volumes/s of the training data loader reading cached
volumes (with augmentation on every item, the worst case), and which of the two bounds a step.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nsclc_engine.preprocess.dataset import AugmentConfig, CachedItem, CachedVolumeDataset
from nsclc_engine.preprocess.volumes import PRESETS
from nsclc_engine.train.model import build_model


def model_volumes_per_s(
    shape, device, precision: str, steps: int, batch: int = 4, channels_last: bool = False
) -> tuple[float, float]:
    """(volumes/s, peak GPU memory in GiB or 0 on the CPU)."""
    memory_format = torch.channels_last_3d if channels_last else torch.contiguous_format
    model = build_model().to(device, memory_format=memory_format)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    volumes = torch.rand((batch, 1, *shape), device=device).to(memory_format=memory_format)
    targets = torch.randint(0, 2, (batch,), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")

    def step():
        with autocast:
            loss = torch.nn.functional.cross_entropy(model(volumes).float(), targets)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step()  # warm-up (and cuDNN's algorithm search)
    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    rate = steps * batch / (time.perf_counter() - start)
    memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
    return rate, memory


def loader_volumes_per_s(shape, workers: int, n: int = 64, batch: int = 4) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        items = []
        for i in range(n):
            path = Path(tmp) / f"P{i}.image.npy"
            np.save(path, np.random.default_rng(i).random(shape, dtype=np.float32))
            items.append(CachedItem(f"P{i}", 0, path))
        dataset = CachedVolumeDataset(items, AugmentConfig(classes="all"), augment_labels=[0, 1])
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=batch, num_workers=workers, persistent_workers=workers > 0
        )
        for _ in loader:  # a first pass starts the workers and warms the page cache
            pass
        start = time.perf_counter()
        count = sum(len(batch[1]) for batch in loader)
        return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--workers", type=int, default=-1, help="-1: what training uses (auto)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--presets", default="demo,paper")
    args = parser.parse_args()
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(auto if args.device == "auto" else args.device)
    cuda = device.type == "cuda"
    workers = args.workers
    if workers < 0:
        workers = min(8, (os.cpu_count() or 2) - 1) if cuda else 2
    if cuda:
        torch.backends.cudnn.benchmark = True  # as training does: fixed input shapes
    name = torch.cuda.get_device_name(device) if cuda else "CPU"
    print(f"device: {name}; torch {torch.__version__}; threads {torch.get_num_threads()}")
    variants = [("fp32", 4, False), ("bf16", 4, False)]
    if cuda:
        variants += [("bf16", 4, True), ("bf16", 16, False)]
    for preset in args.presets.split(","):
        shape = PRESETS[preset].out_shape
        loader = loader_volumes_per_s(shape, workers)
        rates = {}
        for precision, batch, channels_last in variants:
            label = f"{precision} batch {batch}" + (" channels_last_3d" if channels_last else "")
            rate, memory = model_volumes_per_s(
                shape, device, precision, args.steps, batch, channels_last
            )
            rates[label] = rate
            extra = f", peak GPU memory {memory:.1f} GiB" if cuda else ""
            print(f"{preset} {shape}: model {label}: {rate:.1f} vol/s{extra}")
        baseline = rates["fp32 batch 4"]
        print(
            f"{preset}: ratios against fp32 batch 4 (same run): "
            + ", ".join(f"{k} {v / baseline:.2f}" for k, v in rates.items())
        )
        best = max(rates, key=rates.get)
        bound = "the model" if loader > rates[best] else "the data loader"
        print(
            f"{preset}: loader ({workers} workers, augmenting every item) {loader:.1f} vol/s; "
            f"loader/model({best}) {loader / rates[best]:.2f}: {bound} bounds a step"
        )


if __name__ == "__main__":
    main()
