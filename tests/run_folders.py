"""Run folders written by hand through :mod:`nsclc_engine.runs`' writers, for tests about
showing a run (tables, pages, links) rather than training one.

A hand-written run is what a finished trained run leaves, without the training: its config,
splits drawn by the same function a run uses, a model's predictions drawn from the synthetic
cohort's own truth (the image part of the linear predictor, plus noise), a few epochs of
history, a finished status; then the real evaluation writes its metrics, threshold,
calibration and (survival) baselines. It has no weights: tests that load a model (Grad-CAM,
external validation) use the trained fixture."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from nsclc_engine.cohort.build import load_cohort
from nsclc_engine.cohort.splits import SplitConfig, splits_for
from nsclc_engine.evaluate.config import EvaluateConfig
from nsclc_engine.evaluate.run import evaluate_run
from nsclc_engine.runs import (
    create_run,
    provenance,
    run_dir,
    splits_path,
    update_status,
    write_history,
    write_predictions,
)
from nsclc_engine.synth.generate import read_truth
from nsclc_engine.task_spec import task_spec
from nsclc_engine.train.config import TrainConfig


def hand_written_run(
    artifacts: Path,
    run_id: str,
    source: Path,
    cohort_dir: Path,
    task: str = "classification",
    noise: float = 0.7,
    **changes,
) -> Path:
    """A finished, evaluated run ``run_id`` in ``artifacts`` on the cohort ``cohort_dir``
    built from the synthetic ``source`` (``dicom/``, ``clinical.csv``, its truth), as the
    smoke preset's ResNet-10 would have left it; ``changes`` are TrainConfig fields."""
    spec = task_spec(task)
    config = TrainConfig(
        **{"dicom": str(source / "dicom"), "clinical": str(source / "clinical.csv")}
        | {"model": "resnet10", "label": spec.default_label, "task": task, "preset": "smoke"}
        | {"epochs": 2}
        | changes
    )
    label = config.label
    cohort = load_cohort(cohort_dir).sort_values("patient_id").reset_index(drop=True)
    resolved = {
        "cohort_dir": str(cohort_dir),
        "cache_dir": "",
        "preprocess": {},
        "n_patients": len(cohort),
        "device": "cpu",
        "threads": 1,
        "world_size": 1,
        **provenance(),
    }
    saved = {"config_class": "TrainConfig", **asdict(config), "resolved": resolved}
    folder = run_dir(create_run(saved, artifacts, run_id), artifacts)
    splits = splits_for(
        splits_path(folder),
        cohort.patient_id.tolist(),
        cohort[label].astype(int).tolist(),
        SplitConfig(folds=config.folds, seed=config.seed),
        label,
    )

    truth = read_truth(source).set_index("patient_id").eta_image
    rng = np.random.default_rng(config.seed)
    rows = []
    for fold, split in enumerate(splits):
        for part, patients in split.items():
            for patient in patients:
                rows.append({"patient_id": patient, "split": part, "fold": fold})
    predictions = pd.DataFrame(rows)
    score = truth.loc[predictions.patient_id].to_numpy() + rng.normal(0, noise, len(rows))
    outcomes = cohort.set_index("patient_id").loc[predictions.patient_id]
    if task == "survival":
        predictions["risk"] = score
        predictions["time_days"] = outcomes.survival_time_days.to_numpy(dtype=float)
        predictions["event"] = outcomes.deadstatus_event.to_numpy(dtype=int)
    else:
        predictions["y_true"] = outcomes[label].to_numpy(dtype=int)
        predictions["logit"] = score
        predictions["y_prob"] = 1 / (1 + np.exp(-score))
    write_predictions(folder, predictions[list(spec.columns)])  # a trained run's columns

    history = {
        fold: [
            {
                "fold": fold,
                "epoch": epoch,
                "train_loss": 1.0 / epoch,
                "val_loss": 0.7,
                spec.validation_metric: 0.5 + 0.05 * epoch,
                "lr": 3e-4,
                "seconds": 1.0,
                "best": epoch == 2,
            }
            for epoch in (1, 2)
        ]
        for fold in range(len(splits))
    }
    write_history(folder, history)
    update_status(
        folder,
        state="finished",
        progress=1.0,
        stage="done",
        model={"name": "resnet10", "parameters": 14_000_000},
    )
    evaluate_run(folder, EvaluateConfig(bootstrap_resamples=200))
    return folder
