"""Survival probabilities at a horizon from Cox risks, and whether they hold: pure NumPy/SciPy.

Conventions as :mod:`nsclc_engine.stats.survival`: ``time`` in days, ``event`` 1 = death,
``risk`` a log hazard ratio (higher = earlier death). ``p`` is a predicted probability of death
by the horizon, ``1 - S(horizon)``.

* :class:`Baseline` and :func:`fit_baseline`: Breslow's baseline cumulative hazard on patients
  the model did not learn from, optionally with the risk's slope refitted there (a Cox model
  with the risk as its one covariate: the recalibrated baseline). ``S(t | r) = exp(-H0(t)
  exp(slope * r))``. lifelines' ``CoxPHFitter`` baseline is the oracle.
* :func:`smoothed_calibration`: the smoothed calibration curve, ICI and E50 at a horizon as
  lifelines' ``survival_probability_calibration`` computes them (Austin et al. 2020): a
  Crowther-Royston-Clements spline model of the outcome on ``log(-log(1 - p))``, fitted here
  in closed-form gradients so that a bootstrap of it takes seconds.
* :func:`observed_by_group`: Kaplan-Meier observed against mean predicted per risk group, and
  :func:`calibration_in_the_large` (observed KM against mean predicted, bootstrap CI).
* :func:`d_calibration`: Haider et al. 2020's D-calibration (the histogram of ``S_i(t_i)``,
  censored patients spread over the bins below their survival at censoring), chi-square test.
* :func:`horizon_counts` and :func:`td_sensitivity_specificity`: a threshold on ``p`` at the
  horizon, cumulative/dynamic: cases died by the horizon (weighted by the inverse probability
  of remaining uncensored, as scikit-survival's ``cumulative_dynamic_auc``), controls alive
  after it, patients censored before it counted apart and never as negatives.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from nsclc_engine.stats.bootstrap import bootstrap_weights
from nsclc_engine.stats.survival import check_survival

PENALIZER = 1e-6  # lifelines' survival_probability_calibration uses CRCSplineFitter(penalizer=1e-6)


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

    def survival(self, risk: ArrayLike, times: ArrayLike) -> np.ndarray:
        """``S(t | r)`` for each risk (rows) at each time (columns)."""
        index = np.searchsorted(self.times, np.asarray(times, dtype=float), side="right")
        h0 = np.r_[0.0, self.cumulative_hazard][index]
        return np.exp(-np.outer(np.exp(self.slope * np.asarray(risk, dtype=float)), h0))

    def survival_at_own_times(self, risk: ArrayLike, times: ArrayLike) -> np.ndarray:
        """``S_i(t_i)``: each patient's survival at its own time (one time per risk)."""
        index = np.searchsorted(self.times, np.asarray(times, dtype=float), side="right")
        h0 = np.r_[0.0, self.cumulative_hazard][index]
        return np.exp(-h0 * np.exp(self.slope * np.asarray(risk, dtype=float)))

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


# --- smoothed calibration (lifelines' survival_probability_calibration) --------------------


def _spline_terms(u: np.ndarray, knots: np.ndarray) -> tuple[np.ndarray, ...]:
    """The one restricted cubic spline term of CRCSplineFitter (3 knots) and its first and
    second derivatives in ``u``."""
    low, mid, high = knots
    share = (high - mid) / (high - low)
    parts = [np.maximum(u - k, 0.0) for k in (mid, low, high)]
    b = parts[0] ** 3 - (share * parts[1] ** 3 + (1 - share) * parts[2] ** 3)
    db = 3 * (parts[0] ** 2 - (share * parts[1] ** 2 + (1 - share) * parts[2] ** 2))
    d2b = 6 * (parts[0] - (share * parts[1] + (1 - share) * parts[2]))
    return b, db, d2b


@dataclass(frozen=True)
class SplineFit:
    """A fitted CRC spline model ``H(t | x) = exp(g0 + g1 u + g2 b(u))``, ``u = log t - b0 -
    beta x / scale``: the smoother of :func:`smoothed_calibration`."""

    params: np.ndarray  # beta (per scaled x), b0, g0, g1, g2
    knots: np.ndarray
    scale: float

    def cumulative_hazard(self, t: float, x: np.ndarray) -> np.ndarray:
        beta, b0, g0, g1, g2 = self.params
        u = np.log(t) - b0 - beta * np.asarray(x, dtype=float) / self.scale
        return np.exp(g0 + g1 * u + g2 * _spline_terms(u, self.knots)[0])

    def observed(self, horizon: float, p: ArrayLike) -> np.ndarray:
        """The smoothed observed probability of death by ``horizon`` at predicted ``p``."""
        return 1 - np.exp(-self.cumulative_hazard(horizon, _ccl(p)))


# lifelines penalises every parameter but the intercept of beta_ (a group of two columns)
_PENALISED = np.array([1.0, 0.0, 1.0, 1.0, 1.0])


def _negative_log_likelihood(params, log_t, event, x, knots, weights, center=0.0):
    """lifelines' objective: minus the weighted mean log-likelihood (deaths ``log h(t)``,
    everyone ``-H(t)``) plus ``penalizer / 2`` times the squared penalised parameters; and
    its gradient. ``center``: the parameters are those of ``log t - center`` (``g0`` then
    stands for ``g0 + g1 center``, which conditions the fit; the penalty stays lifelines')."""
    beta, b0, g0, g1, g2 = params
    u = log_t - center - b0 - beta * x
    b, db, d2b = _spline_terms(u, knots - center)
    log_cumulative = g0 + g1 * u + g2 * b
    slope = g1 + g2 * db  # d log H / d log t
    if np.any(slope[event] <= 0):
        return np.inf, np.zeros(5)
    cumulative = np.exp(np.minimum(log_cumulative, 200.0))  # a far-off step: large, finite
    safe = np.where(event, slope, 1.0)
    total = weights.sum()
    log_hazard = log_cumulative + np.log(safe) - log_t
    value = -(weights * (event * log_hazard - cumulative)).sum() / total
    # d log H / d params and d log(slope) / d params, per patient
    d_log_cumulative = np.stack([-slope * x, -slope, np.ones_like(u), u, b])
    d_log_slope = np.stack(
        [-g2 * d2b * x / safe, -g2 * d2b / safe, np.zeros_like(u), 1 / safe, db / safe]
    )
    gradient = (
        -(weights * (event * (d_log_cumulative + d_log_slope) - cumulative * d_log_cumulative)).sum(
            1
        )
        / total
    )
    original = np.array([beta, b0, g0 - g1 * center, g1, g2])  # lifelines' parameters
    value += 0.5 * PENALIZER * (_PENALISED * original**2).sum()
    penalty = PENALIZER * _PENALISED * original
    penalty[3] -= penalty[2] * center
    return value, gradient + penalty


def _fit_spline(
    log_t: np.ndarray,
    event: np.ndarray,
    x_scaled: np.ndarray,
    knots: np.ndarray,
    weights: np.ndarray,
    start: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The maximum of lifelines' CRCSplineFitter likelihood, in lifelines' parameters, and the
    inverse Hessian there (in the centred parameters; a start for refits, which return the
    start's). lifelines starts
    from ``H = t^2``, which for times in days is so far off that its optimiser can stop far
    from the maximum; this fits ``log t`` centred at the middle knot, from the exponential
    model of the same deaths (``H = t d / sum t``), or from ``start`` (a bootstrap resample:
    the full sample's maximum and inverse Hessian, so that a refit takes a few steps)."""
    from scipy.optimize import minimize

    center = float(knots[1])
    args = (log_t, event, x_scaled, knots, weights, center)
    options: dict = {"gtol": 1e-8, "maxiter": 1000}
    if start is None:
        rate = (weights * event).sum() / (weights * np.exp(log_t)).sum()
        point = np.array([0.0, 0.0, np.log(rate) + center, 1.0, 0.0])
    else:
        point = start[0] + np.array([0.0, 0.0, start[0][3] * center, 0.0, 0.0])
        options.update(hess_inv0=start[1], gtol=1e-6)  # a CI needs no more digits
    result = minimize(
        _negative_log_likelihood, point, args=args, jac=True, method="BFGS", options=options
    )
    if not np.all(np.isfinite(result.x)) or not np.isfinite(result.fun):
        raise ValueError("the calibration smoother did not converge")
    beta, b0, g0, g1, g2 = result.x
    inverse = _inverse_hessian(result.x, args) if start is None else start[1]
    return np.array([beta, b0, g0 - g1 * center, g1, g2]), inverse


def _inverse_hessian(point: np.ndarray, args: tuple) -> np.ndarray:
    """The inverse of the objective's Hessian at ``point`` (central differences of the
    analytic gradient), made symmetric positive definite; the identity where it is not
    finite."""
    step = 1e-5 * np.maximum(1.0, np.abs(point))
    rows = []
    for i in range(len(point)):
        shift = np.zeros_like(point)
        shift[i] = step[i]
        high = _negative_log_likelihood(point + shift, *args)[1]
        low = _negative_log_likelihood(point - shift, *args)[1]
        rows.append((high - low) / (2 * step[i]))
    hessian = np.array(rows)
    values, vectors = np.linalg.eigh((hessian + hessian.T) / 2)
    if not np.all(np.isfinite(values)) or values.max() <= 0:
        return np.eye(len(point))
    values = np.maximum(values, 1e-6 * values.max())
    inverse = (vectors / values) @ vectors.T
    return (inverse + inverse.T) / 2  # exactly symmetric, as scipy checks


def calibration_errors(fit: SplineFit, p: ArrayLike, horizon: float) -> dict:
    """ICI (mean), E50 (median) and E90 of ``|observed - p|``, each patient's observed
    probability being the smoother's, and the smoothed curve over the range of ``p`` (as
    lifelines draws it: 100 points from min - 0.01 to max + 0.01)."""
    p = np.asarray(p, dtype=float)
    observed = fit.observed(horizon, p)
    errors = np.abs(observed - p)
    grid = np.linspace(max(p.min() - 0.01, 0.0), min(p.max() + 0.01, 1.0), 100)
    return {
        "ici": float(errors.mean()),
        "e50": float(np.median(errors)),
        "e90": float(np.quantile(errors, 0.9)),
        "curve": {"predicted": grid.tolist(), "observed": fit.observed(horizon, grid).tolist()},
        "observed": observed.tolist(),
    }


def _ccl(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 1e-10, 1 - 1e-10)
    return np.log(-np.log(1 - p))


def smoothed_calibration(
    p: ArrayLike,
    time: ArrayLike,
    event: ArrayLike,
    horizon: float,
    n_resamples: int = 0,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """ICI, E50 and E90 of predicted probabilities of death by ``horizon`` and the smoothed
    calibration curve, as lifelines' ``survival_probability_calibration``: the outcome is
    smoothed by a CRC spline model (knots at the 5th, 50th and 95th percentiles of the log
    death times) with ``log(-log(1 - p))`` as its covariate; each patient's observed
    probability is that model's ``1 - S(horizon)``; ICI is the mean absolute difference from
    ``p``, E50 the median, E90 the 90th percentile. ``n_resamples``: patient-level bootstrap
    CIs (each resample refits the smoother, knots kept)."""
    time, event, p = check_survival(time, event, p, name="p")
    if event.sum() < 3:
        raise ValueError("the smoothed calibration needs at least three deaths")
    x = _ccl(p)
    scale = float(np.std(x, ddof=1)) if len(x) > 1 else 1.0
    scale = scale if scale >= 1e-8 else 1.0
    log_t = np.log(np.maximum(time, 1e-3))
    knots = np.percentile(log_t[event], [5, 50, 95])
    params, inverse_hessian = _fit_spline(log_t, event, x / scale, knots, np.ones(len(x)))
    fit = SplineFit(params, knots, scale)
    result = {"horizon_days": float(horizon), "n": len(p), **calibration_errors(fit, p, horizon)}
    if n_resamples:
        values = []
        for counts in bootstrap_weights(len(p), n_resamples, seed):
            for weights in counts.astype(float):
                try:
                    fitted, _ = _fit_spline(
                        log_t, event, x / scale, knots, weights, (params, inverse_hessian)
                    )
                except ValueError:
                    continue
                resampled = SplineFit(fitted, knots, scale).observed(horizon, p)
                gaps = np.repeat(np.abs(resampled - p), weights.astype(int))
                values.append((gaps.mean(), np.median(gaps), np.quantile(gaps, 0.9)))
        values = np.asarray(values).reshape(-1, 3)
        alpha = (1 - level) / 2
        if len(values) < n_resamples / 2:
            raise ValueError(
                f"the smoother failed on {n_resamples - len(values)} of {n_resamples} resamples"
            )
        for column, name in enumerate(("ici", "e50", "e90")):
            low, high = np.quantile(values[:, column], [alpha, 1 - alpha])
            result[f"{name}_ci"] = [float(low), float(high)]
        result["n_resamples"] = n_resamples
        result["n_failed"] = n_resamples - len(values)
    return result


# --- Kaplan-Meier observed against predicted --------------------------------------------


def _km_at(time: np.ndarray, event: np.ndarray, weights: np.ndarray, horizon: float) -> np.ndarray:
    """Kaplan-Meier ``S(horizon)`` under each row of patient ``weights`` [b, n] (a bootstrap
    resample's counts); a death time no resampled patient reaches leaves the product as is."""
    deaths = np.unique(time[event & (time <= horizon)])
    if not len(deaths):
        return np.ones(len(weights))
    at_risk = weights @ (time[:, None] >= deaths[None, :])
    died = weights @ ((time[:, None] == deaths[None, :]) & event[:, None])
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(at_risk > 0, 1 - died / at_risk, 1.0)
    return factor.prod(axis=1)


def observed_by_group(
    p: ArrayLike, time: ArrayLike, event: ArrayLike, horizon: float, n_groups: int = 5
) -> list[dict]:
    """Patients in ``n_groups`` groups of equal size by predicted probability: per group the
    mean predicted probability of death by ``horizon`` and the Kaplan-Meier observed one, with
    Greenwood's 95 % CI (``None`` where the group's follow-up ends before the horizon)."""
    from nsclc_engine.stats.survival import kaplan_meier

    time, event, p = check_survival(time, event, p, name="p")
    order = np.argsort(p, kind="stable")
    rows = []
    for number, members in enumerate(np.array_split(order, min(n_groups, len(p))), start=1):
        km = kaplan_meier(time[members], event[members])
        row = {
            "group": number,
            "n": len(members),
            "n_events_by_horizon": int((event[members] & (time[members] <= horizon)).sum()),
            "predicted": float(p[members].mean()),
            "observed": None,
            "observed_ci": None,
        }
        if time[members].max() >= horizon or km["survival"][-1] == 0:
            index = np.searchsorted(km["time"], horizon, side="right") - 1
            survival = km["survival"][index] if index >= 0 else 1.0
            sd = np.sqrt(km["variance"][index]) if index >= 0 else 0.0
            row["observed"] = float(1 - survival)
            row["observed_ci"] = [
                float(max(0.0, 1 - survival - 1.96 * sd)),
                float(min(1.0, 1 - survival + 1.96 * sd)),
            ]
        rows.append(row)
    return rows


def calibration_in_the_large(
    p: ArrayLike,
    time: ArrayLike,
    event: ArrayLike,
    horizon: float,
    n_resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """Observed (Kaplan-Meier) against mean predicted probability of death by ``horizon``:
    their difference (observed - predicted; positive: the model underestimates deaths) and
    ratio, with patient-level bootstrap CIs."""
    time, event, p = check_survival(time, event, p, name="p")
    observed = 1 - _km_at(time, event, np.ones((1, len(p))), horizon)[0]
    predicted = float(p.mean())
    differences, ratios = [], []
    for counts in bootstrap_weights(len(p), n_resamples, seed):
        counts = counts.astype(float)
        resampled = 1 - _km_at(time, event, counts, horizon)
        mean = counts @ p / counts.sum(1)
        differences.append(resampled - mean)
        ratios.append(resampled / mean)
    alpha = (1 - level) / 2
    differences, ratios = np.concatenate(differences), np.concatenate(ratios)
    return {
        "horizon_days": float(horizon),
        "observed": float(observed),
        "predicted": predicted,
        "difference": float(observed - predicted),
        "difference_ci": np.quantile(differences, [alpha, 1 - alpha]).tolist(),
        "ratio": float(observed / predicted) if predicted > 0 else float("nan"),
        "ratio_ci": np.quantile(ratios[np.isfinite(ratios)], [alpha, 1 - alpha]).tolist(),
        "n_resamples": n_resamples,
    }


# --- D-calibration ----------------------------------------------------------------------


def d_calibration(survival_at_time: ArrayLike, event: ArrayLike, n_bins: int = 10) -> dict:
    """Haider et al. 2020: if the curves are right, ``S_i(t_i)`` at each patient's own time is
    uniform on [0, 1]. A death adds 1 to the bin of ``S_i(t_i)``; a patient censored at
    ``c`` with ``s = S_i(c)`` (whose death is later, so its ``S(T)`` is uniform on [0, s]) adds
    ``(s - lower edge) / s`` to the bin holding ``s`` and ``width / s`` to each bin below it.
    Pearson's chi-square of the bin totals against ``n / n_bins``, ``n_bins - 1`` df."""
    from scipy.stats import chi2

    s = np.clip(np.asarray(survival_at_time, dtype=float), 0.0, 1.0)
    event = np.asarray(event).astype(bool)
    if s.shape != event.shape or s.ndim != 1 or not len(s):
        raise ValueError("survival_at_time and event must be 1-d arrays of one length")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    holding = np.minimum((s * n_bins).astype(int), n_bins - 1)  # bin of s (s = 1: the top one)
    counts = np.bincount(holding[event], minlength=n_bins).astype(float)
    censored_s, censored_bin = s[~event], holding[~event]
    positive = censored_s > 0
    counts += np.bincount(censored_bin[~positive], minlength=n_bins)  # s = 0: the lowest bin
    lower = edges[censored_bin[positive]]
    counts += np.bincount(
        censored_bin[positive],
        weights=(censored_s[positive] - lower) / censored_s[positive],
        minlength=n_bins,
    )
    below = (np.arange(n_bins)[None, :] < censored_bin[positive][:, None]) / (
        n_bins * censored_s[positive][:, None]
    )
    counts += below.sum(0)
    expected = len(s) / n_bins
    statistic = float(((counts - expected) ** 2 / expected).sum())
    return {
        "bins": edges.tolist(),
        "counts": counts.tolist(),
        "expected": expected,
        "statistic": statistic,
        "df": n_bins - 1,
        "p_value": float(chi2.sf(statistic, n_bins - 1)),
        "n": len(s),
    }


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
