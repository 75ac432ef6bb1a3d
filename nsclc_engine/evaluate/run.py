"""Evaluate a finished run folder the way a clinical prediction model must be evaluated.

Reads the run's ``predictions.csv`` (and its config and splits through
:mod:`nsclc_engine.runs`) and writes, atomically, into the run folder:

    metrics.json       per split: AUC / AP / Brier and the metrics at 0.5 and at the threshold
                       chosen on validation, each with a patient-level bootstrap 95 % CI;
                       baselines on the same splits and DeLong comparisons; k-fold summaries
    threshold.json     the rule, the value fitted on validation (per fold), when
    calibration.json   before/after recalibration (fitted on validation, applied to test)
    report.html        one self-contained page (figures embedded, opens offline)

Survival runs get ``metrics.json``, ``survival_models.csv`` and their own ``report.html``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from nsclc_engine.atomic import write_text_atomic
from nsclc_engine.cohort.build import load_cohort
from nsclc_engine.cohort.clinical import positive_class
from nsclc_engine.evaluate.baselines import BASELINES, fit_baseline, fit_survival_models
from nsclc_engine.evaluate.classification import evaluate_predictions
from nsclc_engine.evaluate.config import EvaluateConfig
from nsclc_engine.evaluate.report import render_report, render_survival_report
from nsclc_engine.evaluate.survival import (
    evaluate_survival_predictions,
    evaluate_survival_probabilities,
    survival_model_metrics,
)
from nsclc_engine.evaluate.yardstick import best_achievable, load_truth
from nsclc_engine.preprocess.dataset import AugmentConfig
from nsclc_engine.run_records import Threshold
from nsclc_engine.runs import (
    has_predictions,
    load_splits,
    now,
    read_config,
    read_predictions,
    read_raw_status,
    resolved_cohort,
    update_status,
    update_threshold,
    write_calibration,
    write_metrics,
    write_predictions,
    write_survival_baselines,
)

log = logging.getLogger(__name__)


def _cohort_table(run_dir: Path, run_config: dict) -> pd.DataFrame:
    cohort_dir = resolved_cohort(run_config)
    if cohort_dir is None:
        raise ValueError(f"{run_dir.name}: cohort table not found")
    return load_cohort(cohort_dir)


def run_baselines(
    run_dir: Path, run_config: dict, predictions: pd.DataFrame
) -> dict[str, pd.DataFrame]:
    """Clinical and volume baselines on the run's own splits and (possibly shuffled) labels."""
    try:
        table = _cohort_table(run_dir, run_config)
    except ValueError as error:
        log.warning("%s; baselines skipped", error)
        return {}
    labels = predictions.drop_duplicates("patient_id").set_index("patient_id").y_true
    table = table[table.patient_id.isin(labels.index)].assign(
        label=lambda t: t.patient_id.map(labels)
    )
    splits = load_splits(run_dir)
    results: dict[str, list] = {kind: [] for kind in BASELINES}
    for fold, split in enumerate(splits):
        for kind in results:
            try:
                frame = fit_baseline(kind, table, split, "label").assign(fold=fold)
            except ValueError as error:
                log.warning("%s baseline skipped: %s", kind, error)
                continue
            if len(splits) > 1:
                frame = frame[frame.split != "train"]  # out-of-fold parts only
            results[kind].append(frame)
    return {
        kind: pd.concat(frames, ignore_index=True) for kind, frames in results.items() if frames
    }


def evaluate_run(run_dir: str | Path, config: EvaluateConfig | None = None) -> dict:
    """Evaluate a finished run folder and write its metrics, threshold, calibration and report."""
    run_dir = Path(run_dir)
    config = config or EvaluateConfig()
    if not has_predictions(run_dir):
        raise ValueError(f"{run_dir.name}: no predictions; the run has not finished")
    predictions = read_predictions(run_dir)
    run_config = read_config(run_dir)
    if run_config.get("task") == "survival":
        metrics = evaluate_survival_run(run_dir, run_config, predictions, config)
    else:
        metrics = evaluate_classification_run(run_dir, run_config, predictions, config)
    if read_raw_status(run_dir).get("evaluation_error"):
        update_status(run_dir, evaluation_error="")
    return metrics


def evaluate_classification_run(
    run_dir: Path, run_config: dict, predictions: pd.DataFrame, config: EvaluateConfig
) -> dict:
    """``metrics.json``, ``threshold.json``, ``calibration.json`` and ``report.html`` of a
    classification run."""
    baselines = run_baselines(run_dir, run_config, predictions) if config.baselines else {}
    results = evaluate_predictions(predictions, config, baselines)
    metrics = {
        "label": run_config.get("label"),
        "positive_class": positive_class(run_config.get("label")),
        "shuffled_labels": run_config.get("shuffle_labels", False),
        **_augmentation_warning(run_config),
        **results["metrics"],
    }
    yardstick = _best_achievable(run_config, predictions, "classification", config)
    if yardstick is not None:
        metrics["best_achievable"] = yardstick
    fitted = {"rule": config.threshold_rule, "target": config.threshold_target}
    write_classification_outputs(
        run_dir,
        run_config,
        metrics,
        results,
        predictions,
        baselines,
        fitted | {"fitted_on": "validation"},
    )
    return metrics


def write_classification_outputs(
    run_dir: Path,
    run_config: dict,
    metrics: dict,
    results: dict,
    predictions: pd.DataFrame,
    baselines: dict,
    fitted: dict,
) -> None:
    """``metrics.json``, ``threshold.json`` (``fitted``: the rule and where it came from, with
    the per-fold thresholds), ``calibration.json`` and ``report.html`` of a classification run:
    trained, imported or externally validated."""
    write_metrics(run_dir, metrics)
    write_threshold_file(
        run_dir, fitted=fitted | {"thresholds": metrics["thresholds"], "written": now()}
    )
    write_calibration(run_dir, results["calibration"])
    write_text_atomic(
        run_dir / "report.html",
        render_report(run_dir, run_config, metrics, results, predictions, baselines),
    )


def run_survival_models(run_dir: Path, run_config: dict, predictions: pd.DataFrame) -> pd.DataFrame:
    """Image, clinical, volume and fusion risks (:func:`~nsclc_engine.evaluate.baselines.
    fit_survival_models`) for every fold of a survival run, on the run's own splits and
    (possibly shuffled) times and events: ``patient_id, split, fold, time_days, event`` and
    one column per model; ``attrs["fusion_coefficients"]`` per fold."""
    table = _cohort_table(run_dir, run_config)
    outcomes = predictions.drop_duplicates("patient_id").set_index("patient_id")
    table = table[table.patient_id.isin(outcomes.index)].assign(
        survival_time_days=lambda t: t.patient_id.map(outcomes.time_days),
        deadstatus_event=lambda t: t.patient_id.map(outcomes.event),
    )
    frames, coefficients = [], []
    for fold, split in enumerate(load_splits(run_dir)):
        image_risk = predictions[predictions.fold == fold].set_index("patient_id").risk
        frame = fit_survival_models(table, split, image_risk.to_dict()).assign(fold=fold)
        coefficients.append({"fold": fold, **frame.attrs["fusion_coefficients"]})
        frames.append(frame)
    result = pd.concat(frames, ignore_index=True)
    result.attrs["fusion_coefficients"] = coefficients
    return result


def evaluate_survival_run(
    run_dir: Path, run_config: dict, predictions: pd.DataFrame, config: EvaluateConfig
) -> dict:
    """``metrics.json``, ``survival_models.csv`` and ``report.html`` of a survival run."""
    result = evaluate_survival_predictions(predictions, config)
    horizons, baselines, predictions = evaluate_survival_probabilities(predictions, config)
    write_survival_baselines(run_dir, baselines, fitted_on="validation")
    write_predictions(run_dir, predictions)
    result["horizons"] = horizons
    write_threshold_file(run_dir, fitted=_survival_fitted(horizons))
    yardstick = _best_achievable(run_config, predictions, "survival", config)
    metrics = {
        "task": "survival",
        "risk": "higher = earlier death (Cox log hazard ratio)",
        "shuffled_labels": run_config.get("shuffle_labels", False),
        **_augmentation_warning(run_config),
        **result,
    }
    if yardstick is not None:
        metrics["best_achievable"] = yardstick
    try:
        models = run_survival_models(run_dir, run_config, predictions)
    except (ValueError, np.linalg.LinAlgError) as error:
        (run_dir / "survival_models.csv").unlink(missing_ok=True)  # never a stale one
        log.warning("%s: survival baselines and fusion skipped: %s", run_dir.name, error)
        metrics["warnings"] = [f"baselines and fusion skipped: {error}"]
    else:
        write_text_atomic(run_dir / "survival_models.csv", models.to_csv(index=False))
        metrics["models"] = survival_model_metrics(models, config)
    write_metrics(run_dir, metrics)
    write_text_atomic(run_dir / "report.html", render_survival_report(run_dir.name, metrics))
    return metrics


def _survival_fitted(horizons: dict) -> dict:
    """``threshold.json``'s fitted part for a survival run: the rule, its horizon and scale,
    and each fold's threshold on P(death by the horizon), fitted on validation."""
    fitted = {k: v for k, v in horizons.get("threshold", {}).items() if k != "held_out"}
    return fitted | {"thresholds": fitted.get("thresholds", []), "written": now()}


def write_threshold_file(
    run_dir: str | Path, fitted: dict | None = None, operating_point: dict | None = None
) -> dict:
    """``threshold.json``: the rule's per-fold thresholds fitted on validation (``fitted``,
    written by evaluation) and the operating point a user saved (``operating_point``, written
    by the dashboard); each writer keeps the other's part. ``threshold`` is the value in force:
    the saved operating point, else the fitted threshold of a one-split run."""

    def merge(current: dict) -> dict:
        if fitted is not None:
            current["fitted"] = fitted
        if operating_point is not None:
            current["operating_point"] = operating_point
        record = Threshold(current)
        in_force = record.operating_point.get("threshold")
        if in_force is None and len(record.fitted_thresholds) == 1:
            in_force = record.fitted_thresholds[0]["threshold"]
        current["threshold"] = in_force
        return current

    # one locked read-modify-write: an evaluation and a dashboard save never lose each other's part
    return update_threshold(Path(run_dir), merge)


def _augmentation_warning(run_config: dict) -> dict:
    """``{"augmentation_warning": text}`` for runs that augmented by label (the report's)."""
    warning = AugmentConfig(classes=run_config.get("augment", "off")).label_cue_warning
    return {"augmentation_warning": warning} if warning else {}


def _best_achievable(
    run_config: dict, predictions: pd.DataFrame, task: str, config: EvaluateConfig
) -> dict | None:
    """The yardstick (:mod:`nsclc_engine.evaluate.yardstick`) on the run's own patients,
    splits and (possibly shuffled) outcomes; ``None`` for real data."""
    if run_config.get("dicom"):
        return None
    truth = load_truth(run_config.get("resolved", {}).get("cohort_dir"))
    if truth is None:
        return None
    try:
        return best_achievable(predictions, truth, task, config.bootstrap_resamples, config.seed)
    except ValueError as error:
        log.warning("best achievable not computed: %s", error)
        return None
