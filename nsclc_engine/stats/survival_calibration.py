"""Whether predicted probabilities of death by a horizon hold: NumPy/SciPy.

``p`` is a predicted probability of death by the horizon (``1 - S(horizon)``, see
:mod:`nsclc_engine.stats.survival_probability`); ``time`` in days, ``event`` 1 = death.

* :func:`smoothed_calibration`: the smoothed calibration curve, ICI, E50 and E90 at a horizon as
  lifelines' ``survival_probability_calibration`` computes them (Austin et al. 2020): a
  Crowther-Royston-Clements spline model of the outcome on ``log(-log(1 - p))``, fitted here
  with closed-form gradients so that a bootstrap of it takes seconds.
* :func:`observed_by_group`: Kaplan-Meier observed against mean predicted per risk group, and
  :func:`calibration_in_the_large` (observed KM against mean predicted, bootstrap CI).
* :func:`d_calibration`: Haider et al. 2020's D-calibration (the histogram of ``S_i(t_i)``,
  censored patients spread over the bins below their survival at censoring), chi-square test.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from nsclc_engine.stats.bootstrap import bootstrap_weights
from nsclc_engine.stats.survival import check_survival, kaplan_meier

PENALIZER = 1e-6  # lifelines' survival_probability_calibration uses CRCSplineFitter(penalizer=1e-6)
MIN_DEATHS_FOR_CI = 20  # smoothed_calibration's bootstrap


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
    inverse Hessian there (in the centred parameters). lifelines starts from ``H = t^2``,
    which for times in days is so far off that its optimiser can stop far from the maximum;
    this fits ``log t`` centred at the middle knot by BFGS from the exponential model of the
    same deaths (``H = t d / sum t``), or from ``start`` (a bootstrap resample: the full
    sample's maximum and inverse Hessian, returned unchanged; a CI needs fewer digits)."""
    from scipy.optimize import minimize

    center = float(knots[1])
    args = (log_t, event, x_scaled, knots, weights, center)
    options: dict = {"gtol": 1e-8, "maxiter": 1000}
    if start is None:
        rate = (weights * event).sum() / (weights * np.exp(log_t)).sum()
        point = np.array([0.0, 0.0, np.log(rate) + center, 1.0, 0.0])
    else:
        point = start[0] + np.array([0.0, 0.0, start[0][3] * center, 0.0, 0.0])
        options.update(hess_inv0=start[1], gtol=1e-6, maxiter=200)
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
    CIs (each resample refits the smoother, knots kept), given from :data:`MIN_DEATHS_FOR_CI`
    deaths on: below that a resample often has too few deaths for a spline of its own, and
    ``ci_note`` says so."""
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
    if n_resamples and event.sum() < MIN_DEATHS_FOR_CI:
        result["ci_note"] = (
            f"{int(event.sum())} deaths: too few to bootstrap the smoother (from "
            f"{MIN_DEATHS_FOR_CI} on)"
        )
    elif n_resamples:
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
