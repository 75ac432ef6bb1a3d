"""The Calibration page: the recalibration method compared on validation predictions
(cross-validated within validation, so each method is scored on rows it was not fitted on),
and test predictions shown only for the method in force, raw and recalibrated. Survival runs:
the predicted probability of death by a horizon against what happened
(:func:`survival_calibration_state`), as the run's evaluation computes it."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from nsclc_engine.dashboard.run_view import RunView
from nsclc_engine.dashboard.survival_probabilities import (
    death_probability,
    fold_baselines,
    follow_up_days,
    horizon_label,
    no_probability_note,
)
from nsclc_engine.evaluate.config import EvaluateConfig
from nsclc_engine.evaluate.survival import BASELINE_KINDS, horizon_calibration, survival_at
from nsclc_engine.stats.calibration import (
    RECALIBRATION_METHODS,
    calibration_summary,
    decision_curve,
    fit_recalibrator,
    reliability_curve,
)
from nsclc_engine.stats.survival_calibration import d_calibration

BIN_STRATEGIES = ("uniform", "quantile")
SUMMARY_KEYS = ("brier", "ece", "intercept", "slope")


def method_in_force(view: RunView) -> str:
    """The recalibration the run's evaluation applied (``evaluate_config.recalibration``):
    the one method whose held-out figures the page shows. ``none`` for a run without
    validation predictions (imported, external): its probabilities are shown as they came."""
    if not (view.predictions.split == "validation").any():
        return "none"
    return view.metrics.recalibration


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


def external_calibration(view: RunView) -> pd.DataFrame:
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
            for key, block in view.metrics.calibration_external.items()
        ],
        columns=["probabilities", "calibration-in-the-large", "slope", "intercept shift"],
    )


# --- survival runs: P(death by a horizon) against what happened ----------------------------


def why_no_calibration(view: RunView) -> str:
    """Why ``view`` cannot show calibration (``""``: it can): a survival run needs survival
    probabilities, from saved baselines or from ``survival_{h}d`` columns
    (:func:`~nsclc_engine.dashboard.survival_probabilities.no_probability_note`)."""
    if view.predictions is None:
        return f"run {view.run_id} has no predictions yet"
    if view.config.get("task") != "survival":
        return ""
    return no_probability_note(view, "to check against what happened")


def run_evaluate_config(view: RunView, n_resamples: int | None = None) -> EvaluateConfig:
    """The bootstrap settings the run's evaluation used (``metrics.json["evaluate_config"]``),
    with ``n_resamples`` in place of its resamples where given."""
    saved = view.metrics.evaluate_config
    defaults = EvaluateConfig()
    return EvaluateConfig(
        bootstrap_resamples=int(
            n_resamples or saved.get("bootstrap_resamples") or defaults.bootstrap_resamples
        ),
        seed=int(saved.get("seed", defaults.seed)),
    )


CALIBRATION_KEYS = ("n", "n_deaths_by_horizon", "n_censored_before_horizon", "mean_predicted")
CALIBRATION_BLOCKS = ("smoothed", "groups", "in_the_large")


def saved_horizon_block(view: RunView, split: str, horizon: float, kind: str) -> dict:
    """The calibration the run's evaluation saved for ``split`` at ``horizon`` under ``kind``
    (``metrics.json["horizons"][kind]["730d"]``, held-out part only), reduced to what
    :func:`~nsclc_engine.evaluate.survival.horizon_calibration` returns; empty where it
    saved none."""
    if split != view.metrics.horizons.get("held_out"):
        return {}
    block = view.metrics.horizon_block(kind, horizon)
    if "mean_predicted" not in block:
        return {}
    names = [*CALIBRATION_KEYS, *CALIBRATION_BLOCKS, *(f"{b}_note" for b in CALIBRATION_BLOCKS)]
    return {name: block[name] for name in names if name in block}


def survival_calibration_state(
    view: RunView,
    split: str,
    horizon: float,
    kind: str = "raw",
    n_resamples: int | None = None,
) -> dict:
    """What the survival Calibration page shows for one part, horizon and baseline kind.

    P(death by ``horizon``) per patient (:func:`~nsclc_engine.dashboard.
    survival_probabilities.death_probability`), then what the run's evaluation computes,
    with the same functions and seed
    (:func:`~nsclc_engine.evaluate.survival.horizon_calibration`): ``n``,
    ``n_deaths_by_horizon``, ``n_censored_before_horizon``, ``mean_predicted``, ``groups``
    (Kaplan-Meier observed against mean predicted per fifth of predicted risk), ``smoothed``
    (the smoothed curve, ICI, E50, E90 with bootstrap CIs) and ``in_the_large``; and
    ``d_calibration`` of ``S_i(t_i)`` (saved baselines; else the run's own held-out figure).
    A block that is undefined on these patients gives ``{block}_note`` instead; with no
    probability at all, ``note``.

    ``n_resamples`` ``None``: the evaluation's resamples and seed, and where the evaluation
    saved this very block (the held-out part at one of its horizons) that block itself
    (``from_metrics``), which a recomputation reproduces number for number; the smoother's
    bootstrap takes seconds. Otherwise everything is computed with ``n_resamples``."""
    if kind not in BASELINE_KINDS:
        raise ValueError(f"baseline {kind!r}: choose from {tuple(BASELINE_KINDS)}")
    rows = view.predictions[view.predictions.split == split]
    if rows.empty:
        raise ValueError(
            f"run {view.run_id} has no {split} predictions; parts: "
            f"{sorted(set(view.predictions.split))}"
        )
    state: dict = {"split": split, "horizon_days": float(horizon), "kind": kind, "notes": []}
    p, source = death_probability(view, rows, horizon, kind)
    if p is None:
        return state | {"note": source}
    state["source"] = source
    saved = saved_horizon_block(view, split, horizon, kind) if n_resamples is None else {}
    if saved:
        state |= saved | {"from_metrics": True}
    else:
        state |= horizon_calibration(p, rows, horizon, run_evaluate_config(view, n_resamples))
    baselines = fold_baselines(view, kind)
    held_out = view.metrics.horizon_kind(kind).get("d_calibration")
    if baselines and set(rows.fold) <= set(baselines):
        own = survival_at(rows, baselines, rows.time_days.to_numpy(dtype=float))
        state["d_calibration"] = d_calibration(own, rows.event.to_numpy())
    elif held_out and split == view.held_out:
        state["d_calibration"] = held_out
    else:
        state["d_calibration_note"] = (
            "D-calibration needs each patient's whole predicted survival curve; this run "
            "holds survival at fixed horizons only"
        )
    follow_up = follow_up_days(baselines, rows)
    if follow_up is not None and horizon > follow_up:
        state["notes"].append(
            f"Day {horizon:g} is beyond the last death the baseline knows (day "
            f"{follow_up:g}): the predicted survival is carried flat from there."
        )
    if split == "validation" and baselines:
        state["notes"].append(
            "The baselines were fitted on these validation patients: their calibration here is "
            "in-sample and flatters the model; the held-out part is the honest check."
        )
    return state


def _points(low: float, high: float) -> str:
    return f"{100 * low:+.0f} to {100 * high:+.0f} points"


def in_the_large_text(block: dict) -> str:
    """Calibration-in-the-large in one sentence: observed (Kaplan-Meier) against mean
    predicted probability of death, which way the model errs where the CI says so, the
    difference (percentage points) and the ratio with their 95 % CIs."""
    label = horizon_label(block["horizon_days"])
    low, high = block["difference_ci"]
    if low > 0:
        verdict = "the model underestimates deaths"
    elif high < 0:
        verdict = "the model overestimates deaths"
    else:
        verdict = "no clear over- or underestimate"
    ratio_low, ratio_high = block["ratio_ci"]
    return (
        f"By {label}, {100 * block['observed']:.0f} % died (Kaplan-Meier) against "
        f"{100 * block['predicted']:.0f} % "
        f"predicted on average: {verdict} (observed minus predicted "
        f"{100 * block['difference']:+.0f} points, 95 % CI {_points(low, high)}; ratio "
        f"{block['ratio']:.2f}, {ratio_low:.2f} to {ratio_high:.2f})."
    )


def d_calibration_text(block: dict) -> str:
    """D-calibration in one sentence: what a flat histogram means and the chi-square p."""
    verdict = (
        "the bars differ from flat beyond chance: the predicted curves are off"
        if block["p_value"] < 0.05
        else "no departure from flat beyond chance"
    )
    return (
        "If each patient's predicted survival curve is right, the predicted survival at the "
        "time each patient died (or was last seen) is spread evenly: every tenth holds a tenth "
        f"of the {block['n']} patients, a flat line. Chi-square p = {block['p_value']:.3f}: "
        f"{verdict}."
    )
