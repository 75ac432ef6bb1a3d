"""The Threshold page: each rule's threshold fitted on validation, the metrics at any
threshold with bootstrap CIs, and saving the operating point."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from nsclc_engine.dashboard.run_view import curves, part_predictions
from nsclc_engine.evaluate.run import write_threshold_file
from nsclc_engine.runs import now
from nsclc_engine.stats.metrics import bootstrap_metrics, choose_threshold

RULE_BUTTONS = (
    ("youden", None, "Youden J"),
    ("max_f1", None, "max F1"),
    ("spec_at_sens", 0.8, "best specificity at sensitivity ≥ 0.8"),
    ("sens_at_spec", 0.8, "best sensitivity at specificity ≥ 0.8"),
)


def default_scale(saved_point: dict, folds: int) -> str | None:
    """The probability scale the page opens on: the one a saved operating point was chosen on;
    else per-fold Platt for a k-fold run (its pooled rows come from several models, comparable
    only after each fold's own recalibration); else ``None`` (the page's first, raw)."""
    if saved_point.get("recalibration"):
        return saved_point["recalibration"]
    return "platt" if folds > 1 else None


def rule_thresholds(predictions: pd.DataFrame, recalibration: str = "none") -> dict[str, float]:
    """The threshold of each rule of :data:`RULE_BUTTONS`, fitted on validation predictions
    (the first fold's for k-fold runs); a rule whose target cannot be met is left out."""
    validation = part_predictions(predictions, "validation", recalibration)
    validation = validation[validation.fold == validation.fold.min()]
    result: dict[str, float] = {}
    if validation.empty:  # imported or externally validated: the threshold came with the run
        return result
    for rule, target, name in RULE_BUTTONS:
        try:
            result[name] = choose_threshold(
                validation.y_true, validation.y_prob, rule, target
            ).threshold
        except ValueError:
            continue
    return result


def threshold_state(frame: pd.DataFrame, threshold: float, n_resamples: int = 1000) -> dict:
    """Metrics at ``threshold`` (counts and rates) with bootstrap 95 % CIs, and the curves.

    The bootstrap draws patients, not rows: pooled k-fold validation rows repeat patients."""
    result = curves(frame)
    intervals = bootstrap_metrics(
        frame.y_true, frame.y_prob, threshold, n_resamples, seed=0, groups=frame.patient_id
    )
    return {
        "metrics": result.pop("sweep").at(threshold),
        "ci": {
            key: (value["ci_low"], value["ci_high"])
            for key, value in intervals.items()
            if isinstance(value, dict)
        },
        "prevalence": float(np.mean(frame.y_true)),
        **result,
    }


def operating_point(metrics: dict, threshold: float) -> dict:
    """The point a threshold puts on the ROC and precision-recall curves."""
    return {
        "name": f"threshold {threshold:.3f}",
        "fpr": 1 - metrics["specificity"],
        "tpr": metrics["sensitivity"],
        "recall": metrics["sensitivity"],
        "precision": metrics["precision"],
    }


def save_threshold(
    run_dir: str | os.PathLike,
    value: float,
    rule: str,
    split: str,
    recalibration: str,
    saved_by: str = "",
) -> dict:
    """Save the operating threshold into the run's ``threshold.json`` (beside the thresholds
    evaluation fitted), with who saved it. Only a threshold chosen on validation predictions
    is accepted."""

    if not 0.0 <= value <= 1.0:
        raise ValueError(f"threshold {value} must lie in [0, 1]")
    if split != "validation":
        raise ValueError(
            "choose the threshold on validation predictions; test predictions only show what a "
            "threshold already chosen does"
        )
    point = {
        "threshold": float(value),
        "rule": rule,
        "split_used": split,
        "recalibration": recalibration,
        "written": now(),
        "source": "dashboard",
        "saved_by": saved_by,
    }
    return write_threshold_file(run_dir, operating_point=point)["operating_point"]


CELLS = {
    "FN": "false negatives",
    "FP": "false positives",
    "TP": "true positives",
    "TN": "true negatives",
}


def cell_patients(frame: pd.DataFrame, threshold: float) -> dict[str, pd.DataFrame]:
    """The patients of each confusion-matrix cell at ``threshold`` (called positive when
    ``y_prob >= threshold``, as the matrix counts them), each cell's rows sorted with the most
    confident first: FN and TN by rising probability, FP and TP by falling."""
    called = frame.y_prob.to_numpy() >= threshold
    truth = frame.y_true.to_numpy().astype(bool)
    masks = {"FN": truth & ~called, "FP": ~truth & called, "TP": truth & called}
    masks["TN"] = ~truth & ~called
    columns = [c for c in ("patient_id", "fold", "y_prob", "y_true") if c in frame.columns]
    return {
        cell: frame.loc[mask, columns].sort_values("y_prob", ascending=cell in ("FN", "TN"))
        for cell, mask in masks.items()
    }
