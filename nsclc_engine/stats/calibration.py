"""Calibration, recalibration, decision curves and class-conditional distributions.

Pure NumPy/SciPy/scikit-learn over ``y_true`` (1 = positive) and ``y_prob``. Recalibrators
are fitted on validation predictions and applied, frozen, to test predictions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from nsclc_engine.stats.metrics import check_binary

EPS = 1e-6
RECALIBRATION_METHODS = ("none", "platt", "temperature", "isotonic")
# scikit-learn's guide: isotonic calibration overfits with "too few calibration samples
# (<< 1000)"; below this many validation patients we say so beside every isotonic result
ISOTONIC_MIN_SAMPLES = 1000


def logit(p: ArrayLike) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p / (1 - p))


def sigmoid(x: ArrayLike) -> np.ndarray:
    return 1 / (1 + np.exp(-np.asarray(x, dtype=np.float64)))


def wilson_interval(
    successes: ArrayLike, n: ArrayLike, z: float = 1.959964
) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a proportion (NaN where n is 0)."""
    successes, n = np.asarray(successes, dtype=np.float64), np.asarray(n, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = successes / n
        centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
        half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    return centre - half, centre + half


def bin_edges(y_prob: ArrayLike, n_bins: int = 10, strategy: str = "uniform") -> np.ndarray:
    """scikit-learn's ``calibration_curve`` bins: equal width on [0, 1] or equal counts."""
    if strategy == "uniform":
        return np.linspace(0.0, 1.0, n_bins + 1)
    if strategy == "quantile":
        return np.percentile(y_prob, np.linspace(0, 1, n_bins + 1) * 100)  # as sklearn
    raise ValueError(f"strategy {strategy!r}: choose uniform or quantile")


def reliability_curve(
    y_true: ArrayLike, y_prob: ArrayLike, n_bins: int = 10, strategy: str = "uniform"
) -> dict:
    """Per non-empty bin: edges, count, mean predicted, observed fraction with a Wilson 95 % CI.

    The bins and the assignment of each prediction are those of scikit-learn's
    ``calibration_curve`` (the oracle in the tests).
    """
    y_true, y_prob = check_binary(y_true, y_prob, "y_prob")
    edges = bin_edges(y_prob, n_bins, strategy)
    ids = np.searchsorted(edges[1:-1], y_prob)
    count = np.bincount(ids, minlength=len(edges) - 1)
    positives = np.bincount(ids, weights=y_true, minlength=len(edges) - 1)
    predicted = np.bincount(ids, weights=y_prob, minlength=len(edges) - 1)
    keep = count > 0
    low, high = wilson_interval(positives[keep], count[keep])
    return {
        "bin_low": edges[:-1][keep],
        "bin_high": edges[1:][keep],
        "count": count[keep],
        "mean_predicted": predicted[keep] / count[keep],
        "observed": positives[keep] / count[keep],
        "observed_ci_low": low,
        "observed_ci_high": high,
    }


def expected_calibration_error(
    y_true: ArrayLike, y_prob: ArrayLike, n_bins: int = 10, strategy: str = "uniform"
) -> float:
    """Sum over bins of (bin share) x |observed - mean predicted|."""
    curve = reliability_curve(y_true, y_prob, n_bins, strategy)
    weights = curve["count"] / curve["count"].sum()
    return float(np.sum(weights * np.abs(curve["observed"] - curve["mean_predicted"])))


def brier_score(y_true: ArrayLike, y_prob: ArrayLike) -> float:
    y_true, y_prob = check_binary(y_true, y_prob, "y_prob")
    return float(np.mean((y_prob - y_true) ** 2))


def _log_likelihood(eta: np.ndarray, y: np.ndarray) -> float:
    return float(np.sum(y * eta - np.logaddexp(0.0, eta)))


@dataclass(frozen=True)
class LogisticFit:
    """Maximum-likelihood ``intercept`` and ``slope`` with Wald standard errors (from the
    inverse Fisher information at the estimate); NaN where no finite estimate exists."""

    intercept: float
    slope: float
    intercept_se: float
    slope_se: float

    @classmethod
    def undefined(cls) -> LogisticFit:
        return cls(float("nan"), float("nan"), float("nan"), float("nan"))


def separates(x: ArrayLike, y: ArrayLike) -> bool:
    """Whether a threshold on ``x`` splits the classes of ``y`` without error (ties allowed at
    the cut: quasi-complete separation): then a logistic slope has no finite estimate."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y)
    return bool(x[y == 0].max() <= x[y == 1].min() or x[y == 1].max() <= x[y == 0].min())


def _logistic_fit(x, y, offset=None, fit_slope: bool = True) -> LogisticFit:
    """Maximum-likelihood fit of ``y ~ intercept + slope * x + offset`` (``fit_slope`` False:
    the slope stays 1, i.e. ``x`` enters only through ``offset``): Newton steps halved until
    the likelihood rises. Undefined (NaN) only where no finite estimate exists: a constant
    ``x`` (no slope), separated data (the estimate runs off to infinity), or a fit that does
    not converge. A large slope is no sign of separation: predictions spread over a narrow
    logit range need one (statsmodels' ``Logit`` is the oracle in the tests)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    offset = np.zeros_like(x) if offset is None else np.asarray(offset, dtype=np.float64)
    if fit_slope and (np.ptp(x) == 0 or separates(x, y)):
        return LogisticFit.undefined()
    design = np.stack([np.ones_like(x), x], axis=1) if fit_slope else np.ones((len(x), 1))
    beta = np.zeros(design.shape[1])
    current = _log_likelihood(design @ beta + offset, y)
    converged = False
    for _ in range(500):
        p = sigmoid(design @ beta + offset)
        gradient = design.T @ (y - p)
        hessian = design.T @ (design * (p * (1 - p))[:, None])
        try:
            step = np.linalg.solve(hessian, gradient)
        except np.linalg.LinAlgError:
            return LogisticFit.undefined()
        scale = 1.0
        while scale > 1e-6:
            candidate = _log_likelihood(design @ (beta + scale * step) + offset, y)
            if candidate >= current - 1e-12:
                break
            scale /= 2
        beta, current = beta + scale * step, candidate
        if np.max(np.abs(scale * step)) < 1e-10 * max(1.0, np.max(np.abs(beta))):
            converged = True
            break
    if not converged or not np.all(np.isfinite(beta)):
        return LogisticFit.undefined()
    p = sigmoid(design @ beta + offset)
    information = design.T @ (design * (p * (1 - p))[:, None])
    try:
        se = np.sqrt(np.diag(np.linalg.inv(information)))
    except np.linalg.LinAlgError:
        se = np.full(len(beta), np.nan)
    if fit_slope:
        return LogisticFit(float(beta[0]), float(beta[1]), float(se[0]), float(se[1]))
    return LogisticFit(float(beta[0]), 1.0, float(se[0]), 0.0)


def _wald_ci(estimate: float, se: float, z: float = 1.959964) -> list[float]:
    return [estimate - z * se, estimate + z * se]


def calibration_intercept_slope(y_true: ArrayLike, y_prob: ArrayLike) -> dict:
    """Calibration slope (logistic regression of the outcome on the logit, 1 = ideal) and
    calibration-in-the-large intercept (slope fixed at 1, logit as offset; 0 = ideal), each
    with a Wald 95 % CI (``slope_ci``, ``intercept_ci``)."""
    y_true, y_prob = check_binary(y_true, y_prob, "y_prob")
    nan = float("nan")
    if y_true.min() == y_true.max():
        return {"intercept": nan, "slope": nan, "intercept_ci": [nan, nan], "slope_ci": [nan, nan]}
    z = logit(y_prob)
    slope = _logistic_fit(z, y_true)
    in_the_large = _logistic_fit(np.zeros_like(z), y_true, offset=z, fit_slope=False)
    return {
        "intercept": in_the_large.intercept,
        "slope": slope.slope,
        "intercept_ci": _wald_ci(in_the_large.intercept, in_the_large.intercept_se),
        "slope_ci": _wald_ci(slope.slope, slope.slope_se),
    }


def calibration_summary(
    y_true: ArrayLike, y_prob: ArrayLike, n_bins: int = 10, strategy: str = "uniform"
) -> dict:
    return {
        "brier": brier_score(y_true, y_prob),
        "ece": expected_calibration_error(y_true, y_prob, n_bins, strategy),
        **calibration_intercept_slope(y_true, y_prob),
    }


# --- recalibration ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Recalibrator:
    """A fitted map from raw probabilities to recalibrated ones (see :func:`fit_recalibrator`)."""

    method: str
    parameters: dict
    n_fitted: int
    _isotonic: object | None = None

    def apply(self, y_prob: ArrayLike) -> np.ndarray:
        y_prob = np.asarray(y_prob, dtype=np.float64)
        if self.method == "none":
            return y_prob
        if self.method == "platt":
            return sigmoid(self.parameters["a"] * logit(y_prob) + self.parameters["b"])
        if self.method == "temperature":
            return sigmoid(logit(y_prob) / self.parameters["temperature"])
        if self._isotonic is None:  # rebuilt from its breakpoints (recalibrator_from_dict)
            return np.interp(y_prob, self.parameters["x"], self.parameters["y"])
        return np.asarray(self._isotonic.predict(y_prob), dtype=np.float64)

    @property
    def warning(self) -> str:
        if self.method == "isotonic" and self.n_fitted < ISOTONIC_MIN_SAMPLES:
            return (
                f"isotonic recalibration fitted on {self.n_fitted} patients: scikit-learn warns "
                f"that it overfits with far fewer than {ISOTONIC_MIN_SAMPLES}; prefer Platt or "
                "temperature scaling here"
            )
        return ""

    def to_dict(self) -> dict:
        """Everything :func:`recalibrator_from_dict` needs (isotonic: its breakpoints)."""
        parameters = dict(self.parameters)
        if self._isotonic is not None:
            parameters["x"] = np.asarray(self._isotonic.X_thresholds_, float).tolist()
            parameters["y"] = np.asarray(self._isotonic.y_thresholds_, float).tolist()
        payload = {"method": self.method, "n_fitted": self.n_fitted, **parameters}
        return payload | ({"warning": self.warning} if self.warning else {})


def recalibrator_from_dict(saved: dict) -> Recalibrator:
    """The recalibrator that :meth:`Recalibrator.to_dict` wrote, applied exactly as fitted."""
    method = saved.get("method", "none")
    keys = {
        "none": (),
        "platt": ("a", "b"),
        "temperature": ("temperature",),
        "isotonic": ("x", "y"),
    }
    if method not in keys or any(key not in saved for key in keys[method]):
        raise ValueError(f"cannot rebuild a {method!r} recalibrator from {sorted(saved)}")
    parameters = {key: saved[key] for key in keys[method]}
    return Recalibrator(method, parameters, int(saved.get("n_fitted", 0)))


def raw_threshold(recalibrator: Recalibrator, threshold: float) -> float:
    """The raw-probability threshold that makes the same calls as ``threshold`` on the
    recalibrated scale: the smallest raw p with ``recalibrator.apply(p) >= threshold``
    (every method here is non-decreasing in p; bisection to 1e-12)."""
    if recalibrator.method == "none":
        return float(threshold)
    if recalibrator.method == "platt" and recalibrator.parameters["a"] < 0:
        raise ValueError("this Platt recalibration reverses the ranking; no raw threshold exists")
    low, high = 0.0, 1.0
    if recalibrator.apply([low])[0] >= threshold:
        return low
    if recalibrator.apply([high])[0] < threshold:
        return float(np.nextafter(1.0, 2.0))  # nobody is called positive
    while high - low > 1e-12:
        middle = (low + high) / 2
        if recalibrator.apply([middle])[0] >= threshold:
            high = middle
        else:
            low = middle
    return high


def fit_recalibrator(y_true: ArrayLike, y_prob: ArrayLike, method: str) -> Recalibrator:
    """Fit on validation predictions: ``platt`` (logistic regression on the logit, slope and
    intercept), ``isotonic`` (scikit-learn, clipped to [0, 1]), ``temperature`` (one scale T of
    the logit, by maximum likelihood) or ``none``."""
    y_true, y_prob = check_binary(y_true, y_prob, "y_prob")
    n = len(y_true)
    if method not in RECALIBRATION_METHODS:
        raise ValueError(f"recalibration {method!r}: choose one of {RECALIBRATION_METHODS}")
    if method == "none":
        return Recalibrator("none", {}, n)
    if y_true.min() == y_true.max():
        raise ValueError("recalibration needs both classes among the fitting predictions")
    z = logit(y_prob)
    if method == "platt":
        if np.ptp(z) == 0:
            raise ValueError("Platt scaling cannot be fitted: the predictions are constant")
        if separates(z, y_true):
            raise ValueError(
                "Platt scaling cannot be fitted: the predictions separate the classes "
                "perfectly (no finite slope exists)"
            )
        fit = _logistic_fit(z, y_true)
        if not np.isfinite(fit.slope):
            raise ValueError("Platt scaling cannot be fitted: the logistic fit did not converge")
        return Recalibrator("platt", {"a": fit.slope, "b": fit.intercept}, n)
    if method == "temperature":
        from scipy.optimize import minimize_scalar

        def nll(log_t: float) -> float:
            p = np.clip(sigmoid(z / np.exp(log_t)), EPS, 1 - EPS)
            return -float(np.mean(y_true * np.log(p) + (1 - y_true) * np.log(1 - p)))

        best = minimize_scalar(nll, bounds=(-5.0, 5.0), method="bounded")
        return Recalibrator("temperature", {"temperature": float(np.exp(best.x))}, n)
    from sklearn.isotonic import IsotonicRegression

    model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(y_prob, y_true)
    return Recalibrator("isotonic", {}, n, model)


# --- clinical utility and distributions --------------------------------------------------------


def decision_curve(
    y_true: ArrayLike, y_prob: ArrayLike, thresholds: ArrayLike | None = None
) -> dict:
    """Net benefit over threshold probabilities pt: TP/N - FP/N * pt / (1 - pt), for the model,
    treat-all and treat-none (zero)."""
    y_true, y_prob = check_binary(y_true, y_prob, "y_prob")
    pt = np.arange(0.01, 1.0, 0.01) if thresholds is None else np.asarray(thresholds, float)
    if ((pt <= 0) | (pt >= 1)).any():
        raise ValueError("decision-curve thresholds must lie strictly between 0 and 1")
    n = len(y_true)
    predicted = y_prob[None, :] >= pt[:, None]
    tp = (predicted & (y_true == 1)).sum(axis=1)
    fp = (predicted & (y_true == 0)).sum(axis=1)
    odds = pt / (1 - pt)
    prevalence = y_true.mean()
    return {
        "threshold": pt,
        "model": tp / n - fp / n * odds,
        "treat_all": prevalence - (1 - prevalence) * odds,
        "treat_none": np.zeros_like(pt),
    }


def probability_histograms(y_true: ArrayLike, y_prob: ArrayLike, n_bins: int = 20) -> dict:
    """Counts and densities of the predicted probability per true class on [0, 1] bins."""
    y_true, y_prob = check_binary(y_true, y_prob, "y_prob")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    result = {"edges": edges}
    for label in (0, 1):
        counts, _ = np.histogram(y_prob[y_true == label], bins=edges)
        total = counts.sum()
        result[f"count_{label}"] = counts
        result[f"density_{label}"] = counts / (total * np.diff(edges)) if total else counts * 0.0
    return result
