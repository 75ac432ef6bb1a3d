"""Evaluate a survival model's risks, and the image / clinical / volume / fusion models beside
it: pure functions of prediction tables (Harrell's and Uno's C, time-dependent AUC,
integrated Brier score, risk groups; every C-index with a patient-level bootstrap CI)."""

from __future__ import annotations

import re
from dataclasses import asdict

import numpy as np
import pandas as pd

from nsclc_engine.evaluate.baselines import SURVIVAL_MODELS
from nsclc_engine.evaluate.config import EvaluateConfig
from nsclc_engine.stats.survival import (
    bootstrap_c_index,
    harrell_c_index,
    paired_c_index_difference,
    risk_groups,
)
from nsclc_engine.stats.survival_calibration import (
    calibration_in_the_large,
    d_calibration,
    observed_by_group,
    smoothed_calibration,
)
from nsclc_engine.stats.survival_probability import (
    Baseline,
    HorizonOutcome,
    evaluate_risks,
    fit_baseline,
    horizon_counts,
    horizon_outcome,
    td_roc,
    td_sensitivity_specificity,
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
    splits = split_c_indices(parts, config, stratified=k_fold)
    for block in splits.values() if k_fold else ():
        block["pooling"] = {"c_index": "fold-stratified: pairs within a fold only"}
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


def split_c_indices(
    predictions: pd.DataFrame, config: EvaluateConfig, stratified: bool = False
) -> dict:
    """Per part: ``n``, ``n_events`` and Harrell's C with its patient-level bootstrap CI
    (``stratified``: pairs within a fold only, for pooled k-fold rows)."""
    return {
        part: {
            "n": len(frame),
            "n_events": int(frame.event.sum()),
            "c_index": bootstrap_c_index(
                frame.time_days,
                frame.event,
                frame.risk,
                config.bootstrap_resamples,
                config.seed,
                strata=frame.fold if stratified else None,
            ),
        }
        for part, frame in predictions.groupby("split")
    }


def outcome_counts(rows: pd.DataFrame, horizon: float) -> dict:
    """``n``, deaths by ``horizon`` and patients censored before it, of ``rows``."""
    by_then = rows.time_days.to_numpy() <= horizon
    event = rows.event.to_numpy() == 1
    return {
        "n": len(rows),
        "n_deaths_by_horizon": int((by_then & event).sum()),
        "n_censored_before_horizon": int((by_then & ~event).sum()),
    }


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


# --- survival probabilities at the horizons ----------------------------------------------

BASELINE_KINDS = {
    "raw": "Breslow baseline on validation, the model's risk as it is",
    "recalibrated": "Breslow baseline on validation after refitting the risk's slope there",
}


def survival_column(horizon: float) -> str:
    """The ``predictions.csv`` column of S(horizon): ``survival_730d``."""
    return f"survival_{horizon:g}d"


def horizon_columns(predictions: pd.DataFrame) -> dict[float, str]:
    """Horizon (days) -> its column, for the survival-probability columns a table holds."""
    found = {}
    for column in predictions.columns:
        match = re.fullmatch(r"survival_(\d+(?:\.\d+)?)d", column)
        if match:
            found[float(match.group(1))] = column
    return dict(sorted(found.items()))


def fit_fold_baselines(predictions: pd.DataFrame) -> list[dict]:
    """Per fold, the baselines of :data:`BASELINE_KINDS` fitted on that fold's validation rows
    (never test, never the patients the model learned from), as ``Baseline.to_dict``; a kind
    that cannot be fitted gives ``{kind}_note`` instead."""
    result = []
    for fold, frame in predictions.groupby("fold"):
        validation = frame[frame.split == "validation"]
        entry: dict = {"fold": int(fold)}
        for kind in BASELINE_KINDS:
            try:
                entry[kind] = fit_baseline(
                    validation.time_days,
                    validation.event,
                    validation.risk,
                    recalibrate=kind == "recalibrated",
                ).to_dict()
            except ValueError as error:
                entry[f"{kind}_note"] = f"fold {fold}: {error}"
        result.append(entry)
    return result


def baselines_of(saved: list[dict], kind: str = "raw") -> dict[int, Baseline]:
    """Fold -> :class:`Baseline` of ``kind`` from :func:`fit_fold_baselines`' payload."""
    return {int(e["fold"]): Baseline.from_dict(e[kind]) for e in saved if kind in e}


def survival_at(
    rows: pd.DataFrame, baselines: dict[int, Baseline], times: float | np.ndarray
) -> np.ndarray:
    """S(t | risk) of each row under its own fold's baseline: ``times`` one horizon, or one
    time per row (each patient's own time, for D-calibration)."""
    result = np.full(len(rows), np.nan)
    per_row = np.ndim(times) > 0
    for fold in rows.fold.unique():
        mask = (rows.fold == fold).to_numpy()
        if int(fold) not in baselines:
            continue
        baseline = baselines[int(fold)]
        if per_row:
            risk, own = rows.risk.to_numpy()[mask], np.asarray(times)[mask]
            result[mask] = baseline.survival_at_own_times(risk, own)
        else:
            result[mask] = baseline.survival(rows.risk.to_numpy()[mask], [times])[:, 0]
    return result


def with_survival_columns(
    predictions: pd.DataFrame, baselines: dict[int, Baseline], horizons: tuple[float, ...]
) -> pd.DataFrame:
    """``predictions`` with one ``survival_{h}d`` column per horizon (earlier ones replaced)."""
    frame = predictions.drop(columns=list(horizon_columns(predictions).values()))
    for horizon in horizons:
        frame[survival_column(horizon)] = survival_at(frame, baselines, horizon)
    return frame


def outcome_of(predictions: pd.DataFrame, rows: pd.DataFrame, horizon: float) -> HorizonOutcome:
    """The cumulative/dynamic outcome of ``rows`` at ``horizon``, with IPCW weights from the
    censoring of each fold's training rows (rows of runs without a training split, imported
    or external: the censoring of the rows themselves)."""
    train = predictions[predictions.split == "train"]
    if train.empty:
        return horizon_outcome(rows.time_days, rows.event, horizon)
    parts = {}
    for fold in rows.fold.unique():
        mask = (rows.fold == fold).to_numpy()
        censoring = train[train.fold == fold]
        parts[fold] = (
            mask,
            horizon_outcome(
                rows.time_days[mask],
                rows.event[mask],
                horizon,
                censoring.time_days,
                censoring.event,
                censoring_from="the training split",
            ),
        )
    fields = {}
    for name in ("case", "control", "censored", "weight"):
        values = np.zeros(len(rows), dtype=float if name == "weight" else bool)
        for mask, outcome in parts.values():
            values[mask] = getattr(outcome, name)
        fields[name] = values
    return HorizonOutcome(float(horizon), **fields, censoring_from="the training split")


def fit_horizon_threshold(outcome: HorizonOutcome, p: np.ndarray) -> float:
    """The threshold on P(death by the horizon) maximising Youden's J of the
    cumulative/dynamic sensitivity and specificity: one of the predicted values (the highest
    of equal J), so ``p >= threshold`` makes the calls that reached it."""
    roc = td_roc(outcome, p)
    youden = roc["sensitivity"] - roc["false_positive_rate"]
    best = int(np.argmax(youden))
    return float(roc["threshold"][best]) if np.isfinite(roc["threshold"][best]) else 1.0


def horizon_calibration(
    p: np.ndarray, rows: pd.DataFrame, horizon: float, config: EvaluateConfig
) -> dict:
    """Calibration of P(death by ``horizon``) on ``rows``: smoothed curve with ICI/E50/E90
    (bootstrap CI over at most 200 resamples: each refits the smoother), observed against
    predicted by quintile, calibration-in-the-large; each block says why where it is
    undefined."""
    time, event = rows.time_days.to_numpy(), rows.event.to_numpy()
    result: dict = outcome_counts(rows, horizon) | {"mean_predicted": float(np.mean(p))}
    blocks = {
        "smoothed": lambda: smoothed_calibration(
            p, time, event, horizon, min(config.bootstrap_resamples, 200), config.seed
        ),
        "groups": lambda: observed_by_group(p, time, event, horizon),
        "in_the_large": lambda: calibration_in_the_large(
            p, time, event, horizon, config.bootstrap_resamples, config.seed
        ),
    }
    for name, compute in blocks.items():
        try:
            result[name] = compute()
        except ValueError as error:
            result[f"{name}_note"] = str(error)
    if "smoothed" in result:
        result["smoothed"].pop("observed")
    return result


def evaluate_survival_probabilities(
    predictions: pd.DataFrame, config: EvaluateConfig, saved: list[dict] | None = None
) -> tuple[dict, list[dict], pd.DataFrame]:
    """Survival probabilities at ``config.horizons_days`` for every scored patient, and what
    they are worth on the held-out part: ``(metrics block, baselines, predictions with the
    survival columns)``.

    The baselines are fitted on each fold's validation rows (``saved``: frozen ones, carried
    from another run, as external validation applies them). On the held-out part, per
    baseline kind and horizon: time-dependent AUC, calibration (:func:`horizon_calibration`)
    and D-calibration; at the last horizon, the threshold on P(death) fitted on each fold's
    validation rows (Youden's J of cumulative/dynamic sensitivity and specificity) and the
    held-out calls at it with bootstrap CIs."""
    from nsclc_engine.evaluate.classification import held_out_part

    saved = fit_fold_baselines(predictions) if saved is None else saved
    horizons = config.horizons_days
    raw = baselines_of(saved, "raw")
    if not raw:
        notes = "; ".join(v for e in saved for k, v in e.items() if k.endswith("_note"))
        return {"horizons_days": list(horizons), "note": notes or "no baseline"}, saved, predictions
    table = with_survival_columns(predictions, raw, horizons)
    part = held_out_part(predictions)
    rows = table[table.split == part]
    missing = sorted(set(rows.fold) - set(raw))
    if missing:
        notes = "; ".join(v for e in saved for k, v in e.items() if k == "raw_note")
        return {"horizons_days": list(horizons), "note": notes}, saved, table
    block: dict = {
        "horizons_days": list(horizons),
        "held_out": part,
        "baselines": dict(BASELINE_KINDS),
        "follow_up_days": {str(f): b.follow_up for f, b in raw.items()},
    }
    # each patient's outcome at a horizon, and its censoring weights, whatever the baseline
    outcomes = {horizon: outcome_of(table, rows, horizon) for horizon in horizons}
    for kind in BASELINE_KINDS:
        baselines = baselines_of(saved, kind)
        if set(baselines) != set(raw):
            continue
        entry: dict = {}
        own = survival_at(rows, baselines, rows.time_days.to_numpy())
        entry["d_calibration"] = d_calibration(own, rows.event.to_numpy())
        for horizon in horizons:
            p = 1 - survival_at(rows, baselines, horizon)
            at = horizon_calibration(p, rows, horizon, config)
            try:
                at["td_auc"] = td_roc(outcomes[horizon], p)["auc"]
            except ValueError as error:
                at["td_auc_note"] = str(error)
            entry[f"{horizon:g}d"] = at
        block[kind] = entry
    last = max(horizons)
    block["threshold"] = horizon_threshold(table, rows, raw, last, outcomes[last], config)
    return block, saved, table


def horizon_threshold(
    table: pd.DataFrame,
    rows: pd.DataFrame,
    baselines: dict[int, Baseline],
    horizon: float,
    outcome: HorizonOutcome,
    config: EvaluateConfig,
) -> dict:
    """Per fold, the Youden threshold on P(death by ``horizon``) fitted on validation; the
    held-out ``rows`` (``outcome``: theirs at ``horizon``) called at their fold's threshold:
    counts (the censored-before-horizon patients apart) and cumulative/dynamic sensitivity
    and specificity with CIs."""
    thresholds = []
    for fold, frame in table[table.split == "validation"].groupby("fold"):
        try:
            p = 1 - survival_at(frame, baselines, horizon)
            value = fit_horizon_threshold(outcome_of(table, frame, horizon), p)
        except ValueError:
            continue
        thresholds.append({"fold": int(fold), "threshold": value})
    result: dict = {
        "rule": "youden",
        "horizon_days": float(horizon),
        "scale": f"probability of death by day {horizon:g}",
        "fitted_on": "validation",
        "thresholds": thresholds,
    }
    by_fold = {entry["fold"]: entry["threshold"] for entry in thresholds}
    if not by_fold or not set(rows.fold) <= set(by_fold):
        result["note"] = "no threshold fitted on validation for every fold"
        return result
    p = 1 - survival_at(rows, baselines, horizon)
    cut = rows.fold.map(by_fold).to_numpy()
    result["held_out"] = {
        "counts": horizon_counts(outcome, p, cut),
        **td_sensitivity_specificity(outcome, p, cut, config.bootstrap_resamples, config.seed),
    }
    result["held_out"]["threshold"] = thresholds[0]["threshold"] if len(by_fold) == 1 else None
    return result
