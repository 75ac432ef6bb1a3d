"""A survival run's probabilities of death as every page shows them: P(death by a horizon)
of its rows (:func:`death_probability`), what a page can offer (:func:`survival_options`)
and why a run has nothing to show (:func:`no_probability_note`). The Threshold, Calibration
and Patient pages all read them from here, so they agree on every run.

Which baselines apply (:func:`fold_baselines`): a trained run's own, fitted on each fold's
validation rows; an external run of a one-split source, the source's, frozen (its exact
curve: the external risk is that one model's risk); an external run of a k-fold source none
(its S(t) is the mean over the fold models of each one's curve, held only in its
``survival_{h}d`` columns); an imported run none (its columns, if the file gave any).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from nsclc_engine.dashboard.run_view import RunView
from nsclc_engine.evaluate.config import EvaluateConfig
from nsclc_engine.evaluate.survival import (
    BASELINE_KINDS,
    baselines_of,
    horizon_columns,
    survival_at,
    survival_column,
)
from nsclc_engine.runs import read_survival_baselines
from nsclc_engine.stats.survival_probability import Baseline


def horizon_label(days: float) -> str:
    """A horizon as a clinician says it: ``2 years`` for 730 days, ``1 year`` for 365, else
    ``400 days``."""
    years = days / 365.0
    if years >= 1 and years == int(years):
        return f"{int(years)} year{'s' if years > 1 else ''}"
    return f"{days:g} days"


def fold_baselines(view: RunView, kind: str = "raw") -> dict[int, Baseline]:
    """Fold -> the run's saved baseline of ``kind`` (:func:`~nsclc_engine.runs.
    read_survival_baselines`) that applies to its predictions' risks; empty where none does
    (see the module docstring: an external run of a k-fold source holds the models' mean risk
    only, to which no single fold's baseline applies)."""
    if view.run_dir is None:
        return {}
    baselines = baselines_of(read_survival_baselines(view.run_dir), kind)
    if view.kind == "external validation" and len(baselines) > 1:
        return {}
    return baselines


def _covers(baselines: dict[int, Baseline], rows: pd.DataFrame) -> bool:
    """Whether ``baselines`` hold one for the fold of every row."""
    return bool(baselines) and set(rows.fold.astype(int)) <= set(baselines)


def follow_up_days(baselines: dict[int, Baseline], rows: pd.DataFrame) -> float | None:
    """The last death time every baseline of ``rows``' folds knows (S(t) is carried flat
    beyond it), or ``None`` where none of them has a baseline."""
    known = [baselines[f].follow_up for f in set(rows.fold.astype(int)) if f in baselines]
    return min(known) if known else None


def survival_options(view: RunView) -> dict:
    """What a survival page offers for ``view``: ``horizons`` (days: those its predictions
    hold a ``survival_{h}d`` column for; without columns, where its raw baselines cover every
    fold, those its evaluation used), ``default`` (the last, or ``None``), ``any_horizon``
    (its raw baselines cover every fold, so any other horizon can be computed),
    ``follow_up_days`` (the shortest raw baseline follow-up, or ``None``), ``kinds`` (the
    baseline kinds to choose from: ``raw``, the probabilities as evaluated, always first;
    ``recalibrated`` where that baseline covers every fold) and ``parts`` (validation where
    present, then the held-out part)."""
    predictions = view.predictions
    raw = fold_baselines(view, "raw")
    any_horizon = _covers(raw, predictions)
    horizons = list(horizon_columns(predictions))
    if not horizons and any_horizon:
        evaluated = view.metrics.horizons_days or EvaluateConfig().horizons_days
        horizons = [float(h) for h in evaluated]
    kinds = [
        kind
        for kind in BASELINE_KINDS
        if kind == "raw" or _covers(fold_baselines(view, kind), predictions)
    ]
    return {
        "horizons": horizons,
        "default": horizons[-1] if horizons else None,
        "any_horizon": any_horizon,
        "follow_up_days": follow_up_days(raw, predictions),
        "kinds": kinds,
        "parts": view.parts,
    }


def no_probability_note(view: RunView, purpose: str) -> str:
    """Why survival run ``view`` has no probability of death at all, ending "so there is no
    probability of death ``purpose``" (``""``: it has one, from raw baselines covering every
    fold or from a ``survival_{h}d`` column)."""
    if view.predictions is None:
        return f"Run `{view.run_id}` has no predictions yet."
    if horizon_columns(view.predictions) or _covers(fold_baselines(view), view.predictions):
        return ""
    again = (
        f" Re-evaluating it (python -m nsclc_engine.evaluate {view.run_id}) adds them."
        if view.kind == "trained"
        else ""
    )
    return (
        f"Run `{view.run_id}` is a survival run with a risk score only: it has no survival "
        "probabilities (no baseline saved, no survival_{days}d column in its predictions), so "
        f"there is no probability of death {purpose}.{again}"
    )


def death_probability(
    view: RunView, rows: pd.DataFrame, horizon: float, kind: str = "raw"
) -> tuple[np.ndarray | None, str]:
    """``(p, source)``: P(death by ``horizon``) of ``rows`` (some of ``view``'s predictions)
    and where it came from: each row's fold baseline of ``kind`` (:func:`fold_baselines`;
    ``1 - S(horizon)``, as the run's evaluation computes it), else for ``raw`` the
    predictions' ``survival_{h}d`` column. ``(None, why)`` where neither exists; a kind
    that is not a baseline kind or a horizon that is not positive raises ``ValueError``."""
    if kind not in BASELINE_KINDS:
        raise ValueError(f"baseline {kind!r}: choose from {tuple(BASELINE_KINDS)}")
    if not horizon > 0:
        raise ValueError(f"horizon {horizon} days: give a positive number of days")
    baselines = fold_baselines(view, kind)
    if _covers(baselines, rows):
        p = 1 - survival_at(rows, baselines, horizon)
        return p, f"{kind} baseline ({BASELINE_KINDS[kind]})"
    columns = horizon_columns(rows)
    if kind == "raw" and horizon in columns:
        return 1 - rows[columns[horizon]].to_numpy(dtype=float), f"column {columns[horizon]}"
    if baselines or kind != "raw":
        have = sorted(baselines) or "none"
        return None, (
            f"run {view.run_id} has no {kind} baseline for every fold of these patients "
            f"(folds with one: {have})"
        )
    have = ", ".join(f"{h:g}" for h in columns) or "none"
    return None, (
        f"run {view.run_id} has no survival probability at day {horizon:g}: no saved "
        f"baseline and no column {survival_column(horizon)} (columns at days: {have}); pick "
        "a horizon it has"
    )
