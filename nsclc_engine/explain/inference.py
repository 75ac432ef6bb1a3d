"""A run's trained model at inference: loaded from its best checkpoint, and its prediction's
spread under test-time augmentation."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from nsclc_engine.explain.gradcam import as_batch
from nsclc_engine.preprocess.dataset import AugmentConfig, augment_volume
from nsclc_engine.preprocess.volumes import PRESETS
from nsclc_engine.runs import best_checkpoint, migrated
from nsclc_engine.train.model import build_model
from nsclc_engine.train.tasks import task_class


def load_run_model(run_dir: str | os.PathLike, fold: int = 0, device: str = "cpu"):
    """The run's best model of ``fold``, in eval mode on ``device``."""
    import torch

    path = best_checkpoint(Path(run_dir), fold)
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    config = migrated(checkpoint.get("config", {}))  # an old run's checkpoint: today's fields
    outputs = task_class(config["task"]).outputs
    shape = PRESETS[config.get("preset", "demo")].out_shape  # the ViT's patch grid depends on it
    model = build_model(
        config["model"],
        outputs,
        norm=config.get("norm", "batch"),
        input_shape=shape,
    )
    model.load_state_dict(checkpoint["model"])
    return model.to(device).eval()


def tta_interval(
    model,
    volume,
    task: str = "classification",
    samples: int = 16,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """Spread of the prediction under the project's augmentation transforms (in-plane rotation
    within +-10 degrees, row flips; whether or not the run trained with them): the unaugmented
    value, the mean and the central ``level`` interval over ``samples`` augmented copies.
    Probability of class 1 for a classifier, the risk score for a survival model. The draws
    are seeded: the same call gives the same answer.
    """
    import torch

    batch = as_batch(volume)
    rng = np.random.default_rng(seed)
    augmented = [batch[0]] + [
        augment_volume(batch[0], AugmentConfig(classes="all"), rng) for _ in range(samples)
    ]
    device = next(model.parameters()).device
    model.eval()
    outputs = []
    with torch.no_grad():
        for start in range(0, len(augmented), 8):
            chunk = torch.stack(augmented[start : start + 8]).to(device)
            outputs.append(model(chunk).float().cpu())
    values = task_class(task).scores(torch.cat(outputs)).numpy()
    spread = values[1:]
    tail = (1 - level) / 2
    return {
        "value": float(values[0]),
        "mean": float(spread.mean()),
        "low": float(np.quantile(spread, tail)),
        "high": float(np.quantile(spread, 1 - tail)),
        "samples": int(samples),
        "level": level,
    }
