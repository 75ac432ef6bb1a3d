"""Grad-CAM for one patient, uncached and cached, at the ``demo`` and ``paper`` presets on the
current device; with ``--sanity``, the layer3-vs-layer4 check that chose the default layer.

    python benchmarks/bench_explain.py [--presets demo paper] [--device cpu|cuda] [--sanity]

Uncached = :func:`nsclc_engine.explain.explain_patient` on an empty cache (model already
loaded, as the Patient page holds it); cached = the same call again; cold = uncached with the
checkpoint read from disk as well. The ratio printed is
uncached / cached. Targets on the 2-core CPU: demo uncached < 3 s, cached < 100 ms.

``--sanity`` trains a ResNet-18 (stride-2 stem, as the project's) on ``demo``-sized volumes
whose class is a planted bright ball, then reports per layer the share of the Grad-CAM mass on
the ball (an even spread would give the ball's volume share) and the rank correlation with the
map of a randomly initialised network (model-randomisation check: lower is better).
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

from nsclc_engine.explain.cache import explain_patient
from nsclc_engine.explain.gradcam import (
    LAYERS,
    ExplainConfig,
    grad_cam,
    mass_inside,
    rank_correlation,
)
from nsclc_engine.preprocess.volumes import PRESETS
from nsclc_engine.train.model import build_model


def fake_run(root: Path, model: torch.nn.Module) -> Path:
    run_dir = root / "bench-run"
    run_dir.mkdir()
    torch.save({"model": model.state_dict(), "config": {}}, run_dir / "checkpoint_best.pt")
    return run_dir


def time_preset(preset: str, device: str, layer: str) -> dict:
    shape = PRESETS[preset].out_shape
    torch.manual_seed(0)
    model = build_model().to(device).eval()
    volume = np.random.default_rng(0).random(shape, dtype=np.float32)
    grad_cam(model, volume, 1, layer)  # warm-up (first-call kernels, allocator)
    with tempfile.TemporaryDirectory() as root:
        run_dir = fake_run(Path(root), model)
        config = ExplainConfig(layer=layer)
        start = time.perf_counter()
        _, hit = explain_patient(run_dir, 0, "P1", volume, config, model=model)
        uncached = time.perf_counter() - start
        assert not hit
        start = time.perf_counter()
        _, hit = explain_patient(run_dir, 0, "P1", volume, config, model=model)
        cached = time.perf_counter() - start
        assert hit
        start = time.perf_counter()  # cold: the checkpoint is read from disk too
        _, hit = explain_patient(run_dir, 0, "P2", volume, config)
        cold = time.perf_counter() - start
        assert not hit
    return {"shape": shape, "uncached": uncached, "cached": cached, "cold": cold}


def blob_batch(n: int, shape: tuple[int, int, int], rng: np.random.Generator):
    volumes = rng.normal(0.3, 0.1, (n, 1, *shape)).astype(np.float32)
    labels = np.arange(n) % 2
    grid = np.mgrid[: shape[0], : shape[1], : shape[2]]
    regions = np.zeros((n, *shape), dtype=bool)
    for i in range(n):
        centre = [rng.integers(s // 4, 3 * s // 4) for s in shape]
        # an ellipsoid ball: 4 slices, 10 pixels of radius (z is coarser, as in the presets)
        radii = (4, 10, 10)
        distance = sum(((grid[a] - centre[a]) / radii[a]) ** 2 for a in range(3))
        regions[i] = distance <= 1
        if labels[i]:
            volumes[i, 0][regions[i]] += 0.5
    return torch.tensor(volumes), torch.tensor(labels), regions


def sanity(device: str, steps: int = 60) -> None:
    shape = PRESETS["demo"].out_shape
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    model = build_model().to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    start = time.perf_counter()
    for _ in range(steps):
        volumes, labels, _ = blob_batch(8, shape, rng)
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(volumes.to(device)), labels.to(device))
        loss.backward()
        optimiser.step()
    volumes, labels, regions = blob_batch(16, shape, np.random.default_rng(1))
    model.eval()
    with torch.no_grad():
        accuracy = (model(volumes.to(device)).argmax(1).cpu() == labels).float().mean().item()
    print(
        f"blob ResNet-18: {steps} steps in {time.perf_counter() - start:.0f} s, "
        f"held-out accuracy {accuracy:.2f}"
    )
    torch.manual_seed(1)
    random_model = build_model().to(device)
    positives = [i for i in range(len(labels)) if labels[i]]
    share = regions[positives].mean()
    print(f"an even spread would put {share:.3f} of the mass on the ball")
    for layer in LAYERS:
        masses, correlations = [], []
        for i in positives:
            trained = grad_cam(model, volumes[i, 0], 1, layer).scores
            randomised = grad_cam(random_model, volumes[i, 0], 1, layer).scores
            masses.append(mass_inside(trained, regions[i]))
            correlations.append(rank_correlation(trained, randomised))
        print(
            f"{layer}: mass on the ball {np.mean(masses):.3f} ({np.mean(masses) / share:.1f}x "
            f"even), rank correlation with a random network {np.median(correlations):+.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--presets", nargs="+", default=["demo", "paper"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sanity", action="store_true")
    args = parser.parse_args()
    print(f"device {args.device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    for preset in args.presets:
        for layer in LAYERS:
            result = time_preset(preset, args.device, layer)
            print(
                f"{preset:5s} {result['shape']} {layer}: uncached {result['uncached']:.3f} s, "
                f"cached {1000 * result['cached']:.1f} ms, "
                f"cold (checkpoint loaded too) {result['cold']:.3f} s, "
                f"ratio uncached/cached {result['uncached'] / result['cached']:.0f}x"
            )
    if args.sanity:
        sanity(args.device)


if __name__ == "__main__":
    main()
