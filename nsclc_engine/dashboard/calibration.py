"""The Calibration page: the recalibration method compared on validation predictions
(cross-validated within validation, so each method is scored on rows it was not fitted on),
and test predictions shown only for the method in force, raw and recalibrated."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from nsclc_engine.stats.calibration import (
    RECALIBRATION_METHODS,
    calibration_summary,
    decision_curve,
    fit_recalibrator,
    reliability_curve,
)

BIN_STRATEGIES = ("uniform", "quantile")
SUMMARY_KEYS = ("brier", "ece", "intercept", "slope")


def method_in_force(metrics: dict, predictions: pd.DataFrame) -> str:
    """The recalibration the run's evaluation applied (``evaluate_config.recalibration``):
    the one method whose held-out figures the page shows. ``none`` for a run without
    validation predictions (imported, external): its probabilities are shown as they came."""
    if not (predictions.split == "validation").any():
        return "none"
    return ((metrics or {}).get("evaluate_config") or {}).get("recalibration", "none")


def cross_validated_validation(
    predictions: pd.DataFrame, method: str, n_splits: int = 5, seed: int = 0
) -> pd.DataFrame:
    """The validation rows with ``y_prob`` recalibrated by ``method`` out of fold: within each
    run fold's validation rows, stratified ``n_splits`` parts (fewer where a class is rarer),
    each recalibrated by a map fitted on the others. Test rows are never read.
    ``frame.attrs["notes"]`` says where a part kept its raw probabilities."""
    validation = predictions[predictions.split == "validation"].copy()
    notes: list[str] = []
    if method == "none":
        validation.attrs["notes"] = notes
        return validation
    for fold, rows in validation.groupby("fold"):
        y = rows.y_true.to_numpy().astype(int)
        splits = min(n_splits, int(np.bincount(y, minlength=2).min()))
        if splits < 2:
            notes.append(f"fold {fold}: too few validation patients of one class to cross-validate")
            continue
        parts = StratifiedKFold(splits, shuffle=True, random_state=seed).split(rows, y)
        for fit_rows, scored_rows in parts:
            fitting, scored = rows.iloc[fit_rows], rows.iloc[scored_rows]
            try:
                recalibrator = fit_recalibrator(fitting.y_true, fitting.y_prob, method)
            except ValueError as error:
                notes.append(f"fold {fold}: {error}; that part keeps raw probabilities")
                continue
            validation.loc[scored.index, "y_prob"] = recalibrator.apply(scored.y_prob)
    validation.attrs["notes"] = notes
    return validation


def recalibration_choice(
    predictions: pd.DataFrame, strategy: str = "uniform", n_splits: int = 5
) -> dict:
    """What the page shows to choose a recalibration: per method, the calibration summary of
    the cross-validated validation probabilities (:func:`cross_validated_validation`; a
    k-fold run pools its folds' validation rows) and their reliability curve. Empty where the
    run has no validation predictions (imported, external)."""
    if strategy not in BIN_STRATEGIES:
        raise ValueError(f"bins {strategy!r}: choose from {BIN_STRATEGIES}")
    if not (predictions.split == "validation").any():
        return {"summary": pd.DataFrame(), "reliability": {}, "notes": []}
    rows, reliability, notes = [], {}, []
    for method in RECALIBRATION_METHODS:
        frame = cross_validated_validation(predictions, method, n_splits)
        summary = calibration_summary(frame.y_true, frame.y_prob, strategy=strategy)
        rows.append({"method": method, "n": len(frame), **{k: summary[k] for k in SUMMARY_KEYS}})
        reliability[method] = reliability_curve(frame.y_true, frame.y_prob, strategy=strategy)
        notes += [f"{method}: {note}" for note in frame.attrs["notes"]]
    return {"summary": pd.DataFrame(rows), "reliability": reliability, "notes": notes}


def calibration_view(
    raw: pd.DataFrame, shown: pd.DataFrame, method: str, strategy: str, part: str = "test"
) -> dict:
    """What the page shows for test predictions ``raw`` and ``shown`` (recalibrated by
    ``method``, or the same as ``raw`` for ``none``): a summary row per set of probabilities,
    their reliability curves (bins by ``strategy``) and the decision curve of ``shown``."""
    if method not in RECALIBRATION_METHODS or strategy not in BIN_STRATEGIES:
        raise ValueError(
            f"method {method!r} / bins {strategy!r}: choose from {RECALIBRATION_METHODS} and "
            f"{BIN_STRATEGIES}"
        )
    sets = {"raw": raw} if method == "none" else {"raw": raw, method: shown}
    summaries = {
        name: calibration_summary(frame.y_true, frame.y_prob, strategy=strategy)
        for name, frame in sets.items()
    }
    return {
        "summary": pd.DataFrame(
            [
                {"probabilities": name, **{k: summary[k] for k in SUMMARY_KEYS}}
                | {f"{k} 95% CI": _interval(summary.get(f"{k}_ci")) for k in ("intercept", "slope")}
                for name, summary in summaries.items()
            ]
        ),
        "reliability": {
            name: reliability_curve(frame.y_true, frame.y_prob, strategy=strategy)
            for name, frame in sets.items()
        },
        "decision": {f"model ({part})": decision_curve(shown.y_true, shown.y_prob)},
    }


def _interval(ci: list | None) -> str:
    if not ci or any(v is None or v != v for v in ci):
        return "CI not computed"
    return f"{ci[0]:.3f} to {ci[1]:.3f}"


def external_calibration(metrics: dict) -> pd.DataFrame:
    """An external-validation run's calibration on the new cohort: calibration-in-the-large
    and slope of the probabilities as deployed (the frozen recalibrator applied) and, where
    it was asked for, after a recalibration-in-the-large fitted on that cohort itself."""
    names = {
        "deployed": "as deployed (frozen)",
        "recalibrated_in_the_large": "recalibrated in the large on this cohort (in-sample)",
    }
    return pd.DataFrame(
        [
            {
                "probabilities": names[key],
                "calibration-in-the-large": block["intercept"],
                "slope": block["slope"],
                "intercept shift": block.get("shift"),
            }
            for key, block in (metrics.get("calibration_external") or {}).items()
        ],
        columns=["probabilities", "calibration-in-the-large", "slope", "intercept shift"],
    )
