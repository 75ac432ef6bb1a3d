"""Survival probabilities at a horizon from Cox risks, and a threshold on them: NumPy/SciPy.

Conventions as :mod:`nsclc_engine.stats.survival`: ``time`` in days, ``event`` 1 = death,
``risk`` a log hazard ratio (higher = earlier death). ``p`` is a predicted probability of death
by the horizon, ``1 - S(horizon)``; whether it holds is
:mod:`nsclc_engine.stats.survival_calibration`.

* :class:`Baseline` and :func:`fit_baseline`: Breslow's baseline cumulative hazard on patients
  the model did not learn from, optionally with the risk's slope refitted there (a Cox model
  with the risk as its one covariate: the recalibrated baseline). ``S(t | r) = exp(-H0(t)
  exp(slope * r))``. lifelines' ``CoxPHFitter`` baseline is the oracle.
* :func:`horizon_outcome`, :func:`horizon_counts`, :func:`td_sensitivity_specificity` and
  :func:`td_roc`: a threshold on ``p`` at the horizon, cumulative/dynamic: cases died by the
  horizon (weighted by the inverse probability of remaining uncensored, as scikit-survival's
  ``cumulative_dynamic_auc``), controls alive after it, patients censored before it counted
  apart and never as negatives.
* :func:`evaluate_risks`: Harrell's and Uno's C, time-dependent AUC and the integrated Brier
  score of a split's risks (the curves from a held-out baseline).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from nsclc_engine.stats.bootstrap import bootstrap_weights
from nsclc_engine.stats.survival import bootstrap_c_index, check_survival


@dataclass(frozen=True)
class Baseline:
    """A baseline cumulative hazard (a step function at ``times``) and the slope applied to
    the model's risk: what turns a Cox risk into a survival curve."""

    times: np.ndarray
    cumulative_hazard: np.ndarray
    slope: float = 1.0
    n: int = 0
    n_events: int = 0
    fitted_on: str = "validation"

    def baseline_hazard(self, times: ArrayLike) -> np.ndarray:
        """``H0(t)`` at each time: the step function, 0 before the first death."""
        index = np.searchsorted(self.times, np.asarray(times, dtype=float), side="right")
        return np.r_[0.0, self.cumulative_hazard][index]

    def survival(self, risk: ArrayLike, times: ArrayLike) -> np.ndarray:
        """``S(t | r)`` for each risk (rows) at each time (columns)."""
        hazard_ratio = np.exp(self.slope * np.asarray(risk, dtype=float))
        return np.exp(-np.outer(hazard_ratio, self.baseline_hazard(times)))

    def survival_at_own_times(self, risk: ArrayLike, times: ArrayLike) -> np.ndarray:
        """``S_i(t_i)``: each patient's survival at its own time (one time per risk)."""
        hazard_ratio = np.exp(self.slope * np.asarray(risk, dtype=float))
        return np.exp(-self.baseline_hazard(times) * hazard_ratio)

    def death_probability(self, risk: ArrayLike, horizon: float) -> np.ndarray:
        """``1 - S(horizon | r)`` per risk."""
        return 1.0 - self.survival(risk, [horizon])[:, 0]

    @property
    def follow_up(self) -> float:
        """The last death time it knows: beyond it, the curve is carried flat."""
        return float(self.times[-1]) if len(self.times) else 0.0

    def to_dict(self) -> dict:
        return {
            "times": self.times.tolist(),
            "cumulative_hazard": self.cumulative_hazard.tolist(),
            "slope": self.slope,
            "n": self.n,
            "n_events": self.n_events,
            "fitted_on": self.fitted_on,
        }

    @classmethod
    def from_dict(cls, saved: dict) -> Baseline:
        return cls(
            np.asarray(saved["times"], dtype=float),
            np.asarray(saved["cumulative_hazard"], dtype=float),
            float(saved.get("slope", 1.0)),
            int(saved.get("n", 0)),
            int(saved.get("n_events", 0)),
            str(saved.get("fitted_on", "validation")),
        )


def cox_slope(time: ArrayLike, event: ArrayLike, risk: ArrayLike) -> float:
    """The coefficient of ``risk`` in a Cox model with it as the one covariate (Efron ties):
    the calibration slope of a Cox risk (1: as spread as the outcomes say; below 1: overfit)."""
    from sksurv.linear_model import CoxPHSurvivalAnalysis
    from sksurv.util import Surv

    time, event, risk = check_survival(time, event, risk)
    if event.sum() < 2 or np.ptp(risk) == 0:
        raise ValueError("the slope needs at least two deaths and risks that differ")
    model = CoxPHSurvivalAnalysis(ties="efron").fit(risk[:, None], Surv.from_arrays(event, time))
    return float(model.coef_[0])


def fit_baseline(
    time: ArrayLike,
    event: ArrayLike,
    risk: ArrayLike,
    recalibrate: bool = False,
    fitted_on: str = "validation",
) -> Baseline:
    """Breslow's estimator ``H0(t) = sum_{deaths t_j <= t} d_j / sum_{R(t_j)} exp(slope r)``
    on the given patients; ``recalibrate``: the slope is first refitted on them
    (:func:`cox_slope`), else 1 (the risk as the model gives it)."""
    time, event, risk = check_survival(time, event, risk)
    if not event.any():
        raise ValueError("a baseline hazard needs at least one death")
    slope = cox_slope(time, event, risk) if recalibrate else 1.0
    death_times, deaths = np.unique(time[event], return_counts=True)
    order = np.argsort(time)
    # sum of exp(slope r) over patients with time >= t: a reversed cumulative sum
    tail = np.cumsum(np.exp(slope * risk[order])[::-1])[::-1]
    at_risk = tail[np.searchsorted(time[order], death_times, side="left")]
    return Baseline(
        death_times,
        np.cumsum(deaths / at_risk),
        slope,
        len(time),
        int(event.sum()),
        fitted_on + (" (slope refitted)" if recalibrate else ""),
    )


# --- a threshold at the horizon ----------------------------------------------------------


@dataclass(frozen=True)
class HorizonOutcome:
    """Each patient's outcome at a horizon: ``case`` died by it, ``control`` alive after it,
    ``censored`` (neither) followed up no further than it; ``weight`` the inverse probability
    of remaining uncensored up to a case's death (1 elsewhere, where it cancels)."""

    horizon: float
    case: np.ndarray
    control: np.ndarray
    censored: np.ndarray
    weight: np.ndarray
    censoring_from: str = field(default="")


def horizon_outcome(
    time: ArrayLike,
    event: ArrayLike,
    horizon: float,
    censoring_time: ArrayLike | None = None,
    censoring_event: ArrayLike | None = None,
    censoring_from: str = "the scored patients",
) -> HorizonOutcome:
    """The cumulative/dynamic outcome at ``horizon`` and its IPCW weights, the censoring
    distribution (Kaplan-Meier of the censoring times, scikit-survival's
    ``CensoringDistributionEstimator``) estimated from ``censoring_time``/``censoring_event``
    (the training split, as ``cumulative_dynamic_auc`` takes it), else from the patients
    themselves."""
    from sksurv.nonparametric import CensoringDistributionEstimator
    from sksurv.util import Surv

    time, event, _ = check_survival(time, event)
    if censoring_time is None:
        censoring_time, censoring_event = time, event
    c_time, c_event, _ = check_survival(censoring_time, censoring_event)
    case = event & (time <= horizon)
    control = time > horizon
    censored = ~case & ~control
    weight = np.ones(len(time))
    if case.any():
        estimator = CensoringDistributionEstimator().fit(Surv.from_arrays(c_event, c_time))
        # the weights of cases only: times after the horizon never need the censoring curve
        clipped = np.minimum(time[case], horizon)
        weight[case] = estimator.predict_ipcw(Surv.from_arrays(np.ones(case.sum(), bool), clipped))
    return HorizonOutcome(float(horizon), case, control, censored, weight, censoring_from)


def horizon_counts(outcome: HorizonOutcome, p: ArrayLike, threshold: float | np.ndarray) -> dict:
    """The confusion matrix at the horizon for calls ``p >= threshold``: died by the horizon
    (``tp``, ``fn``), alive after it (``fp``, ``tn``), and censored before it, called positive
    or negative (``censored_pos``, ``censored_neg``), which are never negatives."""
    positive = np.asarray(p, dtype=float) >= threshold
    return {
        "tp": int((outcome.case & positive).sum()),
        "fn": int((outcome.case & ~positive).sum()),
        "fp": int((outcome.control & positive).sum()),
        "tn": int((outcome.control & ~positive).sum()),
        "censored_pos": int((outcome.censored & positive).sum()),
        "censored_neg": int((outcome.censored & ~positive).sum()),
    }


def td_sensitivity_specificity(
    outcome: HorizonOutcome,
    p: ArrayLike,
    threshold: float | np.ndarray,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """Cumulative/dynamic sensitivity (IPCW-weighted share of the cases called positive) and
    specificity (share of the controls called negative) of ``p >= threshold`` (one
    threshold, or one per patient: each k-fold row at its fold's), with
    patient-level bootstrap CIs (the censoring weights kept: they come from the training
    split)."""
    positive = np.asarray(p, dtype=float) >= threshold
    weighted_case = outcome.weight * outcome.case
    rows = {
        "sensitivity": (weighted_case * positive, weighted_case),
        "specificity": ((outcome.control & ~positive).astype(float), outcome.control.astype(float)),
    }
    one = np.ndim(threshold) == 0
    result: dict = {"threshold": float(threshold) if one else None, "horizon_days": outcome.horizon}
    alpha = (1 - level) / 2
    for name, (top, bottom) in rows.items():
        total = bottom.sum()
        result[name] = float(top.sum() / total) if total > 0 else float("nan")
        values = []
        for counts in bootstrap_weights(len(top), n_resamples, seed):
            with np.errstate(divide="ignore", invalid="ignore"):
                values.append((counts @ top) / (counts @ bottom))
        values = np.concatenate(values) if values else np.array([])
        values = values[np.isfinite(values)]
        result[f"{name}_ci"] = (
            np.quantile(values, [alpha, 1 - alpha]).tolist() if len(values) else [np.nan] * 2
        )
    return result


def td_roc(outcome: HorizonOutcome, p: ArrayLike) -> dict:
    """Cumulative/dynamic sensitivity and 1 - specificity at every distinct threshold (from
    above: no one called positive, to all), and the area under that curve, which is
    scikit-survival's ``cumulative_dynamic_auc`` at the horizon (ties count half)."""
    p = np.asarray(p, dtype=float)
    cases, controls = outcome.case, outcome.control
    if not cases.any() or not controls.any():
        raise ValueError(
            f"at {outcome.horizon:.0f} days there are {cases.sum()} deaths and "
            f"{controls.sum()} patients alive: the time-dependent ROC needs both"
        )
    thresholds = np.r_[np.inf, np.unique(p)[::-1]]
    positive = p[None, :] >= thresholds[:, None]
    weighted = outcome.weight * cases
    sensitivity = positive @ weighted / weighted.sum()
    false_positive = positive @ controls.astype(float) / controls.sum()
    return {
        "threshold": thresholds,
        "sensitivity": sensitivity,
        "false_positive_rate": false_positive,
        "auc": float(np.trapezoid(sensitivity, false_positive)),
    }


def evaluate_risks(
    train: dict,
    test: dict,
    baseline: dict,
    horizons_days: tuple[float, ...] = (365.0, 730.0),
    seed: int = 0,
) -> dict:
    """Discrimination and calibration of risks on ``test`` (dicts of ``time``, ``event``,
    ``risk`` arrays); censoring weights come from ``train`` (times and events only) and the
    Breslow baseline hazard from ``baseline``: patients the model did not learn from (the
    validation split). A network's training risks are in-sample: an overfit model spreads
    them far wider than on new patients, and a baseline fitted on them mis-scales every
    survival curve, so its integrated Brier score looked no better than a null model's.

    Harrell's C with a bootstrap CI; Uno's C (IPCW, truncated at the last horizon);
    time-dependent AUC at each horizon; the integrated Brier score over the horizons' range.

    Every IPCW metric here looks no further than the last horizon, so test follow-up is
    censored just after it first: a test patient followed beyond the last training time
    would otherwise need the censoring distribution where it is not estimated, and
    scikit-survival raises ("censoring survival function is zero"). The values are those of
    the untruncated data wherever those exist.
    """
    from sksurv.metrics import (
        concordance_index_ipcw,
        cumulative_dynamic_auc,
        integrated_brier_score,
    )
    from sksurv.util import Surv

    surv_train = Surv.from_arrays(
        np.asarray(train["event"], bool), np.asarray(train["time"], float)
    )
    horizons = np.asarray(horizons_days, dtype=float)
    # just after the last horizon: still "alive at the horizon" for td-AUC's controls (time > t)
    end = np.nextafter(horizons.max(), np.inf)
    test_time = np.asarray(test["time"], float)
    surv_test = Surv.from_arrays(
        np.asarray(test["event"], bool) & (test_time <= end), np.minimum(test_time, end)
    )
    result = {"harrell": bootstrap_c_index(test["time"], test["event"], test["risk"], seed=seed)}
    result["uno_c_index"] = float(
        concordance_index_ipcw(surv_train, surv_test, np.asarray(test["risk"]), tau=horizons.max())[
            0
        ]
    )
    aucs, _ = cumulative_dynamic_auc(surv_train, surv_test, np.asarray(test["risk"]), horizons)
    result["time_dependent_auc"] = {
        f"{int(h)}d": float(a) for h, a in zip(horizons, aucs, strict=True)
    }
    grid = np.linspace(
        max(np.min(test_time), 1.0), min(horizons.max(), np.max(test_time) - 1e-6), 50
    )
    curves = fit_baseline(baseline["time"], baseline["event"], baseline["risk"])
    result["integrated_brier_score"] = float(
        integrated_brier_score(surv_train, surv_test, curves.survival(test["risk"], grid), grid)
    )
    result["ibs_range_days"] = [float(grid[0]), float(grid[-1])]
    return result
