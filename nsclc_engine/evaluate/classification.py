"""Evaluate a classification model's predictions: pure functions of prediction tables.

Thresholds and recalibrators are fitted on validation predictions only and applied frozen to
test; test labels are read only to score. Every metric has a patient-level bootstrap CI.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from nsclc_engine.evaluate.config import EvaluateConfig
from nsclc_engine.stats.calibration import (
    calibration_summary,
    fit_recalibrator,
    reliability_curve,
)
from nsclc_engine.stats.metrics import (
    RATE_KEYS,
    bootstrap_metrics,
    choose_threshold,
    delong_test,
    metrics_at_threshold,
    threshold_sweep,
)


def _ci_block(boot: dict, key: str) -> dict:
    return {
        "value": boot[key]["value"],
        "ci_low": boot[key]["ci_low"],
        "ci_high": boot[key]["ci_high"],
    }


def describe_split(
    y_true: ArrayLike,
    y_prob: ArrayLike,
    threshold: float | None,
    config: EvaluateConfig,
    calls: ArrayLike = None,
    strata: ArrayLike = None,
) -> dict:
    """Discrimination with CIs, and metrics with CIs at 0.5 and at ``threshold``.

    ``calls`` (0/1 per patient) replaces ``y_prob >= threshold`` where each patient had its own
    fold's threshold (pooled out-of-fold predictions); ``strata`` (the fold of each patient)
    makes the AUC fold-stratified: each fold model's patients are ranked against each other
    only.
    """
    y_true = np.asarray(y_true, dtype=int)
    y_prob = np.asarray(y_prob, dtype=float)
    boot = bootstrap_metrics(
        y_true, y_prob, 0.5, config.bootstrap_resamples, config.seed, strata=strata
    )
    if calls is None:
        at_threshold = metrics_at_threshold(y_true, y_prob, threshold)
        boot_t = bootstrap_metrics(
            y_true, y_prob, threshold, config.bootstrap_resamples, config.seed
        )
    else:
        calls = np.asarray(calls, dtype=float)
        at_threshold = metrics_at_threshold(y_true, calls, 0.5) | {"threshold": None}
        boot_t = bootstrap_metrics(y_true, calls, 0.5, config.bootstrap_resamples, config.seed)
    return {
        "n": len(y_true),
        "n_positive": int(y_true.sum()),
        "auc": {
            "auc": boot["auc"]["value"],
            "ci_low": boot["auc"]["ci_low"],
            "ci_high": boot["auc"]["ci_high"],
            "n_resamples": boot["n_resamples"],
            "n_single_class": boot["n_single_class"],
        },
        "average_precision": _ci_block(boot, "average_precision"),
        "brier": _ci_block(boot, "brier"),
        "at_0.5": metrics_at_threshold(y_true, y_prob, 0.5)
        | {"ci": {key: [boot[key]["ci_low"], boot[key]["ci_high"]] for key in RATE_KEYS}},
        "at_threshold": at_threshold
        | {"ci": {key: [boot_t[key]["ci_low"], boot_t[key]["ci_high"]] for key in RATE_KEYS}},
    }


@dataclass
class FoldFit:
    fold: int
    threshold: object  # ThresholdChoice
    recalibrator: object  # Recalibrator


def fit_on_validation(
    predictions: pd.DataFrame, config: EvaluateConfig, warnings: list[str] | None = None
) -> dict[int, FoldFit]:
    """Per fold: the threshold rule and the recalibrator, fitted on validation rows only.

    Where a fold's validation part cannot support the fit (one class only, constant
    predictions) the fold falls back to 0.5 / no recalibration and ``warnings`` says so.
    """
    warnings = [] if warnings is None else warnings
    fits = {}
    for fold, frame in predictions[predictions.split == "validation"].groupby("fold"):
        try:
            choice = choose_threshold(
                frame.y_true, frame.y_prob, config.threshold_rule, config.threshold_target
            )
        except ValueError as error:
            warnings.append(f"fold {fold}: {error}; the threshold falls back to 0.5")
            choice = choose_threshold(frame.y_true, frame.y_prob, "fixed", 0.5)
        try:
            recalibrator = fit_recalibrator(frame.y_true, frame.y_prob, config.recalibration)
        except ValueError as error:
            warnings.append(f"fold {fold}: {error}; probabilities are left as they are")
            recalibrator = fit_recalibrator(frame.y_true, frame.y_prob, "none")
        fits[int(fold)] = FoldFit(int(fold), choice, recalibrator)
    if not fits:
        raise ValueError("the predictions have no validation rows to fit a threshold on")
    return fits


def held_out_part(predictions: pd.DataFrame) -> str:
    """The part a run is judged on: ``external`` for imported predictions and external
    validation, else ``test``."""
    return "external" if (predictions.split == "external").any() else "test"


def evaluate_predictions(
    predictions: pd.DataFrame,
    config: EvaluateConfig,
    baselines: dict[str, pd.DataFrame] | None = None,
    fits: dict[int, FoldFit] | None = None,
) -> dict:
    """Everything in ``metrics.json`` and ``calibration.json`` from a predictions table
    (``patient_id, split, fold, y_true, y_prob``) and optional baseline predictions on the same
    splits (``{name: frame}`` with the same columns).

    ``fits`` (per fold: a threshold and a recalibrator from a stated source, e.g. a frozen
    run) replaces fitting them on the validation rows."""
    warnings: list[str] = []
    fits = fits or fit_on_validation(predictions, config, warnings)
    k_fold = len(fits) > 1
    held_out = held_out_part(predictions)
    threshold_of = predictions.fold.map({f: fit.threshold.threshold for f, fit in fits.items()})
    calls = (predictions.y_prob >= threshold_of).astype(int)
    recalibrated = predictions.y_prob.copy()
    for fold, fit in fits.items():
        rows = predictions.fold == fold
        recalibrated[rows] = fit.recalibrator.apply(predictions.y_prob[rows])
    splits, calibration = {}, {}
    # k-fold: only the out-of-fold test part holds each patient once (train and validation
    # rows repeat patients across folds, which a patient-level bootstrap must not resample).
    # Its rows come from k different models: the AUC compares patients within a fold only,
    # and the probabilities are pooled only after each fold's own recalibration.
    parts = predictions[predictions.split == held_out] if k_fold else predictions
    for part, frame in parts.groupby("split"):
        rows = frame.index
        splits[part] = describe_split(
            frame.y_true,
            recalibrated[rows] if k_fold else frame.y_prob,
            None if k_fold else fits[next(iter(fits))].threshold.threshold,
            config,
            calls=calls[rows] if k_fold else None,
            strata=frame.fold if k_fold else None,
        )
        if k_fold:
            splits[part]["pooling"] = {
                "auc": "fold-stratified: pairs within a fold's model only",
                "probabilities": f"recalibrated per fold on validation ({config.recalibration})",
                "at_threshold": "each fold's own validation threshold",
            }
        calibration[part] = {
            name: {
                **calibration_summary(frame.y_true, probabilities, config.n_bins),
                "curve": _lists(reliability_curve(frame.y_true, probabilities, config.n_bins)),
                "quantile_curve": _lists(
                    reliability_curve(frame.y_true, probabilities, config.n_bins, "quantile")
                ),
            }
            for name, probabilities in (("raw", frame.y_prob), ("recalibrated", recalibrated[rows]))
        }
    result = {
        "evaluate_config": asdict(config),
        "held_out": held_out,
        "warnings": warnings + direction_warnings(splits),
        "thresholds": [fit.threshold.to_dict() | {"fold": fold} for fold, fit in fits.items()],
        "splits": splits,
    }
    if k_fold:
        result["folds"] = fold_summary(predictions, fits)
    if baselines:
        result["baselines"] = compare_baselines(
            predictions.assign(y_prob=recalibrated), baselines, config, held_out
        )
    calibration_payload = {
        "method": config.recalibration,
        "recalibrators": [fit.recalibrator.to_dict() | {"fold": f} for f, fit in fits.items()],
        "splits": calibration,
    }
    return {
        "metrics": result,
        "calibration": calibration_payload,
        "recalibrated": recalibrated,
        "calls": calls,
    }


def fold_summary(predictions: pd.DataFrame, fits: dict[int, FoldFit]) -> dict:
    """Fold-wise test metrics (AUC; the rest at each fold's validation threshold), mean and sd."""
    rows = []
    for fold, fit in fits.items():
        test = predictions[(predictions.fold == fold) & (predictions.split == "test")]
        at = metrics_at_threshold(test.y_true, test.y_prob, fit.threshold.threshold)
        sweep = threshold_sweep(test.y_true, test.y_prob)
        rows.append(
            {
                "fold": fold,
                "n": len(test),
                "auc": sweep.roc_auc(),
                "average_precision": sweep.average_precision(),
                **{k: at[k] for k in RATE_KEYS},
            }
        )
    table = pd.DataFrame(rows)
    summary = {
        column: {"mean": float(table[column].mean()), "sd": float(table[column].std(ddof=1))}
        for column in table.columns
        if column not in ("fold", "n")
    }
    return {"per_fold": rows, "summary": summary}


def direction_warnings(splits: dict) -> list[str]:
    """A warning per part whose AUC CI lies wholly below 0.5: the score most likely ranks the
    other class (a label or score direction mix-up). Nothing is flipped."""
    return [
        f"{part}: AUC {block['auc']['auc']:.3f} (95% CI {block['auc']['ci_low']:.3f}-"
        f"{block['auc']['ci_high']:.3f}) is below 0.5 beyond chance: the score probably ranks "
        "the other class. Check the label's direction (e.g. os_2y: 1 = died within 2 years; a "
        "file's surv2yr: 1 = alive at 2 years) and the score's (imported predictions: "
        "--invert-score); nothing was flipped"
        for part, block in splits.items()
        if block["auc"]["ci_high"] < 0.5
    ]


def compare_baselines(
    predictions: pd.DataFrame,
    baselines: dict[str, pd.DataFrame],
    config: EvaluateConfig,
    held_out: str = "test",
) -> dict:
    """Each baseline's AUC with CI per split and, on the held-out part (test or external),
    DeLong against the image model. k-fold: the AUCs are fold-stratified (each fold's
    baseline model ranks its own patients), and DeLong compares the image model's
    probabilities recalibrated per fold (pass them as ``y_prob``) with the baseline's."""
    result = {}
    image = predictions[predictions.split == held_out].set_index("patient_id")  # once each
    k_fold = predictions.fold.max() > predictions.fold.min()
    for name, frame in baselines.items():
        entry = {}
        for part, rows in frame.groupby("split"):
            # k-fold validation rows repeat patients: draw patients, not rows
            boot = bootstrap_metrics(
                rows.y_true,
                rows.y_prob,
                0.5,
                config.bootstrap_resamples,
                config.seed,
                groups=rows.patient_id,
                strata=rows.fold if k_fold else None,
            )
            entry[part] = {
                "n": len(rows),
                "auc": _ci_block(boot, "auc"),
                "brier": _ci_block(boot, "brier"),
            }
        test = frame[frame.split == held_out]
        if len(test) and test.y_true.nunique() == 2:
            joined = image.loc[test.patient_id]
            try:
                entry["delong_image_vs_baseline"] = delong_test(
                    test.y_true, joined.y_prob, test.y_prob
                )
            except ValueError as error:  # e.g. a single patient of one class
                entry["delong_note"] = str(error)
        result[name] = entry
    return result


def _lists(mapping: dict) -> dict:
    return {key: np.asarray(value).tolist() for key, value in mapping.items()}
