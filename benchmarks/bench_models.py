"""What each network costs on this machine's device, against the house ResNet-18.

    python benchmarks/bench_models.py [--steps 3] [--device auto] [--presets demo paper]
                                      [--models resnet10 densenet121 ...] [--patients 16]

Per network: its parameter count; at each preset, training-step volumes/s (forward, backward
and Adam at batch 4; bf16 autocast on CUDA, fp32 on the CPU, as training runs) and inference
volumes/s (batch 4, no gradient); each as a ratio to ResNet-18 measured in the same run. Then
frozen-feature extraction in patients/s for the two recipes (FMCIB's wide ResNet-50 on its
50 mm cube; MedicalNet's ResNet-50 on the demo preset), from cached volumes, with randomly
initialised weights (the speed does not depend on them), against the ResNet-18 encoder.
A network that cannot take a preset's input (DenseNet-121 below 32 voxels an axis) says so.
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

from nsclc_engine.features.recipes import recipe
from nsclc_engine.preprocess.volumes import PRESETS
from nsclc_engine.train.config import BACKBONES
from nsclc_engine.train.model import as_encoder, build_model, check_input, parameter_count

BASELINE = "resnet18"


def _timed(step, steps: int, device) -> float:
    step()  # warm-up (and cuDNN's algorithm search)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def rates(name: str, shape, device, steps: int, batch: int = 4) -> tuple[float, float]:
    """(training volumes/s, inference volumes/s) of ``name`` at input ``shape``."""
    model = build_model(name, input_shape=shape).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)
    volumes = torch.rand((batch, 1, *shape), device=device)
    targets = torch.randint(0, 2, (batch,), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def train_step():
        with autocast:
            loss = torch.nn.functional.cross_entropy(model(volumes).float(), targets)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    def infer_step():
        with torch.inference_mode(), autocast:
            model(volumes)

    model.train()
    train = steps * batch / _timed(train_step, steps, device)
    model.eval()
    infer = steps * batch / _timed(infer_step, steps, device)
    return train, infer


def extraction_rate(name: str, the_recipe, device, patients: int, batch: int = 8) -> float:
    """Patients/s of :func:`nsclc_engine.features.extract.extract_features`'s inner loop: read a
    cached volume, apply the recipe's intensity step, run the frozen encoder."""
    shape = the_recipe.preprocess.out_shape
    encoder = as_encoder(build_model(name, input_shape=shape), name).to(device)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(patients):
            paths.append(Path(tmp) / f"P{i}.npy")
            np.save(paths[-1], np.random.default_rng(i).random(shape, dtype=np.float32))

        def extract():
            with torch.inference_mode():
                for start in range(0, len(paths), batch):
                    images = [
                        the_recipe.network_input(np.load(p)) for p in paths[start : start + batch]
                    ]
                    encoder(torch.from_numpy(np.stack(images)[:, None]).to(device)).float().cpu()

        return patients / _timed(extract, 1, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--presets", nargs="+", default=["demo", "paper"])
    parser.add_argument("--models", nargs="+", default=list(BACKBONES))
    parser.add_argument("--patients", type=int, default=16, help="volumes per extraction timing")
    args = parser.parse_args()
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    models = [BASELINE] + [m for m in args.models if m != BASELINE]
    print(f"{'network':<12} {'params (M)':>10}")
    for name in models:
        print(f"{name:<12} {parameter_count(build_model(name)) / 1e6:>10.1f}")
    for preset in args.presets:
        shape = PRESETS[preset].out_shape
        print(f"\npreset {preset} {shape}: volumes/s (x {BASELINE}); batch 4")
        baseline = None
        for name in models:
            try:
                check_input(name, shape, preset)
            except ValueError as error:
                print(f"{name:<12} cannot run: {error}")
                continue
            train, infer = rates(name, shape, device, args.steps)
            baseline = baseline or (train, infer)
            print(
                f"{name:<12} train {train:7.2f} (x {train / baseline[0]:.2f})   "
                f"infer {infer:7.2f} (x {infer / baseline[1]:.2f})"
            )
    print(f"\nfeature extraction, patients/s ({args.patients} cached volumes, batch 8)")
    base = extraction_rate(BASELINE, recipe("medicalnet", "demo"), device, args.patients)
    print(f"{'medicalnet resnet18':<24} {base:7.2f} (baseline)")
    for label, name, the_recipe in (
        ("medicalnet resnet50", "resnet50", recipe("medicalnet", "demo")),
        ("fmcib (50 mm cube)", "fmcib", recipe("fmcib")),
    ):
        rate = extraction_rate(name, the_recipe, device, args.patients)
        print(f"{label:<24} {rate:7.2f} (x {rate / base:.2f})")


if __name__ == "__main__":
    main()
