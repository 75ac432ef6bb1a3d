"""A finished run's decision rule, frozen: the threshold in force and the recalibrator, as one
fit to apply unchanged to other patients (external validation, or imported predictions that
borrow another run's threshold).

The threshold in force is the operating point saved on the Threshold page, on the probability
scale it was chosen on, else the threshold the evaluation fitted on validation (raw scale). It
is returned on the raw scale (:func:`~nsclc_engine.stats.calibration.raw_threshold`), so
``y_prob >= threshold`` makes exactly the calls the run makes. The recalibrator is refitted on
the run's own validation predictions, which gives the one its pages and report used. A k-fold
run has a recalibrator per fold and no single one to carry: its mean fold threshold is used on
raw probabilities, and the record says so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nsclc_engine.evaluate.classification import FoldFit
from nsclc_engine.run_records import Threshold
from nsclc_engine.runs import Run
from nsclc_engine.stats.calibration import (
    Recalibrator,
    fit_recalibrator,
    raw_threshold,
    recalibrator_from_dict,
)
from nsclc_engine.stats.metrics import ThresholdChoice


def fitted_thresholds(saved: Threshold) -> dict[int, float]:
    """Fold -> the threshold the run's evaluation fitted on that fold's validation part, from
    its ``threshold.json`` (empty before the run was evaluated)."""
    entries = saved.fitted_thresholds
    return {int(entry.get("fold", 0)): float(entry["threshold"]) for entry in entries}


def frozen_decision(source: Path) -> tuple[FoldFit, dict]:
    """``(fit, record)`` of run folder ``source``; ``record`` holds the raw threshold, the
    recalibrator's parameters and a sentence saying where they came from (JSON-ready; rebuild
    the fit with :func:`fit_from_record`)."""
    run = Run(source)
    fitted = fitted_thresholds(run.threshold)
    point = run.threshold.operating_point
    if point.get("threshold") is None and not fitted:
        raise ValueError(f"run {source.name}: no threshold in threshold.json; evaluate it first")
    predictions = run.predictions
    validation = predictions[predictions.split == "validation"]
    carried = run.metrics.threshold_source
    if validation.empty and "threshold" in carried and point.get("threshold") is None:
        # an imported or external run: its own rule came frozen from a stated source
        record = carried | {"kind": "frozen run", "run": source.name}
        record["text"] = f"as frozen in run {source.name}: {carried['text']}"
        return fit_from_record(record), record
    k_fold = len(set(validation.fold)) > 1
    evaluated = run.calibration.method
    method = point.get("recalibration", "none") if point.get("threshold") is not None else evaluated
    if k_fold and point.get("threshold") is not None and method != "none":
        raise ValueError(
            f"run {source.name}: its operating point was saved on {method}-recalibrated k-fold "
            "probabilities, one recalibrator per fold; save one on raw probabilities to freeze it"
        )
    note = ""
    if k_fold:
        recalibrator, method = Recalibrator("none", {}, 0), "none"
        note = " (a k-fold run has one recalibrator per fold: the mean is not recalibrated)"
    else:
        try:
            recalibrator = fit_recalibrator(validation.y_true, validation.y_prob, method)
        except ValueError as error:
            recalibrator, note = Recalibrator("none", {}, 0), f" ({method} failed: {error})"
            method = "none"
    if point.get("threshold") is not None:
        chosen = float(point["threshold"])
        threshold = raw_threshold(recalibrator, chosen) if method != "none" else chosen
        where = f"saved operating point {chosen:.3f}"
        where += f" on {method} probabilities" if method != "none" else ""
    elif k_fold:
        threshold = float(np.mean(list(fitted.values())))
        where = f"mean of the {len(fitted)} folds' validation thresholds"
    else:
        threshold = next(iter(fitted.values()))
        where = f"{run.threshold.fitted.get('rule', 'rule')} fitted on validation"
    record = {
        "kind": "frozen run",
        "run": source.name,
        "threshold": threshold,
        "recalibrator": recalibrator.to_dict(),
        "text": (
            f"threshold {threshold:.3f} on raw probabilities ({where}) and recalibration "
            f"{method}{note}, frozen from run {source.name}"
        ),
    }
    return fit_from_record(record), record


def fit_from_record(record: dict) -> FoldFit:
    """The fit a :func:`frozen_decision` record (or a stated value) describes."""
    threshold = float(record["threshold"])
    choice = ThresholdChoice("fixed", threshold, threshold, record["text"], 0)
    recalibrator = recalibrator_from_dict(record.get("recalibrator") or {"method": "none"})
    return FoldFit(0, choice, recalibrator)
