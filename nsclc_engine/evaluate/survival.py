"""Evaluate a survival model's risks, and the image / clinical / volume / fusion models beside
it: pure functions of prediction tables (Harrell's and Uno's C, time-dependent AUC,
integrated Brier score, risk groups; every C-index with a patient-level bootstrap CI)."""

from __future__ import annotations

from dataclasses import asdict

import pandas as pd

from nsclc_engine.evaluate.baselines import SURVIVAL_MODELS
from nsclc_engine.evaluate.config import EvaluateConfig
from nsclc_engine.stats.survival import (
    bootstrap_c_index,
    evaluate_risks,
    harrell_c_index,
    paired_c_index_difference,
    risk_groups,
)


def evaluate_survival_predictions(predictions: pd.DataFrame, config: EvaluateConfig) -> dict:
    """Harrell's C with a CI per split, and per fold on test: Uno's C, time-dependent AUC at 1
    and 2 years, integrated Brier score (censoring weights from that fold's training rows,
    the baseline hazard from its validation rows) and risk groups cut at the median of that
    fold's validation risks, with Kaplan-Meier curves and the log-rank test.

    k-fold: a Cox network's risk has no fixed location, so the out-of-fold test risks of k
    models are never ranked against each other: the test C-index is fold-stratified (pairs
    within a fold), and ``fold_summary`` gives each fold's C with their mean and spread."""

    k_fold = predictions.fold.max() > predictions.fold.min()
    parts = predictions[predictions.split == "test"] if k_fold else predictions
    splits = {}
    for part, frame in parts.groupby("split"):
        splits[part] = {
            "n": len(frame),
            "n_events": int(frame.event.sum()),
            "c_index": bootstrap_c_index(
                frame.time_days,
                frame.event,
                frame.risk,
                config.bootstrap_resamples,
                config.seed,
                strata=frame.fold if k_fold else None,
            ),
        }
        if k_fold:
            splits[part]["pooling"] = {"c_index": "fold-stratified: pairs within a fold only"}
    folds = []
    for fold, frame in predictions.groupby("fold"):
        sets = {
            part: {
                "time": rows.time_days.to_numpy(),
                "event": rows.event.to_numpy().astype(bool),
                "risk": rows.risk.to_numpy(),
            }
            for part, rows in frame.groupby("split")
        }
        entry: dict = {"fold": int(fold)}
        try:
            entry |= evaluate_risks(
                sets["train"], sets["test"], sets["validation"], seed=config.seed
            )
        except (KeyError, ValueError) as error:
            entry["note"] = f"time-dependent metrics unavailable: {error}"
        if "validation" in sets and "test" in sets:
            groups = risk_groups(
                sets["validation"]["risk"],
                sets["test"]["time"],
                sets["test"]["event"],
                sets["test"]["risk"],
            )
            entry["risk_groups"] = groups
        folds.append(entry)
    result = {"evaluate_config": asdict(config), "splits": splits, "folds": folds}
    if k_fold:
        result["fold_summary"] = fold_c_summary(predictions)
    return result


def fold_c_summary(predictions: pd.DataFrame) -> dict:
    """Each fold model's Harrell's C on its own test patients, and their mean and sd."""
    rows = []
    for fold, frame in predictions[predictions.split == "test"].groupby("fold"):
        try:
            c_index = harrell_c_index(frame.time_days, frame.event, frame.risk)
        except ValueError:
            c_index = float("nan")
        rows.append({"fold": int(fold), "n": len(frame), "c_index": c_index})
    values = pd.Series([row["c_index"] for row in rows], dtype=float)
    return {
        "per_fold": rows,
        "summary": {"c_index": {"mean": float(values.mean()), "sd": float(values.std(ddof=1))}},
    }


def survival_model_metrics(models: pd.DataFrame, config: EvaluateConfig) -> dict:
    """Per model: Harrell's C with CI per split (k-fold: the out-of-fold test rows only); per
    fold on test: Uno's C, time-dependent AUC and IBS; paired C-index differences on test
    (k-fold: every C-index and difference fold-stratified, as each fold fits its own models)."""
    k_fold = models.fold.max() > models.fold.min()
    parts = models[models.split == "test"] if k_fold else models
    result: dict = {"description": dict(SURVIVAL_MODELS), "c_index": {}, "folds": []}
    for name in SURVIVAL_MODELS:
        result["c_index"][name] = {
            part: bootstrap_c_index(
                frame.time_days,
                frame.event,
                frame[name],
                config.bootstrap_resamples,
                config.seed,
                strata=frame.fold if k_fold else None,
            )
            for part, frame in parts.groupby("split")
        }
    for fold, frame in models.groupby("fold"):
        train, test = frame[frame.split == "train"], frame[frame.split == "test"]
        validation = frame[frame.split == "validation"]
        entry: dict = {"fold": int(fold)}
        for name in SURVIVAL_MODELS:
            try:
                risks = evaluate_risks(
                    _survival_set(train, name),
                    _survival_set(test, name),
                    _survival_set(validation, name),
                    seed=config.seed,
                )
            except ValueError as error:
                entry[name] = {"note": str(error)}
                continue
            risks.pop("harrell")
            entry[name] = risks
        result["folds"].append(entry)
    test = models[models.split == "test"]
    result["comparisons"] = []
    for a, b in (("image", "clinical"), ("fusion", "clinical"), ("fusion", "image")):
        try:
            difference = paired_c_index_difference(
                test.time_days,
                test.event,
                test[a],
                test[b],
                config.bootstrap_resamples,
                config.seed,
                strata=test.fold if k_fold else None,
            )
        except ValueError:
            continue
        result["comparisons"].append({"a": a, "b": b, **difference})
    result["fusion_coefficients"] = models.attrs.get("fusion_coefficients", [])
    return result


def _survival_set(frame: pd.DataFrame, model: str) -> dict:
    return {
        "time": frame.time_days.to_numpy(),
        "event": frame.event.to_numpy().astype(bool),
        "risk": frame[model].to_numpy(),
    }
