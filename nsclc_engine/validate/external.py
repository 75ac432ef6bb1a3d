"""External validation of a frozen run: its model, preprocessing, threshold and recalibration
applied unchanged to a new cohort.

``python -m nsclc_engine.validate RUN_ID --name NAME (--dicom DIR --clinical CSV | --cohort
DIR)`` writes a run of kind ``external`` whose predictions form one split, ``external``:

* ``predictions.csv``: every preprocessed patient with a label (``unlabelled.csv``: the rest,
  predicted all the same);
* ``metrics.json``: discrimination with patient-level bootstrap CIs and the metrics at the
  frozen threshold; calibration-in-the-large and slope of the probabilities as deployed (raw,
  or recalibrated by the frozen recalibrator) on the new cohort; optionally a
  recalibration-in-the-large *on the external cohort itself*, labelled as such; a decision
  curve; a case-mix table development vs external. With fewer than
  :data:`MIN_PATIENTS` patients, or one class only, the predictions are still written and
  the metrics say "too few patients".
* ``case_mix.csv``, ``threshold.json`` (the frozen one), ``calibration.json``, ``report.html``.

A survival run's risks get survival probabilities from its frozen Breslow baselines
(``survival_baseline.json``, fitted on its validation rows; never refitted here): the
``survival_{h}d`` columns at its horizons, and C-index, time-dependent AUC, calibration and
D-calibration at them, and the calls at its frozen threshold on P(death by a horizon)
(:mod:`nsclc_engine.evaluate.survival_frozen`); the baselines are copied as the external
run's own ``survival_baseline.json``. A source evaluated before baselines were saved gets
C-index and time-dependent AUC only, and a warning to re-evaluate it.

A k-fold run is applied as the mean probability (or risk) of its fold models, at the mean
of their validation thresholds (survival: S(t) is the mean over the fold models of each one's
S(t) under its own baseline): an ensemble and a threshold that were never evaluated on the
run's own patients. Its metrics say so in a warning and, under ``fold_models``, evaluate each
fold model on its own (its AUC, its calls at its own validation threshold, or its C-index)
with the mean, SD and range across folds: the figures the internal evaluation stands behind.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from nsclc_engine.atomic import write_text_atomic
from nsclc_engine.cohort.build import CohortConfig, load_cohort, run_cohort
from nsclc_engine.cohort.clinical import positive_class
from nsclc_engine.evaluate.classification import FoldFit, evaluate_predictions
from nsclc_engine.evaluate.config import EvaluateConfig
from nsclc_engine.evaluate.frozen import fitted_thresholds, frozen_decision
from nsclc_engine.evaluate.imported import write_outputs
from nsclc_engine.evaluate.report import render_survival_report
from nsclc_engine.evaluate.run import write_threshold_file
from nsclc_engine.evaluate.survival import horizon_columns, split_c_indices
from nsclc_engine.evaluate.survival_frozen import (
    FrozenSurvival,
    external_baseline_payload,
    external_survival_horizons,
    frozen_survival_record,
    frozen_survival_rule,
    with_frozen_survival,
)
from nsclc_engine.explain.inference import load_run_model
from nsclc_engine.paths import artifacts_dir, default_cache_dir
from nsclc_engine.preprocess.dataset import CachedItem, CachedVolumeDataset, items_from_cache
from nsclc_engine.preprocess.volumes import PreprocessConfig, preprocess_cohort
from nsclc_engine.run_records import Metrics, Threshold
from nsclc_engine.runs import (
    create_run,
    has_predictions,
    now,
    read_config,
    read_predictions,
    read_threshold,
    resolved_cohort,
    run_dir,
    status,
    update_status,
    write_metrics,
    write_predictions,
    write_survival_baselines,
)
from nsclc_engine.stats.calibration import (
    calibration_intercept_slope,
    decision_curve,
    logit,
    sigmoid,
)
from nsclc_engine.stats.metrics import auc_score, metrics_at_threshold
from nsclc_engine.stats.survival import harrell_c_index
from nsclc_engine.train.loop import device_named
from nsclc_engine.train.prepare import source_key
from nsclc_engine.train.tasks import task_class
from nsclc_engine.validate.case_mix import case_mix_table

log = logging.getLogger(__name__)

MIN_PATIENTS = 10  # and both classes (classification) or two events (survival)
FOLD_PREFIX = "score_fold"  # predict_frozen's per-fold-model score columns


@dataclass(frozen=True)
class ValidateConfig:
    """What a frozen run is applied to; saved in the external run's ``config.json``."""

    dicom: str = ""
    clinical: str = ""
    cohort: str = ""  # a cohort folder (cohort.csv) or a folder with dicom/ and clinical.csv
    recalibrate_intercept: bool = False  # recalibration-in-the-large on the external cohort
    device: str = "auto"
    bootstrap_resamples: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        if bool(self.cohort) == bool(self.dicom or self.clinical):
            raise ValueError("give either --dicom DIR --clinical CSV, or --cohort DIR")
        if self.dicom and not self.clinical:
            raise ValueError("--dicom needs --clinical CSV (the labels and case mix)")
        if self.clinical and not self.dicom:
            raise ValueError("--clinical needs --dicom DIR")
        for option, path in (("--dicom", self.dicom), ("--cohort", self.cohort)):
            if path and not Path(path).is_dir():
                raise ValueError(f"{option} {path}: not a folder")
        if self.clinical and not Path(self.clinical).is_file():
            raise ValueError(f"--clinical {self.clinical}: no such file")
        if self.bootstrap_resamples < 1:
            raise ValueError("bootstrap_resamples must be 1 or more")


KIND_NAMES = {
    "imported": "an imported run",
    "external": "an external-validation run",
    "features": "a frozen-feature run (a linear model on an encoder's features)",
}


def frozen_source(source: Path) -> dict:
    """The source run's config, checked to be a finished trained run with a model."""
    config = read_config(source)
    if config.get("kind") in ("imported", "external", "features"):
        raise ValueError(
            f"run {source.name} is {KIND_NAMES[config['kind']]}: it has no network checkpoint of "
            "its own to apply"
        )
    state = status(source).get("state")
    if state != "finished" or not has_predictions(source):
        raise ValueError(f"run {source.name} is {state}: only a finished run can be validated")
    if not config.get("resolved", {}).get("preprocess"):
        raise ValueError(f"run {source.name}: config.json has no resolved preprocessing")
    return config


def frozen_fit(source: Path, task: str) -> tuple[FoldFit | None, dict]:
    """The source run's decision rule, frozen (:func:`~nsclc_engine.evaluate.frozen.
    frozen_decision`); a survival run's is its baselines and threshold on P(death by a
    horizon) (:func:`~nsclc_engine.evaluate.survival_frozen.frozen_survival_rule`), described
    in the record."""
    if task == "survival":
        return None, frozen_survival_record(frozen_survival_rule(source))
    return frozen_decision(source)


def external_cohort(config: ValidateConfig, artifacts: Path) -> Path:
    """The new cohort's folder: a given cohort folder, or one built (once per content) from
    ``--dicom``/``--clinical`` or a synthetic source folder (``dicom/`` + ``clinical.csv``)."""
    if config.cohort and (Path(config.cohort) / "cohort.csv").exists():
        return Path(config.cohort)
    dicom, clinical = Path(config.dicom), Path(config.clinical)
    if config.cohort:
        dicom, clinical = Path(config.cohort) / "dicom", Path(config.cohort) / "clinical.csv"
        if not (dicom.is_dir() and clinical.is_file()):
            raise ValueError(
                f"--cohort {config.cohort}: neither a cohort folder (cohort.csv) nor a source "
                "folder (dicom/ and clinical.csv)"
            )
    folder = artifacts / "cohorts" / f"{dicom.name}-{source_key(dicom, clinical)}"
    if not (folder / "cohort.csv").exists():
        run_cohort(dicom, clinical, folder, CohortConfig(), show_progress=False)
    return folder


def predict_frozen(
    source: Path, source_config: dict, cohort_dir: Path, cache_dir: Path, device: str = "auto"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(scores, failed)``: one row per preprocessed patient of the new cohort with the
    source run's score (probability of class 1, or Cox risk), the mean over fold models, and
    for a k-fold run each fold model's own score (``score_fold<k>``); the patients whose
    preprocessing failed, with the error."""
    import torch

    preprocess = PreprocessConfig(**source_config["resolved"]["preprocess"])
    table = preprocess_cohort(cohort_dir, preprocess, cache_dir, show_progress=False)
    ok = table[table.status != "failed"]
    failed = table[table.status == "failed"][["patient_id", "error"]]
    keys = dict(zip(ok.patient_id, ok.key, strict=True))
    paths = items_from_cache(cache_dir, keys, dict.fromkeys(keys, 0), preprocess)
    dataset = CachedVolumeDataset([CachedItem(p, 0, Path(paths[p])) for p in sorted(paths)])
    task = source_config.get("task", "classification")
    target = device_named(device)
    folds = max(int(source_config.get("folds", 0) or 0), 1)
    models = [load_run_model(source, fold, str(target)) for fold in range(folds)]
    scores = []
    with torch.no_grad():  # each volume read once, scored by every fold model
        for start in range(0, len(dataset), 8):
            batch = torch.stack([dataset[i][0] for i in range(start, min(start + 8, len(dataset)))])
            batch = batch.to(target)
            per_fold = [task_class(task).scores(model(batch).float().cpu()) for model in models]
            scores.append(torch.stack(per_fold, dim=1))  # patients x folds
    # float64, as every other run's predictions.csv is read back (a float32 column refuses
    # recalibrated values in place)
    by_fold = torch.cat(scores).double().numpy() if scores else np.zeros((0, folds))
    frame = pd.DataFrame(
        {"patient_id": [item.patient_id for item in dataset.items], "score": by_fold.mean(axis=1)}
    )
    if folds > 1:
        for fold in range(folds):
            frame[f"{FOLD_PREFIX}{fold}"] = by_fold[:, fold]
    return frame, failed


def fold_columns(scores: pd.DataFrame) -> list[str]:
    """The per-fold-model score columns of :func:`predict_frozen`'s frame (none: one model)."""
    columns = [column for column in scores.columns if column.startswith(FOLD_PREFIX)]
    return sorted(columns, key=lambda column: int(column[len(FOLD_PREFIX) :]))


def fold_risks(scores: pd.DataFrame) -> np.ndarray:
    """[n, k]: each fold model's score (one model: the ``score`` column)."""
    return scores[fold_columns(scores) or ["score"]].to_numpy(dtype=float)


def ensemble_warning(run_id: str, folds: int, task: str) -> str:
    """What an external figure of a k-fold run is, in a sentence."""
    what = (
        "the mean of its fold models' risks (C-index) and the mean over its fold models of "
        "each one's S(t) under its own frozen baseline (survival probabilities), called at "
        "the mean of their validation thresholds on P(death by the horizon)"
        if task == "survival"
        else "the mean of its fold models' probabilities, called at the mean of their "
        "validation thresholds"
    )
    return (
        f"run {run_id} has {folds} fold models: the external figures are of {what}, an "
        "ensemble (and threshold) never evaluated on the run's own patients; each fold "
        "model's own figures, and their mean and spread, are under fold_models"
    )


def fold_model_metrics(
    labelled: pd.DataFrame, task: str, label: str, thresholds: dict[int, float]
) -> dict:
    """Each fold model on its own on the external patients: AUC and the calls at that fold's
    own validation threshold (raw probabilities; ``thresholds``: fold -> threshold, a fold
    without one gets AUC only), or Harrell's C; with mean, SD (ddof 1) and range per metric.
    A metric undefined for a fold is NaN there and left out of the summary, which counts it."""
    per_fold = []
    for column in fold_columns(labelled):
        fold = int(column[len(FOLD_PREFIX) :])
        score = labelled[column].to_numpy(dtype=float)
        entry: dict = {"fold": fold}
        if task == "survival":
            time = labelled.survival_time_days.to_numpy(dtype=float)
            event = labelled.deadstatus_event.to_numpy(dtype=int)
            entry["c_index"] = _defined(harrell_c_index, time, event, score)
        else:
            y_true = labelled[label].to_numpy(dtype=int)
            entry["auc"] = _defined(auc_score, y_true, score)
            if fold in thresholds:
                at = metrics_at_threshold(y_true, score, thresholds[fold])
                entry["threshold"] = float(thresholds[fold])
                for key in ("sensitivity", "specificity", "balanced_accuracy"):
                    entry[key] = float(at[key])
        per_fold.append(entry)
    keys = [key for key in per_fold[0] if key not in ("fold", "threshold")] if per_fold else []
    summary = {}
    for key in keys:
        values = np.array([entry.get(key, np.nan) for entry in per_fold], dtype=float)
        defined = values[np.isfinite(values)]
        summary[key] = {
            "mean": float(defined.mean()) if len(defined) else None,
            "sd": float(defined.std(ddof=1)) if len(defined) > 1 else None,
            "min": float(defined.min()) if len(defined) else None,
            "max": float(defined.max()) if len(defined) else None,
            "n_folds": len(defined),
            "n_undefined": int(len(values) - len(defined)),
        }
    return {
        "label": (
            "each fold model applied on its own to the external patients (what the run's "
            "internal evaluation scored), its calls at its own validation threshold"
        ),
        "folds": per_fold,
        "summary": summary,
    }


def _defined(metric, *arrays) -> float:
    try:
        value = float(metric(*arrays))
    except ValueError:  # one class, or no comparable pair
        return float("nan")
    return value if math.isfinite(value) else float("nan")


def too_few(frame: pd.DataFrame, task: str) -> str:
    """Why these patients cannot support the metrics, or ``""``."""
    if task == "survival":
        enough = len(frame) >= MIN_PATIENTS and frame.event.sum() >= 2
        what = f"{int(frame.event.sum())} events"
    else:
        enough = len(frame) >= MIN_PATIENTS and frame.y_true.nunique() == 2
        what = f"{int(frame.y_true.sum())} positive"
    if enough:
        return ""
    return (
        f"too few patients: {len(frame)} labelled ({what}); metrics with confidence intervals "
        f"need at least {MIN_PATIENTS} and both outcomes. The predictions are written."
    )


def calibration_block(y_true, deployed, recalibrate_intercept: bool) -> dict:
    """Calibration-in-the-large and slope of the deployed probabilities on the external
    cohort, and, where asked, the recalibration-in-the-large fitted on that cohort itself."""
    block = {"deployed": calibration_intercept_slope(y_true, deployed)}
    shift = block["deployed"]["intercept"]
    if recalibrate_intercept and math.isfinite(shift):
        updated = sigmoid(logit(deployed) + shift)
        block["recalibrated_in_the_large"] = {
            "label": (
                "recalibration-in-the-large: the intercept refitted on these external "
                "patients themselves (in-sample; the model's ranking is unchanged)"
            ),
            "shift": shift,
            **calibration_intercept_slope(y_true, updated),
        }
    return block


def validate_run(
    run_id: str, name: str, config: ValidateConfig, artifacts: str | Path | None = None
) -> tuple[str, dict]:
    """Apply run ``run_id`` unchanged to a new cohort and write the external run ``name``;
    returns its id and metrics."""
    root = Path(artifacts or artifacts_dir())
    source = run_dir(run_id, root)
    if not source.is_dir():
        raise ValueError(f"no run {run_id!r} in {source.parent}")
    source_config = frozen_source(source)
    task = source_config.get("task", "classification")
    label = source_config.get("label", "os_2y")
    fit, frozen = frozen_fit(source, task)
    rule = frozen_survival_rule(source) if task == "survival" else None
    if (run_dir(name, root)).exists():
        raise ValueError(f"run {name!r} already exists in {source.parent}; choose another --name")
    cohort_dir = external_cohort(config, root)
    cache_dir = default_cache_dir() if "NSCLC_CACHE_DIR" in os.environ else root / "cache"
    scores, failed = predict_frozen(source, source_config, cohort_dir, cache_dir, config.device)
    cohort = load_cohort(cohort_dir).set_index("patient_id")
    scores = scores.join(cohort, on="patient_id")
    per_fold = fold_columns(scores)
    if rule is not None and rule.applies_to(max(len(per_fold), 1)):
        scores = with_frozen_survival(scores, fold_risks(scores), rule)
    outcome = ["survival_time_days", "deadstatus_event"] if task == "survival" else [label]
    labelled = scores.dropna(subset=outcome)
    predictions = external_predictions(labelled, task, label)
    unlabelled = scores[~scores.patient_id.isin(labelled.patient_id)]
    unlabelled = unlabelled[["patient_id", "score", *horizon_columns(scores).values()]]
    developed_on = set(read_predictions(source).patient_id)
    case_mix = case_mix_table(
        development_cohort(source_config, developed_on), cohort.reset_index(), label
    )
    evaluate = EvaluateConfig(
        bootstrap_resamples=config.bootstrap_resamples, seed=config.seed, baselines=False
    )
    metrics = {
        "kind": "external",
        "task": task,
        "label": label,
        "positive_class": positive_class(label),
        "source_run": run_id,
        "shuffled_labels": False,
        "threshold_source": frozen,
        "n_predicted": len(scores),
        "n_unlabelled": len(unlabelled),
        "n_failed": len(failed),
        "held_out": "external",
    }
    overlap = sorted(developed_on & set(scores.patient_id))
    warnings = []
    if per_fold:
        warnings.append(ensemble_warning(run_id, len(per_fold), task))
    if overlap:
        warnings.append(
            f"{len(overlap)} of these patients (e.g. {', '.join(overlap[:3])}) were in run "
            f"{run_id}'s own cohort (training, validation or test): for them this is not an "
            "external validation"
        )
    reason = too_few(predictions, task)
    results = None
    if reason:
        metrics |= {"too_few_patients": reason, "splits": {}, "warnings": [reason, *warnings]}
    elif task == "survival":
        metrics |= survival_metrics(predictions, evaluate, rule, fold_risks(labelled))
        metrics["warnings"] += warnings
    else:
        results = evaluate_predictions(predictions, evaluate, None, {0: fit})
        deployed = results["recalibrated"]
        metrics |= results["metrics"]
        metrics["warnings"] += warnings
        metrics["calibration_external"] = calibration_block(
            predictions.y_true, deployed, config.recalibrate_intercept
        )
        curve = decision_curve(predictions.y_true, deployed)
        metrics["decision_curve"] = {key: np.asarray(v).tolist() for key, v in curve.items()}
    if per_fold and not reason:
        saved = Threshold() if task == "survival" else read_threshold(source)
        metrics["fold_models"] = fold_model_metrics(labelled, task, label, fitted_thresholds(saved))
    metrics["case_mix"] = case_mix.to_dict(orient="records")
    run_config = {
        "kind": "external",
        "task": task,
        "label": label,
        "source_run": run_id,
        "validate": asdict(config),
        "threshold_source": frozen,
        "resolved": {
            "cohort_dir": str(cohort_dir),
            "preprocess": source_config["resolved"]["preprocess"],
        },
    }
    new_id = create_run(run_config, root, name)
    folder = run_dir(new_id, root)
    try:
        write_predictions(folder, predictions)
        write_text_atomic(folder / "unlabelled.csv", unlabelled.to_csv(index=False))
        write_text_atomic(folder / "failed.csv", failed.to_csv(index=False))
        write_text_atomic(folder / "case_mix.csv", case_mix.to_csv(index=False))
        if task == "survival":
            write_survival_outputs(folder, metrics, rule, max(len(per_fold), 1))
        elif results is None:
            write_metrics(folder, metrics)
        else:
            write_outputs(folder, run_config, metrics, results, predictions, {}, frozen)
    except Exception as error:  # the run says it failed rather than waiting forever
        update_status(folder, state="failed", error=str(error), finished=now())
        raise
    update_status(
        folder, state="finished", progress=1.0, stage="external validation", finished=now()
    )
    return new_id, metrics


def development_cohort(source_config: dict, patients: set[str]) -> pd.DataFrame | None:
    """The cohort rows of ``patients``, those the frozen run was developed on (all its parts)."""
    folder = resolved_cohort(source_config)
    if folder is None:
        return None
    cohort = load_cohort(folder)
    return cohort[cohort.patient_id.isin(patients)]


def external_predictions(labelled: pd.DataFrame, task: str, label: str) -> pd.DataFrame:
    """The labelled patients' rows in the run's prediction columns, split ``external``."""
    frame = pd.DataFrame({"patient_id": labelled.patient_id, "split": "external", "fold": 0})
    if task == "survival":
        frame["risk"] = labelled.score.to_numpy()
        frame["time_days"] = labelled.survival_time_days.astype(float).to_numpy()
        frame["event"] = labelled.deadstatus_event.astype(int).to_numpy()
        for column in horizon_columns(labelled).values():
            frame[column] = labelled[column].to_numpy()
    else:
        frame["y_true"] = labelled[label].astype(int).to_numpy()
        frame["y_prob"] = labelled.score.to_numpy()
    return frame.reset_index(drop=True)


def survival_metrics(
    predictions: pd.DataFrame,
    evaluate: EvaluateConfig,
    rule: FrozenSurvival | None = None,
    risks: np.ndarray | None = None,
) -> dict:
    """Harrell's C with its patient-level bootstrap CI on the external patients; with the
    source run's frozen ``rule`` (``risks`` [n, k]: each fold model's risk, default the
    ``risk`` column), the ``horizons`` block of
    :func:`~nsclc_engine.evaluate.survival_frozen.external_survival_horizons`."""
    result: dict = {"splits": split_c_indices(predictions, evaluate), "folds": [], "warnings": []}
    if rule is not None:
        risks = predictions[["risk"]].to_numpy(dtype=float) if risks is None else risks
        result["horizons"], result["warnings"] = external_survival_horizons(
            predictions, risks, rule, evaluate
        )
    return result


def write_survival_outputs(
    folder: Path, metrics: dict, rule: FrozenSurvival | None, n_models: int
) -> None:
    """``metrics.json``; where the source's baselines apply, their copy as the run's own
    ``survival_baseline.json``; where its threshold does, ``threshold.json`` (the frozen one);
    and, with metrics to show, ``report.html``."""
    write_metrics(folder, metrics)
    if rule is not None and rule.applies_to(n_models):
        write_survival_baselines(folder, **external_baseline_payload(rule, n_models))
    threshold = Metrics(metrics).horizon_threshold
    if "held_out" in threshold:
        fitted = {k: v for k, v in threshold.items() if k != "held_out"}
        write_threshold_file(folder, fitted=fitted | {"written": now()})
    if metrics["splits"]:
        write_text_atomic(folder / "report.html", render_survival_report(folder.name, metrics))
