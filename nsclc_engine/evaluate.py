"""Evaluate a finished run the way a clinical prediction model must be evaluated.

``python -m nsclc_engine.evaluate RUN_ID [--threshold-rule youden] [--set key=value]`` reads
the run's ``predictions.csv`` and writes, atomically, into the run folder:

    metrics.json       per split: AUC / AP / Brier and the metrics at 0.5 and at the threshold
                       chosen on validation, each with a patient-level bootstrap 95 % CI;
                       baselines on the same splits and DeLong comparisons; k-fold summaries
    threshold.json     the rule, the value fitted on validation (per fold), when
    calibration.json   before/after recalibration (fitted on validation, applied to test)
    report.html        one self-contained page (figures embedded, opens offline)

Thresholds and recalibrators are fitted on validation predictions only and applied frozen to
test; test labels are read only to score.
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from nsclc_engine.calibration import (
    RECALIBRATION_METHODS,
    calibration_summary,
    decision_curve,
    fit_recalibrator,
    probability_histograms,
    reliability_curve,
)
from nsclc_engine.config import add_config_arguments, load_config, write_text_atomic
from nsclc_engine.metrics import (
    RATE_KEYS,
    THRESHOLD_RULES,
    bootstrap_metrics,
    choose_threshold,
    delong_test,
    metrics_at_threshold,
    threshold_sweep,
)
from nsclc_engine.paths import artifacts_dir

log = logging.getLogger(__name__)

POSITIVE_MEANING = {
    "deadstatus_event": "1 = deceased at last follow-up",
    "os_2y": "1 = died within 2 years",
}


@dataclass(frozen=True)
class EvaluateConfig:
    """How a run is evaluated; saved inside ``metrics.json``."""

    threshold_rule: str = "youden"
    threshold_target: float | None = None  # for spec_at_sens, sens_at_spec and fixed
    recalibration: str = "platt"
    n_bins: int = 10
    bootstrap_resamples: int = 2000
    seed: int = 0
    baselines: bool = True

    def __post_init__(self) -> None:
        if self.threshold_rule not in THRESHOLD_RULES:
            raise ValueError(
                f"threshold_rule {self.threshold_rule!r}: choose one of {THRESHOLD_RULES}"
            )
        if self.recalibration not in RECALIBRATION_METHODS:
            raise ValueError(
                f"recalibration {self.recalibration!r}: choose one of {RECALIBRATION_METHODS}"
            )
        if self.n_bins < 2 or self.bootstrap_resamples < 1:
            raise ValueError("n_bins must be >= 2 and bootstrap_resamples >= 1")


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
) -> dict:
    """Discrimination with CIs, and metrics with CIs at 0.5 and at ``threshold``.

    ``calls`` (0/1 per patient) replaces ``y_prob >= threshold`` where each patient had its own
    fold's threshold (pooled out-of-fold predictions).
    """
    y_true = np.asarray(y_true, dtype=int)
    y_prob = np.asarray(y_prob, dtype=float)
    boot = bootstrap_metrics(y_true, y_prob, 0.5, config.bootstrap_resamples, config.seed)
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


def evaluate_predictions(
    predictions: pd.DataFrame,
    config: EvaluateConfig,
    baselines: dict[str, pd.DataFrame] | None = None,
) -> dict:
    """Everything in ``metrics.json`` and ``calibration.json`` from a predictions table
    (``patient_id, split, fold, y_true, y_prob``) and optional baseline predictions on the same
    splits (``{name: frame}`` with the same columns)."""
    warnings: list[str] = []
    fits = fit_on_validation(predictions, config, warnings)
    k_fold = len(fits) > 1
    threshold_of = predictions.fold.map({f: fit.threshold.threshold for f, fit in fits.items()})
    calls = (predictions.y_prob >= threshold_of).astype(int)
    recalibrated = predictions.y_prob.copy()
    for fold, fit in fits.items():
        rows = predictions.fold == fold
        recalibrated[rows] = fit.recalibrator.apply(predictions.y_prob[rows])
    splits, calibration = {}, {}
    # k-fold: only the out-of-fold test part holds each patient once (train and validation
    # rows repeat patients across folds, which a patient-level bootstrap must not resample)
    parts = predictions[predictions.split == "test"] if k_fold else predictions
    for part, frame in parts.groupby("split"):
        rows = frame.index
        splits[part] = describe_split(
            frame.y_true,
            frame.y_prob,
            None if k_fold else fits[next(iter(fits))].threshold.threshold,
            config,
            calls=calls[rows] if k_fold else None,
        )
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
        "warnings": warnings,
        "thresholds": [fit.threshold.to_dict() | {"fold": fold} for fold, fit in fits.items()],
        "splits": splits,
    }
    if k_fold:
        result["folds"] = fold_summary(predictions, fits)
    if baselines:
        result["baselines"] = compare_baselines(predictions, baselines, config)
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


def compare_baselines(
    predictions: pd.DataFrame, baselines: dict[str, pd.DataFrame], config: EvaluateConfig
) -> dict:
    """Each baseline's AUC with CI per split and, on test, DeLong against the image model."""
    result = {}
    image = predictions[predictions.split == "test"].set_index("patient_id")  # once per patient
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
            )
            entry[part] = {
                "n": len(rows),
                "auc": _ci_block(boot, "auc"),
                "brier": _ci_block(boot, "brier"),
            }
        test = frame[frame.split == "test"]
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


# --- the run folder ----------------------------------------------------------------------------


def run_baselines(run_dir: Path, predictions: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Clinical and volume baselines on the run's own splits and (possibly shuffled) labels."""
    from nsclc_engine.baselines import BASELINES, fit_baseline
    from nsclc_engine.cohort import load_cohort

    resolved = json.loads((run_dir / "config.json").read_text()).get("resolved", {})
    cohort_dir = resolved.get("cohort_dir")
    if not cohort_dir or not (Path(cohort_dir) / "cohort.csv").exists():
        log.warning("%s: cohort table not found; baselines skipped", run_dir.name)
        return {}
    table = load_cohort(cohort_dir)
    labels = predictions.drop_duplicates("patient_id").set_index("patient_id").y_true
    table = table[table.patient_id.isin(labels.index)].assign(
        label=lambda t: t.patient_id.map(labels)
    )
    splits = json.loads((run_dir / "splits.json").read_text())["splits"]
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
    from nsclc_engine.train import write_json

    run_dir = Path(run_dir)
    config = config or EvaluateConfig()
    path = run_dir / "predictions.csv"
    if not path.exists():
        raise ValueError(f"{run_dir.name}: no predictions.csv; the run has not finished")
    predictions = pd.read_csv(path, dtype={"patient_id": str})
    run_config = json.loads((run_dir / "config.json").read_text())
    if run_config.get("task") == "survival":
        return evaluate_survival_run(run_dir, run_config, predictions, config)
    baselines = run_baselines(run_dir, predictions) if config.baselines else {}
    results = evaluate_predictions(predictions, config, baselines)
    metrics = {
        "label": run_config.get("label"),
        "positive_class": POSITIVE_MEANING.get(run_config.get("label"), "1"),
        "shuffled_labels": run_config.get("shuffle_labels", False),
        **_augmentation_warning(run_config),
        **results["metrics"],
    }
    yardstick = _best_achievable(run_config, predictions, "classification")
    if yardstick is not None:
        metrics["best_achievable"] = yardstick
    write_json(run_dir / "metrics.json", metrics)
    write_threshold_file(
        run_dir,
        fitted={
            "rule": config.threshold_rule,
            "target": config.threshold_target,
            "fitted_on": "validation",
            "thresholds": metrics["thresholds"],
            "written": dt.datetime.now().isoformat(timespec="seconds"),
        },
    )
    write_json(run_dir / "calibration.json", results["calibration"])
    write_text_atomic(
        run_dir / "report.html",
        render_report(run_dir, run_config, metrics, results, predictions, baselines),
    )
    status = (
        json.loads((run_dir / "status.json").read_text())
        if (run_dir / "status.json").exists()
        else {}
    )
    if status.get("evaluation_error"):
        from nsclc_engine.train import update_status

        update_status(run_dir, evaluation_error="")
    return metrics


def evaluate_survival_predictions(predictions: pd.DataFrame, config: EvaluateConfig) -> dict:
    """Harrell's C with a CI per split (k-fold: the out-of-fold test rows), and per fold on
    test: Uno's C, time-dependent AUC at 1 and 2 years, integrated Brier score (censoring
    weights from that fold's training rows, the baseline hazard from its validation rows) and
    risk groups cut at the median of that fold's validation risks, with Kaplan-Meier curves
    and the log-rank test."""
    from nsclc_engine.survival import bootstrap_c_index, evaluate_risks, risk_groups

    k_fold = predictions.fold.max() > predictions.fold.min()
    parts = predictions[predictions.split == "test"] if k_fold else predictions
    splits = {}
    for part, frame in parts.groupby("split"):
        splits[part] = {
            "n": len(frame),
            "n_events": int(frame.event.sum()),
            "c_index": bootstrap_c_index(
                frame.time_days, frame.event, frame.risk, config.bootstrap_resamples, config.seed
            ),
        }
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
    return {"evaluate_config": asdict(config), "splits": splits, "folds": folds}


def run_survival_models(run_dir: Path, predictions: pd.DataFrame) -> pd.DataFrame:
    """Image, clinical, volume and fusion risks (:func:`~nsclc_engine.baselines.
    fit_survival_models`) for every fold of a survival run, on the run's own splits and
    (possibly shuffled) times and events: ``patient_id, split, fold, time_days, event`` and
    one column per model; ``attrs["fusion_coefficients"]`` per fold."""
    from nsclc_engine.baselines import fit_survival_models
    from nsclc_engine.cohort import load_cohort

    resolved = json.loads((run_dir / "config.json").read_text()).get("resolved", {})
    cohort_dir = resolved.get("cohort_dir")
    if not cohort_dir or not (Path(cohort_dir) / "cohort.csv").exists():
        raise ValueError(f"{run_dir.name}: cohort table not found")
    outcomes = predictions.drop_duplicates("patient_id").set_index("patient_id")
    table = load_cohort(cohort_dir)
    table = table[table.patient_id.isin(outcomes.index)].assign(
        survival_time_days=lambda t: t.patient_id.map(outcomes.time_days),
        deadstatus_event=lambda t: t.patient_id.map(outcomes.event),
    )
    splits = json.loads((run_dir / "splits.json").read_text())["splits"]
    frames, coefficients = [], []
    for fold, split in enumerate(splits):
        image_risk = predictions[predictions.fold == fold].set_index("patient_id").risk
        frame = fit_survival_models(table, split, image_risk.to_dict()).assign(fold=fold)
        coefficients.append({"fold": fold, **frame.attrs["fusion_coefficients"]})
        frames.append(frame)
    result = pd.concat(frames, ignore_index=True)
    result.attrs["fusion_coefficients"] = coefficients
    return result


def survival_model_metrics(models: pd.DataFrame, config: EvaluateConfig) -> dict:
    """Per model: Harrell's C with CI per split (k-fold: the out-of-fold test rows only); per
    fold on test: Uno's C, time-dependent AUC and IBS; paired C-index differences on test."""
    from nsclc_engine.baselines import SURVIVAL_MODELS
    from nsclc_engine.survival import bootstrap_c_index, evaluate_risks, paired_c_index_difference

    k_fold = models.fold.max() > models.fold.min()
    parts = models[models.split == "test"] if k_fold else models
    result: dict = {"description": dict(SURVIVAL_MODELS), "c_index": {}, "folds": []}
    for name in SURVIVAL_MODELS:
        result["c_index"][name] = {
            part: bootstrap_c_index(
                frame.time_days, frame.event, frame[name], config.bootstrap_resamples, config.seed
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
            )
        except ValueError:
            continue
        result["comparisons"].append({"a": a, "b": b, **difference})
    result["fusion_coefficients"] = models.attrs.get("fusion_coefficients", [])
    return result


def _survival_models_section(models: dict) -> str:
    """HTML: the C-index of image / clinical / volume / fusion per split, their paired test
    differences, time-dependent AUC per fold and the fusion weights."""
    from nsclc_engine.baselines import in_sample

    rows = [
        {
            "model": name,
            "what": models["description"][name],
            **{
                f"{part} C (95% CI)": _fmt_ci(v, "c_index") + ("*" if in_sample(name, part) else "")
                for part, v in per_split.items()
            },
        }
        for name, per_split in models["c_index"].items()
    ]
    parts = ["<h2>Image vs clinical vs volume vs fusion (same patients, same split)</h2>"]
    parts.append(_table(pd.DataFrame(rows)))
    parts.append(
        "<p>* optimistic: fitted on these patients (every model on train; the fusion weights "
        "and the image model's best epoch on validation). Compare models on test.</p>"
    )
    differences = [
        {
            "comparison": f"{c['a']} - {c['b']}",
            "C difference (95% CI)": f"{c['difference']:+.3f} ({c['ci_low']:+.3f} to "
            f"{c['ci_high']:+.3f})",
            "bootstrap p": f"{c['p_value']:.3f}",
        }
        for c in models.get("comparisons", [])
    ]
    if differences:
        parts.append("<h3>Paired differences on test</h3>" + _table(pd.DataFrame(differences)))
    timed = []
    for entry in models["folds"]:
        for name in models["c_index"]:
            values = entry.get(name, {})
            if "time_dependent_auc" in values:
                timed.append(
                    {
                        "fold": entry["fold"],
                        "model": name,
                        "Uno C": round(values["uno_c_index"], 3),
                        **{
                            f"AUC({k})": round(v, 3)
                            for k, v in values["time_dependent_auc"].items()
                        },
                        "IBS": round(values["integrated_brier_score"], 3),
                    }
                )
    if timed:
        parts.append("<h3>Time-dependent metrics on test</h3>" + _table(pd.DataFrame(timed)))
    weights = models.get("fusion_coefficients", [])
    if weights:
        parts.append(
            "<p>Fusion weights per standardised risk score, fitted on validation: "
            + "; ".join(
                f"fold {w['fold']}: "
                + ", ".join(f"{k} {v:+.2f}" for k, v in w.items() if k != "fold")
                for w in weights
            )
            + "</p>"
        )
    return "\n".join(parts)


def _survival_set(frame: pd.DataFrame, model: str) -> dict:
    return {
        "time": frame.time_days.to_numpy(),
        "event": frame.event.to_numpy().astype(bool),
        "risk": frame[model].to_numpy(),
    }


def evaluate_survival_run(
    run_dir: Path, run_config: dict, predictions: pd.DataFrame, config: EvaluateConfig
) -> dict:
    """``metrics.json`` and ``report.html`` of a survival run (``--task survival``)."""
    from nsclc_engine import figures
    from nsclc_engine.train import write_json

    result = evaluate_survival_predictions(predictions, config)
    yardstick = _best_achievable(run_config, predictions, "survival")
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
        models = run_survival_models(run_dir, predictions)
    except (ValueError, np.linalg.LinAlgError) as error:
        (run_dir / "survival_models.csv").unlink(missing_ok=True)  # never a stale one
        log.warning("%s: survival baselines and fusion skipped: %s", run_dir.name, error)
        metrics["warnings"] = [f"baselines and fusion skipped: {error}"]
    else:
        write_text_atomic(run_dir / "survival_models.csv", models.to_csv(index=False))
        metrics["models"] = survival_model_metrics(models, config)
    write_json(run_dir / "metrics.json", _plain(metrics))
    sections = []
    rows = [
        {
            "split": part,
            "n": v["n"],
            "events": v["n_events"],
            "Harrell C (95% CI)": _fmt_ci(v["c_index"], "c_index"),
        }
        for part, v in result["splits"].items()
    ]
    sections.append("<h2>Concordance</h2>" + _table(pd.DataFrame(rows)))
    if yardstick is not None:
        sections.append(_yardstick_section(yardstick, "C-index"))
    if metrics.get("augmentation_warning"):
        sections.append(f"<p><b>Warning:</b> {html.escape(metrics['augmentation_warning'])}</p>")
    figure = _embedder("480px")
    if "models" in metrics:
        sections.append(_survival_models_section(metrics["models"]))
    for entry in result["folds"]:
        if "uno_c_index" in entry:
            aucs = ", ".join(f"{k}: {v:.3f}" for k, v in entry["time_dependent_auc"].items())
            sections.append(
                f"<h3>Fold {entry['fold']} (test)</h3><p>Uno's C {entry['uno_c_index']:.3f}; "
                f"time-dependent AUC {aucs}; integrated Brier score "
                f"{entry['integrated_brier_score']:.3f}</p>"
            )
        if entry.get("risk_groups"):
            groups = entry["risk_groups"]
            sections.append(
                figure(figures.kaplan_meier_figure(groups["groups"], groups["logrank"]))
            )
    body = "\n".join(sections)
    write_text_atomic(
        run_dir / "report.html",
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Survival report "
        f"{html.escape(run_dir.name)}</title></head><body><h1>Survival report: "
        f"{html.escape(run_dir.name)}</h1>{body}</body></html>",
    )
    return metrics


def _plain(value):
    """JSON-ready copy: arrays to lists, NumPy scalars to Python numbers."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_threshold_file(
    run_dir: str | Path, fitted: dict | None = None, operating_point: dict | None = None
) -> dict:
    """``threshold.json``: the rule's per-fold thresholds fitted on validation (``fitted``,
    written by evaluation) and the operating point a user saved (``operating_point``, written
    by the dashboard); each writer keeps the other's part. ``threshold`` is the value in force:
    the saved operating point, else the fitted threshold of a one-split run."""
    from nsclc_engine.train import write_json

    path = Path(run_dir) / "threshold.json"
    current = json.loads(path.read_text()) if path.exists() else {}
    if fitted is not None:
        current["fitted"] = fitted
    if operating_point is not None:
        current["operating_point"] = operating_point
    in_force = (current.get("operating_point") or {}).get("threshold")
    if in_force is None and len((current.get("fitted") or {}).get("thresholds", [])) == 1:
        in_force = current["fitted"]["thresholds"][0]["threshold"]
    current["threshold"] = in_force
    write_json(path, current)
    return current


def _augmentation_warning(run_config: dict) -> dict:
    """``{"augmentation_warning": text}`` for runs that augmented by label (the report's)."""
    from nsclc_engine.data import AugmentConfig

    warning = AugmentConfig(classes=run_config.get("augment", "off")).label_cue_warning
    return {"augmentation_warning": warning} if warning else {}


def _best_achievable(run_config: dict, predictions: pd.DataFrame, task: str) -> dict | None:
    """The yardstick (:mod:`nsclc_engine.yardstick`) on the run's own patients, splits and
    (possibly shuffled) outcomes; ``None`` for real data."""
    from nsclc_engine.yardstick import best_achievable, load_truth

    if run_config.get("dicom"):
        return None
    truth = load_truth(run_config.get("resolved", {}).get("cohort_dir"))
    if truth is None:
        return None
    try:
        return best_achievable(predictions, truth, task)
    except ValueError as error:
        log.warning("best achievable not computed: %s", error)
        return None


def _yardstick_section(yardstick: dict, metric: str) -> str:
    rows = [
        {
            "split": part,
            "n": block["n"],
            f"true risk {metric}": block["eta"],
            f"image part {metric}": block["eta_image"],
        }
        for part, block in yardstick["splits"].items()
    ]
    return (
        f"<h2>Best achievable on these patients</h2><p>Synthetic cohort: the {metric} of the "
        "true risk score and of its image part (all an image-only model can reach) on exactly "
        "the patients of each split.</p>" + _table(pd.DataFrame(rows).round(3))
    )


# --- the HTML report ---------------------------------------------------------------------------

TRIPOD_ITEMS = (
    ("Data: source, dates, eligibility", "cohort summary and exclusions with reasons"),
    ("Outcome definition", "label and positive class stated"),
    ("Sample size and missing data", "per-split counts, class balance, excluded patients"),
    ("Data splitting (development / evaluation)", "patient-level splits, sizes and balance"),
    ("Model performance: discrimination", "AUC and AP with bootstrap 95 % CIs"),
    ("Model performance: calibration", "reliability diagram, Brier, ECE, intercept, slope"),
    ("Clinical utility", "decision curve with treat-all / treat-none"),
    ("Comparison with simpler models", "clinical-only and volume-only baselines, DeLong"),
    ("Threshold choice", "rule fitted on validation, applied frozen to test"),
)


def _embedder(height: str):
    """``figure(fig) -> html`` for one report: plotly.js inline once, in the first figure."""
    first = [True]

    def figure(fig) -> str:
        out = fig.to_html(
            full_html=False, include_plotlyjs="inline" if first[0] else False, default_height=height
        )
        first[0] = False
        return out

    return figure


def _fmt_ci(block: dict, key: str = "value") -> str:
    return f"{block[key]:.3f} ({block['ci_low']:.3f}-{block['ci_high']:.3f})"


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(
        index=False, border=0, classes="table", na_rep="-", float_format=lambda v: f"{v:.3f}"
    )


def render_report(
    run_dir: Path,
    run_config: dict,
    metrics: dict,
    results: dict,
    predictions: pd.DataFrame,
    baselines: dict,
) -> str:
    """One HTML page with every figure embedded and plotly.js inline (opens offline)."""
    from nsclc_engine import figures

    sections: list[str] = []
    figure = _embedder("420px")

    label = metrics["label"]
    setup = metrics["evaluate_config"]
    sections.append(
        f"<p>Run <b>{html.escape(run_dir.name)}</b>; label <b>{html.escape(str(label))}</b> "
        f"({html.escape(metrics['positive_class'])}); "
        f"preset {html.escape(str(run_config.get('preset')))}"
        f"; {'<b>labels shuffled (negative control)</b>; ' if metrics['shuffled_labels'] else ''}"
        f"threshold rule {html.escape(setup['threshold_rule'])} fitted on validation; "
        f"recalibration {html.escape(setup['recalibration'])} fitted on validation.</p>"
    )
    cohort_dir = run_config.get("resolved", {}).get("cohort_dir")
    if cohort_dir and (Path(cohort_dir) / "cleaning_report.json").exists():
        from nsclc_engine.cohort import load_cleaning_report

        report = load_cleaning_report(cohort_dir)
        summary = {k: v for k, v in report.get("summary", {}).items() if not isinstance(v, dict)}
        sections.append("<h2>Cohort</h2>" + _table(pd.DataFrame([summary])))
        exclusions = pd.DataFrame(report.get("exclusions", []))
        if len(exclusions):
            sections.append("<h3>Excluded patients</h3>" + _table(exclusions))
    sizes = pd.DataFrame(
        [
            {
                "split": part,
                "patients": v["n"],
                "positive": v["n_positive"],
                "positive %": 100 * v["n_positive"] / v["n"],
            }
            for part, v in metrics["splits"].items()
        ]
    )
    sections.append("<h2>Splits</h2>" + _table(sizes))
    history_path = run_dir / "history.jsonl"
    if history_path.exists():
        history = [json.loads(line) for line in history_path.read_text().splitlines() if line]
        if history:
            sections.append("<h2>Training</h2>" + figure(figures.training_curves_figure(history)))
    rows = []
    for part, v in metrics["splits"].items():
        row = {
            "split": part,
            "AUC (95% CI)": _fmt_ci(v["auc"], "auc"),
            "AP (95% CI)": _fmt_ci(v["average_precision"]),
            "Brier (95% CI)": _fmt_ci(v["brier"]),
        }
        for where in ("at_0.5", "at_threshold"):
            for key in ("sensitivity", "specificity", "f1", "accuracy"):
                low, high = v[where]["ci"][key]
                row[f"{key} {where.replace('at_', '@')}"] = (
                    f"{v[where][key]:.3f} ({low:.3f}-{high:.3f})"
                )
        rows.append(row)
    thresholds = ", ".join(f"{t['threshold']:.3f}" for t in metrics["thresholds"])
    sections.append(
        f"<h2>Discrimination and metrics at thresholds</h2><p>@0.5: the conventional cut-off; "
        f"@threshold: the {html.escape(setup['threshold_rule'])} threshold fitted on "
        f"validation ({thresholds}) and applied unchanged. Patient-level bootstrap, "
        f"{setup['bootstrap_resamples']} resamples.</p>" + _table(pd.DataFrame(rows))
    )
    sections.append(
        "<p>Validation rows @threshold are in-sample: the threshold was fitted on them.</p>"
    )
    if metrics.get("augmentation_warning"):
        sections.append(f"<p><b>Warning:</b> {html.escape(metrics['augmentation_warning'])}</p>")
    for warning in metrics.get("warnings", []):
        sections.append(f"<p><b>Warning:</b> {html.escape(warning)}</p>")
    if "best_achievable" in metrics:
        sections.append(_yardstick_section(metrics["best_achievable"], "AUC"))
    if "folds" in metrics:
        summary = metrics["folds"]["summary"]
        sections.append(
            "<h3>Cross-validation folds (test part of each fold)</h3>"
            + _table(pd.DataFrame(metrics["folds"]["per_fold"]))
            + "<p>"
            + ", ".join(f"{k} {v['mean']:.3f} ± {v['sd']:.3f}" for k, v in summary.items())
            + "</p>"
        )
    test = predictions[predictions.split == "test"]
    if len(test) and test.y_true.nunique() == 2:
        calls = results["calls"][test.index]
        sweep = threshold_sweep(test.y_true, test.y_prob)
        fpr, tpr = sweep.roc_curve()
        recall, precision = sweep.pr_curve()
        at_half = metrics["splits"]["test"]["at_0.5"]
        at_t = metrics["splits"]["test"]["at_threshold"]
        points = [
            {
                "name": "test @0.5",
                "fpr": 1 - at_half["specificity"],
                "tpr": at_half["sensitivity"],
                "recall": at_half["sensitivity"],
                "precision": at_half["precision"],
            },
            {
                "name": "test @validation threshold",
                "fpr": 1 - at_t["specificity"],
                "tpr": at_t["sensitivity"],
                "recall": at_t["sensitivity"],
                "precision": at_t["precision"],
            },
        ]
        roc_curves = [{"name": "image model", "fpr": fpr, "tpr": tpr, "auc": sweep.roc_auc()}]
        pr_curves = [
            {
                "name": "image model",
                "recall": recall,
                "precision": precision,
                "ap": sweep.average_precision(),
            }
        ]
        for name, frame in baselines.items():
            rows_b = frame[frame.split == "test"]
            if rows_b.y_true.nunique() == 2:
                b = threshold_sweep(rows_b.y_true, rows_b.y_prob)
                bf, bt = b.roc_curve()
                br, bp = b.pr_curve()
                roc_curves.append(
                    {"name": f"{name} baseline", "fpr": bf, "tpr": bt, "auc": b.roc_auc()}
                )
                pr_curves.append(
                    {
                        "name": f"{name} baseline",
                        "recall": br,
                        "precision": bp,
                        "ap": b.average_precision(),
                    }
                )
        sections.append("<h2>Test set</h2>")
        sections.append(
            figure(figures.confusion_matrix_figure(at_half, title="Test, threshold 0.5"))
        )
        at_t_plot = metrics_at_threshold(test.y_true, calls.astype(float), 0.5)
        sections.append(
            figure(
                figures.confusion_matrix_figure(
                    at_t_plot, title=f"Test, validation-chosen threshold ({thresholds})"
                )
            )
        )
        sections.append(figure(figures.roc_figure(roc_curves, points)))
        sections.append(
            figure(figures.pr_figure(pr_curves, points, prevalence=float(test.y_true.mean())))
        )
        single = metrics["thresholds"][0]["threshold"] if len(metrics["thresholds"]) == 1 else None
        sections.append(
            figure(
                figures.probability_histogram_figure(
                    probability_histograms(test.y_true, test.y_prob), single
                )
            )
        )
        calibration = results["calibration"]["splits"]["test"]
        sections.append("<h2>Calibration (test)</h2>")
        cal_rows = [
            {
                "probabilities": name,
                **{k: calibration[name][k] for k in ("brier", "ece", "intercept", "slope")},
            }
            for name in ("raw", "recalibrated")
        ]
        sections.append(_table(pd.DataFrame(cal_rows)))
        warnings = [
            r.get("warning") for r in results["calibration"]["recalibrators"] if r.get("warning")
        ]
        if warnings:
            sections.append("<p><b>Note:</b> " + html.escape(warnings[0]) + "</p>")
        sections.append(
            figure(
                figures.reliability_figure(
                    {
                        "raw": calibration["raw"]["curve"],
                        f"recalibrated ({setup['recalibration']})": calibration["recalibrated"][
                            "curve"
                        ],
                    }
                )
            )
        )
        curves = {"image model": decision_curve(test.y_true, test.y_prob)}
        for name, frame in baselines.items():
            rows_b = frame[frame.split == "test"]
            curves[f"{name} baseline"] = decision_curve(rows_b.y_true, rows_b.y_prob)
        sections.append(
            "<h2>Clinical utility (test)</h2>" + figure(figures.decision_curve_figure(curves))
        )
    if "baselines" in metrics:
        rows = []
        for name, entry in metrics["baselines"].items():
            row = {"model": f"{name} baseline"}
            for part in ("validation", "test"):
                if part in entry:
                    row[f"{part} AUC (95% CI)"] = _fmt_ci(entry[part]["auc"])
            if "delong_image_vs_baseline" in entry:
                d = entry["delong_image_vs_baseline"]
                row["image - baseline (95% CI), p"] = (
                    f"{d['difference']:+.3f} ({d['ci_low']:+.3f} to {d['ci_high']:+.3f}), "
                    f"p={d['p_value']:.3f}"
                )
            rows.append(row)
        sections.append("<h2>Baselines on the same splits</h2>" + _table(pd.DataFrame(rows)))
    sections.append(
        "<h2>TRIPOD+AI items covered</h2>"
        + _table(pd.DataFrame(TRIPOD_ITEMS, columns=["item", "where in this report"]))
    )
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        ".table{border-collapse:collapse;font-size:0.9em}.table td,.table th{padding:4px 8px;"
        "border-bottom:1px solid #ddd;text-align:left}"
    )
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Evaluation report "
        f"{html.escape(run_dir.name)}</title><style>{style}</style></head><body>"
        f"<h1>Evaluation report: {html.escape(run_dir.name)}</h1>"
        + "\n".join(sections)
        + "</body></html>"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nsclc_engine.evaluate", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("run_id", help="a run in <artifacts>/runs/")
    add_config_arguments(parser, EvaluateConfig)
    parser.add_argument("--threshold-rule", choices=THRESHOLD_RULES)
    parser.add_argument(
        "--threshold-target", type=float, help="for spec_at_sens, sens_at_spec, fixed"
    )
    parser.add_argument("--recalibration", choices=RECALIBRATION_METHODS)
    parser.add_argument(
        "--artifacts", help="artifacts folder (default $NSCLC_ARTIFACTS_DIR or ./artifacts)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    from nsclc_engine.train import runs_dir, validate_run_id

    overrides = list(args.set)
    for key in ("threshold_rule", "threshold_target", "recalibration"):
        if getattr(args, key) is not None:
            overrides.append(f"{key}={getattr(args, key)}")
    try:
        config = load_config(EvaluateConfig, args.config, overrides)
        run_dir = runs_dir(args.artifacts or artifacts_dir()) / validate_run_id(args.run_id)
        if not run_dir.is_dir():
            raise ValueError(f"no run {args.run_id!r} in {run_dir.parent}")
        metrics = evaluate_run(run_dir, config)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print_summary(metrics)
    print(f"report: {run_dir / 'report.html'}")
    return 0


def print_summary(metrics: dict) -> None:
    """Per split the headline metric with its CI and, on the synthetic cohort, the best
    achievable on the same patients; on test the verdict (learns, no leak, share)."""
    from nsclc_engine.yardstick import best_for, judge_run

    survival = metrics.get("task") == "survival"
    name, key = ("C-index", "c_index") if survival else ("AUC", "auc")
    for part, values in metrics["splits"].items():
        block = values[key]
        line = (
            f"{part}: n={values['n']}, {name} {block[key]:.3f} "
            f"(95% CI {block['ci_low']:.3f}-{block['ci_high']:.3f})"
        )
        best, best_image = best_for(metrics, part, "eta"), best_for(metrics, part, "eta_image")
        if best is not None and best_image is not None:
            line += f"; best achievable {best:.3f}, image part {best_image:.3f}"
        print(line)
    verdict = judge_run(metrics)
    if verdict is not None and verdict.best is not None:
        share = "n/a" if verdict.share is None else f"{verdict.share:.0%}"
        print(
            f"test verdict: learns {'yes' if verdict.learns else 'NO'}, no leak "
            f"{'yes' if verdict.no_leak else 'NO'}, share of the image signal recovered {share}"
        )
    if metrics.get("augmentation_warning"):
        print(f"warning: {metrics['augmentation_warning']}")


if __name__ == "__main__":
    sys.exit(main())
