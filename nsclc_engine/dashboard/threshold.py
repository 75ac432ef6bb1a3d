"""The Threshold page: each rule's threshold fitted on validation, the metrics at any
threshold with bootstrap CIs, and saving the operating point. Survival runs: a threshold on
P(death by a horizon), cumulative/dynamic (died by the horizon against alive after it, the
patients censored before it apart), with IPCW sensitivity and specificity
(:func:`survival_threshold_state`, :func:`save_survival_threshold`)."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from nsclc_engine.dashboard.run_view import RunView, curves, part_predictions
from nsclc_engine.dashboard.survival_probabilities import (
    death_probability,
    fold_baselines,
    follow_up_days,
    no_probability_note,
)
from nsclc_engine.evaluate.run import write_threshold_file
from nsclc_engine.evaluate.survival import BASELINE_KINDS, fit_horizon_threshold, outcome_of
from nsclc_engine.runs import now
from nsclc_engine.stats.calibration import probability_histograms
from nsclc_engine.stats.metrics import bootstrap_sweep, choose_threshold
from nsclc_engine.stats.survival_probability import (
    horizon_counts,
    td_roc,
    td_sensitivity_specificity,
)

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


EXPLORER_METRICS = (
    ("sensitivity", "Sensitivity"),
    ("specificity", "Specificity"),
    ("f1", "F1"),
    ("accuracy", "Accuracy"),
    ("precision", "PPV"),
    ("npv", "NPV"),
)


def explorer_table(frame: pd.DataFrame, n_resamples: int = 1000) -> dict:
    """Everything the threshold explorer draws in the browser, computed once per run, split
    and scale: the counts, the rates of :data:`EXPLORER_METRICS` and their bootstrap 95 % CIs
    at every distinct threshold (row ``k`` calls positive the ``k`` highest distinct scores:
    a threshold ``t`` selects the row counting the scores ``>= t``), the ROC and
    precision-recall curves and the probability histograms. Each row equals
    :func:`~nsclc_engine.stats.metrics.metrics_at_threshold` and
    :func:`~nsclc_engine.stats.metrics.bootstrap_metrics` at that row's thresholds (the same
    patient-level resamples).
    JSON-ready: an undefined rate is ``None``."""
    result = curves(frame)
    sweep = result.pop("sweep")
    intervals = bootstrap_sweep(
        frame.y_true, frame.y_prob, n_resamples, seed=0, groups=frame.patient_id
    )
    histograms = probability_histograms(frame.y_true, frame.y_prob)
    return {
        "scores": _listed(sweep.thresholds[1:]),  # highest first
        "counts": {
            "tp": sweep.tp.tolist(),
            "fp": sweep.fp.tolist(),
            "fn": sweep.fn.tolist(),
            "tn": sweep.tn.tolist(),
        },
        "metrics": {
            key: {"label": label, "value": _listed(sweep.rates[key]), "ci": _listed(intervals[key])}
            for key, label in EXPLORER_METRICS
        },
        "roc": {name: _listed(values) for name, values in result["roc"].items()},
        "pr": {name: _listed(values) for name, values in result["pr"].items()},
        "auc": _listed(result["auc"]),
        "average_precision": _listed(result["average_precision"]),
        "prevalence": float(np.mean(frame.y_true)),
        "histogram": {name: _listed(values) for name, values in histograms.items()},
        "n": len(frame),
    }


def _listed(values):
    """Numbers for JSON: arrays as (nested) lists, NaN and infinities as ``None``."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 0:
        return float(array) if np.isfinite(array) else None
    return [_listed(value) for value in array]


def parse_threshold(text: str) -> float:
    """A threshold from a link: a number in [0, 1], rounded as the page rounds it."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"threshold {text}: not in [0, 1]")
    return round(value, 3)


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


# --- survival runs: a threshold on P(death by a horizon) -----------------------------------

SURVIVAL_CALLS = ("predicted death", "predicted survival")
HISTOGRAM_BINS = 20


def outcome_names(horizon: float) -> tuple[str, str, str]:
    """The confusion matrix's rows at ``horizon``: died by it, alive after it, censored
    before it (neither a positive nor a negative)."""
    return (
        f"died by day {horizon:g}",
        f"alive after day {horizon:g}",
        f"censored before day {horizon:g}",
    )


def why_no_threshold(view: RunView) -> str:
    """Why the Threshold page cannot put a threshold on ``view``'s predictions (``""``: it
    can): a classification run always can; a survival run needs probabilities of death
    (:func:`~nsclc_engine.dashboard.survival_probabilities.no_probability_note`)."""
    if view.predictions is None:
        return f"Run `{view.run_id}` has no predictions yet."
    if view.config.get("task") != "survival":
        return ""
    return no_probability_note(view, "to put a threshold on")


def _death_probability(
    view: RunView, rows: pd.DataFrame, horizon: float, kind: str
) -> tuple[np.ndarray, str]:
    """:func:`~nsclc_engine.dashboard.survival_probabilities.death_probability`, raising
    ``ValueError`` with its reason where there is none."""
    p, source = death_probability(view, rows, horizon, kind)
    if p is None:
        raise ValueError(source)
    return p, source


def fitted_survival_thresholds(view: RunView, horizon: float, kind: str = "raw") -> dict:
    """The threshold fitted for ``horizon`` and ``kind``: ``thresholds`` (fold -> value),
    ``text`` (where it came from), ``rule`` and ``threshold`` (the first fold's, the one the
    page's button sets). Evaluation's (``threshold.json``'s fitted part) where its horizon
    matches and ``kind`` is raw (it fitted on raw probabilities); otherwise Youden's J fitted
    here on each fold's validation rows (:func:`fit_horizon_threshold`), censoring weights
    from the fold's training rows. ``thresholds`` is empty, and ``text`` says why, where none
    can be fitted."""
    fitted = view.threshold.fitted
    entries = view.threshold.fitted_thresholds
    by_fold = {int(e.get("fold", 0)): float(e["threshold"]) for e in entries}
    if by_fold and fitted.get("horizon_days") == horizon and kind == "raw":
        rule, source = fitted.get("rule", "rule"), fitted.get("fitted_on", "validation")
        text = f"{rule} threshold fitted on {source} by evaluation (threshold.json)"
        if source != "validation":
            text = f"{rule} threshold: {source}"
        first = by_fold[min(by_fold)]
        return {"thresholds": by_fold, "threshold": first, "rule": rule, "text": text}
    result: dict = {"thresholds": {}, "threshold": None, "rule": "youden"}
    notes = []
    predictions = view.predictions
    validation = predictions[predictions.split == "validation"]
    for fold, rows in validation.groupby("fold"):
        try:
            p, _ = _death_probability(view, rows, horizon, kind)
            outcome = outcome_of(predictions, rows, horizon)
            result["thresholds"][int(fold)] = fit_horizon_threshold(outcome, p)
        except ValueError as error:
            notes.append(f"fold {fold}: {error}")
    if result["thresholds"]:
        result["threshold"] = result["thresholds"][min(result["thresholds"])]
        result["text"] = "Youden threshold fitted here on validation rows"
    else:
        result["text"] = "; ".join(notes) or "no validation rows to fit a threshold on"
    return result


def survival_threshold_state(
    view: RunView,
    split: str,
    horizon: float,
    threshold: float,
    kind: str = "raw",
    n_resamples: int = 1000,
) -> dict:
    """A threshold on P(death by ``horizon``) applied to the rows of ``split``, as the page
    shows it: ``patients`` (patient_id, fold, time_days, event, ``p``, ``outcome``,
    ``call``), ``p_source``, ``counts`` (:func:`horizon_counts`), ``confusion`` (rows
    :func:`outcome_names`, columns :data:`SURVIVAL_CALLS`), ``metrics`` (cumulative/dynamic
    IPCW sensitivity and specificity with patient-bootstrap CIs,
    :func:`td_sensitivity_specificity`), ``roc`` (``fpr``, ``tpr``, ``threshold``) with
    ``auc`` and ``point`` (or ``roc_note``), ``histogram`` (``edges`` and counts per
    outcome), ``fitted`` (:func:`fitted_survival_thresholds`), ``censoring_from`` and
    ``follow_up_days``. P(death) is the one every survival page shows
    (:func:`~nsclc_engine.dashboard.survival_probabilities.death_probability`); where the
    run has none at ``horizon`` under ``kind``, ``ValueError`` says why."""
    predictions = view.predictions
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold {threshold} must lie in [0, 1] (a probability of death)")
    rows = predictions[predictions.split == split]
    if rows.empty:
        present = sorted(set(predictions.split))
        raise ValueError(f"no {split!r} rows in the predictions; parts present: {present}")
    horizon = float(horizon)
    p, p_source = _death_probability(view, rows, horizon, kind)
    outcome = outcome_of(predictions, rows, horizon)
    counts = horizon_counts(outcome, p, threshold)
    died, alive, censored = outcome_names(horizon)
    confusion = pd.DataFrame(
        {
            SURVIVAL_CALLS[0]: [counts["tp"], counts["fp"], counts["censored_pos"]],
            SURVIVAL_CALLS[1]: [counts["fn"], counts["tn"], counts["censored_neg"]],
        },
        index=[died, alive, censored],
    )
    labels = np.where(outcome.case, died, np.where(outcome.control, alive, censored))
    columns = [c for c in ("patient_id", "fold", "time_days", "event") if c in rows.columns]
    patients = rows[columns].assign(
        p=p, outcome=labels, call=np.where(p >= threshold, *SURVIVAL_CALLS)
    )
    edges = np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)
    state: dict = {
        "split": split,
        "horizon_days": horizon,
        "kind": kind,
        "threshold": float(threshold),
        "scale": f"probability of death by day {horizon:g}",
        "patients": patients.reset_index(drop=True),
        "p_source": p_source,
        "counts": counts,
        "confusion": confusion,
        "metrics": td_sensitivity_specificity(outcome, p, threshold, n_resamples),
        "histogram": {
            "edges": edges,
            "counts": {
                name: np.histogram(p[labels == name], bins=edges)[0]
                for name in (died, alive, censored)
            },
        },
        "fitted": fitted_survival_thresholds(view, horizon, kind),
        "censoring_from": outcome.censoring_from,
        "follow_up_days": follow_up_days(fold_baselines(view, kind), rows),
    }
    try:
        roc = td_roc(outcome, p)
    except ValueError as error:
        state["roc_note"] = str(error)
        return state
    metrics = state["metrics"]
    state["roc"] = {
        "fpr": roc["false_positive_rate"],
        "tpr": roc["sensitivity"],
        "threshold": roc["threshold"],
    }
    state["auc"] = roc["auc"]
    state["point"] = {
        "name": f"threshold {threshold:.3f}",
        "fpr": 1 - metrics["specificity"],
        "tpr": metrics["sensitivity"],
    }
    return state


def survival_operating_point(
    threshold: float,
    horizon: float,
    kind: str,
    split: str,
    rule: str = "manual",
    saved_by: str = "",
) -> dict:
    """The operating point of a survival run as ``threshold.json`` keeps it: a threshold on
    P(death by ``horizon``) under the ``kind`` baseline, the rule that set it, the split it
    was chosen on (validation only, as for classification runs), who saved it and when."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold {threshold} must lie in [0, 1] (a probability of death)")
    if not horizon > 0:
        raise ValueError(f"horizon {horizon} days: give a positive number of days")
    if kind not in BASELINE_KINDS:
        raise ValueError(f"baseline kind {kind!r}: choose one of {list(BASELINE_KINDS)}")
    if split != "validation":
        raise ValueError(
            "choose the threshold on validation predictions; held-out predictions only show "
            "what a threshold already chosen does"
        )
    return {
        "threshold": float(threshold),
        "horizon_days": float(horizon),
        "scale": f"probability of death by day {horizon:g}",
        "baseline": kind,
        "rule": rule,
        "split_used": split,
        "written": now(),
        "source": "dashboard",
        "saved_by": saved_by,
    }


def save_survival_threshold(
    run_dir: str | os.PathLike,
    threshold: float,
    horizon: float,
    kind: str,
    split: str,
    rule: str = "manual",
    saved_by: str = "",
) -> dict:
    """Save :func:`survival_operating_point` into the run's ``threshold.json`` (beside the
    threshold evaluation fitted); returns the saved point."""
    point = survival_operating_point(threshold, horizon, kind, split, rule, saved_by)
    return write_threshold_file(run_dir, operating_point=point)["operating_point"]
