"""Discrimination and threshold metrics: pure NumPy over ``y_true`` and ``y_score``.

Conventions follow scikit-learn: the positive class is 1 (deceased / dead by 2 years, as in
the report) and a patient is called positive when ``y_score >= threshold``; higher risk =
earlier event. Everything here is exact with tied scores.

* :func:`metrics_at_threshold`: confusion counts and rates at one threshold, O(n).
* :func:`threshold_sweep`: the same at every distinct threshold at once (sort once, cumulative
  counts, O(n log n)); arrays a slider indexes with :meth:`Sweep.row`; ROC and PR curves.
* :func:`choose_threshold`: a threshold rule fitted on (validation) predictions, then frozen.
* :func:`bootstrap_metrics`: patient-level percentile bootstrap CIs, vectorised.
* :func:`stratified_auc`, :func:`resampled_auc`: the AUC over pairs within strata (k-fold:
  within each fold's model) and per bootstrap resample (paired comparisons).
* :func:`delong_test`: two models' AUCs on the same patients.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from nsclc_engine.stats.bootstrap import bootstrap_weights

RATE_KEYS = (
    "accuracy",
    "balanced_accuracy",
    "sensitivity",
    "specificity",
    "precision",
    "npv",
    "f1",
)


def check_binary(
    y_true: ArrayLike, y_score: ArrayLike, name: str = "y_score"
) -> tuple[np.ndarray, np.ndarray]:
    """``y_true`` as int 0/1 and ``y_score`` as float64, 1-d, same length, finite."""
    y_true = np.asarray(y_true)
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_true.ndim != 1 or y_true.shape != y_score.shape:
        raise ValueError(
            f"y_true and {name} must be 1-d arrays of one length; got {y_true.shape} and "
            f"{y_score.shape}"
        )
    if not np.isin(y_true, (0, 1)).all():
        raise ValueError(f"y_true must hold only 0 and 1; got {sorted(set(y_true.tolist()))[:5]}")
    if not np.isfinite(y_score).all():
        raise ValueError(f"{name} must be finite (no NaN or infinity)")
    return y_true.astype(np.int64), y_score


def _ratio(a, b):
    """a / b elementwise, NaN where b is 0."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1.0), np.nan)


def rates_from_counts(tp, fp, fn, tn) -> dict[str, np.ndarray]:
    """Accuracy, balanced accuracy, sensitivity, specificity, precision (PPV), NPV and F1 from
    confusion counts (scalars or arrays); a rate whose denominator is zero is NaN."""
    sensitivity, specificity = _ratio(tp, tp + fn), _ratio(tn, tn + fp)
    return {
        "accuracy": _ratio(np.add(tp, tn), np.add(tp, tn) + np.add(fp, fn)),
        "balanced_accuracy": (sensitivity + specificity) / 2,
        "sensitivity": sensitivity,
        "specificity": specificity,
        "precision": _ratio(tp, np.add(tp, fp)),
        "npv": _ratio(tn, np.add(tn, fn)),
        "f1": _ratio(np.multiply(2, tp), np.multiply(2, tp) + np.add(fp, fn)),
    }


def metrics_at_threshold(y_true: ArrayLike, y_prob: ArrayLike, threshold: float = 0.5) -> dict:
    """Confusion counts and every rate of :data:`RATE_KEYS` at ``y_prob >= threshold``."""
    y_true, y_prob = check_binary(y_true, y_prob, "y_prob")
    predicted = y_prob >= threshold
    tp = int(np.sum(predicted & (y_true == 1)))
    fp = int(np.sum(predicted & (y_true == 0)))
    fn = int(np.sum(~predicted & (y_true == 1)))
    tn = int(np.sum(~predicted & (y_true == 0)))
    rates = rates_from_counts(tp, fp, fn, tn)
    return {"threshold": float(threshold), "tp": tp, "fp": fp, "fn": fn, "tn": tn} | {
        key: float(value) for key, value in rates.items()
    }


@dataclass(frozen=True)
class Sweep:
    """Confusion counts at every distinct threshold, highest first.

    Row 0 is "nobody positive" (threshold +inf); row ``k`` predicts positive every score
    ``>= thresholds[k]``. ``rates`` holds the arrays of :data:`RATE_KEYS`, one value per row.
    """

    thresholds: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    n_positive: int
    n_negative: int
    rates: dict[str, np.ndarray] = field(repr=False)

    @property
    def fn(self) -> np.ndarray:
        return self.n_positive - self.tp

    @property
    def tn(self) -> np.ndarray:
        return self.n_negative - self.fp

    def row(self, threshold: float) -> int:
        """The row that applies ``y_score >= threshold`` (O(log n))."""
        return int(np.searchsorted(-self.thresholds[1:], -threshold, side="right"))

    def at(self, threshold: float) -> dict:
        """What :func:`metrics_at_threshold` returns, read off the sweep."""
        k = self.row(threshold)
        return {
            "threshold": float(threshold),
            "tp": int(self.tp[k]),
            "fp": int(self.fp[k]),
            "fn": int(self.fn[k]),
            "tn": int(self.tn[k]),
        } | {key: float(values[k]) for key, values in self.rates.items()}

    def roc_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """(false-positive rate, true-positive rate) from (0, 0) to (1, 1)."""
        return _ratio(self.fp, self.n_negative), _ratio(self.tp, self.n_positive)

    def pr_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """(recall, precision) at every distinct threshold (rows 1..), highest threshold first."""
        return self.rates["sensitivity"][1:], self.rates["precision"][1:]

    def roc_auc(self) -> float:
        fpr, tpr = self.roc_curve()
        return float(np.trapezoid(tpr, fpr)) if self.n_positive and self.n_negative else np.nan

    def average_precision(self) -> float:
        """Sum over thresholds of (recall step) x precision, as scikit-learn defines it."""
        if not self.n_positive:
            return float("nan")
        recall, precision = self.pr_curve()
        steps = np.diff(np.concatenate([[0.0], recall]))
        return float(np.sum(steps * np.nan_to_num(precision)))


def threshold_sweep(y_true: ArrayLike, y_score: ArrayLike) -> Sweep:
    """Counts at all distinct thresholds in O(n log n): sort once, cumulative sums."""
    y_true, y_score = check_binary(y_true, y_score)
    order = np.argsort(-y_score, kind="stable")
    scores, labels = y_score[order], y_true[order]
    # the last index of each run of tied scores: the row for that score as threshold
    last = np.flatnonzero(np.r_[scores[1:] != scores[:-1], True])
    tp = np.r_[0, np.cumsum(labels)[last]]
    fp = np.r_[0, (last + 1) - tp[1:]]
    n_positive, n_negative = int(labels.sum()), int(len(labels) - labels.sum())
    rates = rates_from_counts(tp, fp, n_positive - tp, n_negative - fp)
    return Sweep(np.r_[np.inf, scores[last]], tp, fp, n_positive, n_negative, rates)


def auc_score(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """ROC AUC; NaN when only one class is present (aggregates must not crash on it)."""
    return threshold_sweep(y_true, y_score).roc_auc()


# --- threshold rules -------------------------------------------------------------------------

THRESHOLD_RULES = ("youden", "max_f1", "spec_at_sens", "sens_at_spec", "fixed")


@dataclass(frozen=True)
class ThresholdChoice:
    """A threshold fitted on one set of predictions (validation), to be applied unchanged."""

    rule: str
    threshold: float
    target: float | None
    fitted_on: str
    n_fitted: int

    def to_dict(self) -> dict:
        return {
            "rule": self.rule,
            "threshold": self.threshold,
            "target": self.target,
            "fitted_on": self.fitted_on,
            "n_fitted": self.n_fitted,
        }


def choose_threshold(
    y_true: ArrayLike,
    y_score: ArrayLike,
    rule: str = "youden",
    target: float | None = None,
    fitted_on: str = "validation",
) -> ThresholdChoice:
    """Fit a threshold rule on these predictions only.

        ``youden``: max sensitivity + specificity - 1; ``max_f1``; ``spec_at_sens``: the highest
        specificity with sensitivity >= ``target``; ``sens_at_spec``: the highest sensitivity with
        specificity >= ``target``; ``fixed``: ``target`` itself. Ties go to the higher threshold
        (fewer positive calls). The value lies halfway between the lowest score called positive and
    the next lower score (``>=`` applies), so it makes exactly the calls the rule chose.
    """
    if rule not in THRESHOLD_RULES:
        raise ValueError(f"threshold rule {rule!r}: choose one of {', '.join(THRESHOLD_RULES)}")
    if rule in ("spec_at_sens", "sens_at_spec", "fixed") and target is None:
        raise ValueError(f"threshold rule {rule!r} needs a target value")
    sweep = threshold_sweep(y_true, y_score)
    n = sweep.n_positive + sweep.n_negative
    if rule == "fixed":
        return ThresholdChoice(rule, float(target), float(target), fitted_on, n)
    if not (sweep.n_positive and sweep.n_negative):
        raise ValueError(
            f"the {fitted_on} predictions hold one class only; a threshold cannot be fitted"
        )
    rates = sweep.rates
    candidates = np.arange(1, len(sweep.thresholds))  # row 0 (nobody positive) is no threshold
    if rule == "youden":
        objective = rates["sensitivity"] + rates["specificity"] - 1
    elif rule == "max_f1":
        objective = np.nan_to_num(rates["f1"], nan=-1.0)
    elif rule == "spec_at_sens":
        feasible = rates["sensitivity"] >= target
        objective = np.where(feasible, rates["specificity"], -1.0)
    else:
        feasible = rates["specificity"] >= target
        objective = np.where(feasible, rates["sensitivity"], -1.0)
    best = candidates[np.argmax(objective[candidates])]  # first maximum = highest threshold
    if objective[best] < 0 and rule in ("spec_at_sens", "sens_at_spec"):
        raise ValueError(f"no threshold reaches the target {target} on the {fitted_on} data")
    # halfway to the next lower score: the same calls here, and a value that survives rounding
    # (a slider's 0.001 step) instead of sitting exactly on one patient's score
    value = sweep.thresholds[best]
    if best + 1 < len(sweep.thresholds):
        value = (value + sweep.thresholds[best + 1]) / 2
    return ThresholdChoice(rule, float(value), target, fitted_on, n)


# --- uncertainty -----------------------------------------------------------------------------

BOOTSTRAP_KEYS = (
    "auc",
    "average_precision",
    "sensitivity",
    "specificity",
    "precision",
    "npv",
    "f1",
    "accuracy",
    "balanced_accuracy",
    "brier",
)


def _midranks(values: np.ndarray) -> np.ndarray:
    """Average ranks (1-based) along the last axis, ties sharing their mean rank."""
    from scipy.stats import rankdata

    return rankdata(values, method="average", axis=-1)


def weighted_metrics(
    y_true: np.ndarray, y_score: np.ndarray, weights: np.ndarray, threshold: float
) -> dict[str, np.ndarray]:
    """Every metric of :data:`BOOTSTRAP_KEYS` for each row of ``weights[B, n]``: how many times
    each patient is drawn in that resample (all ones = the sample itself).

    Sorting happens once, on the sample; a resample is only a weighting of it, so every
    metric is a cumulative sum over the sorted tie groups: O(B n) with no per-resample sort.
    """
    order = np.argsort(-y_score, kind="stable")
    scores, labels, w = y_score[order], y_true[order], weights[:, order].astype(np.float64)
    starts = np.flatnonzero(np.r_[True, scores[1:] != scores[:-1]])
    positives = np.add.reduceat(w * labels, starts, axis=1)  # [B, groups]
    negatives = np.add.reduceat(w * (1 - labels), starts, axis=1)
    cum_pos, cum_neg = np.cumsum(positives, axis=1), np.cumsum(negatives, axis=1)
    n_pos, n_neg = cum_pos[:, -1], cum_neg[:, -1]
    concordant = _concordant_weight(positives, negatives, cum_neg, n_neg)
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = concordant / (n_pos * n_neg)
        called_so_far = cum_pos + cum_neg  # 0 only before any drawn patient: no positives
        precision = cum_pos / np.where(called_so_far > 0, called_so_far, 1.0)
        average_precision = (positives * precision).sum(axis=1) / n_pos
    called = scores >= threshold
    tp, fp = (w * (labels * called)).sum(axis=1), (w * ((1 - labels) * called)).sum(axis=1)
    rates = rates_from_counts(tp, fp, n_pos - tp, n_neg - fp)
    brier = (w * (scores - labels) ** 2).sum(axis=1) / w.sum(axis=1)
    return {
        "auc": auc,
        "average_precision": average_precision,
        **{key: rates[key] for key in RATE_KEYS},
        "brier": brier,
    }


def _concordant_weight(positives, negatives, cum_neg, n_neg) -> np.ndarray:
    """Weighted count of (positive, negative) pairs ranked right, ties half: a positive beats
    the negatives scored below its tie group and ties half of its own ([B, groups] inputs)."""
    return (positives * (n_neg[:, None] - cum_neg + 0.5 * negatives)).sum(axis=1)


def auc_pair_counts(
    y_true: np.ndarray, y_score: np.ndarray, weights: np.ndarray, strata: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """``(concordant, pairs)`` per row of ``weights[B, n]``: the weighted (positive,
    negative) pairs ranked right (ties half) and all such pairs. With ``strata`` (a label per
    patient) only pairs within one stratum count: the fold-stratified AUC of pooled k-fold
    predictions, whose folds' models put their scores on different scales."""
    labels = [None] if strata is None else np.unique(strata)
    concordant, pairs = np.zeros(len(weights)), np.zeros(len(weights))
    for label in labels:
        rows = slice(None) if label is None else np.flatnonzero(strata == label)
        y, s, w = y_true[rows], y_score[rows], weights[:, rows].astype(np.float64)
        order = np.argsort(-s, kind="stable")
        s, y, w = s[order], y[order], w[:, order]
        starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
        positives = np.add.reduceat(w * y, starts, axis=1)
        negatives = np.add.reduceat(w * (1 - y), starts, axis=1)
        cum_neg = np.cumsum(negatives, axis=1)
        concordant += _concordant_weight(positives, negatives, cum_neg, cum_neg[:, -1])
        pairs += positives.sum(axis=1) * cum_neg[:, -1]
    return concordant, pairs


def stratified_auc(y_true: ArrayLike, y_score: ArrayLike, strata: ArrayLike) -> float:
    """ROC AUC over the (positive, negative) pairs within each stratum: the pair-weighted mean
    of the strata's AUCs; NaN when no stratum holds both classes."""
    y_true, y_score = check_binary(y_true, y_score)
    concordant, pairs = auc_pair_counts(
        y_true, y_score, np.ones((1, len(y_true))), np.asarray(strata)
    )
    return float(concordant[0] / pairs[0]) if pairs[0] else float("nan")


def resampled_auc(
    y_true: ArrayLike,
    y_score: ArrayLike,
    n_resamples: int,
    seed: int,
    strata: ArrayLike | None = None,
) -> np.ndarray:
    """The AUC (``strata``: stratified) of each patient-level bootstrap resample of
    :func:`~nsclc_engine.stats.bootstrap.bootstrap_weights`; NaN where a resample has no
    pair. Two scores of the same patients resampled with one seed are paired."""
    y_true, y_score = check_binary(y_true, y_score)
    strata = None if strata is None else np.asarray(strata)
    values = []
    for counts in bootstrap_weights(len(y_true), n_resamples, seed):
        concordant, pairs = auc_pair_counts(y_true, y_score, counts, strata)
        with np.errstate(divide="ignore", invalid="ignore"):
            values.append(np.where(pairs > 0, concordant / np.where(pairs > 0, pairs, 1), np.nan))
    return np.concatenate(values)


def bootstrap_metrics(
    y_true: ArrayLike,
    y_prob: ArrayLike,
    threshold: float = 0.5,
    n_resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    groups: ArrayLike | None = None,
    strata: ArrayLike | None = None,
) -> dict:
    """Patient-level percentile bootstrap CIs of :data:`BOOTSTRAP_KEYS` (threshold metrics at
    ``y_prob >= threshold``), vectorised over resamples.

    ``groups`` (a patient id per row) makes it a cluster bootstrap: patients are drawn and each
    brings all its rows. Pooled k-fold validation predictions hold a patient once per fold it
    validated in; drawing rows as if independent would shrink the CIs.

    Policy for resamples that hold a single class: they are counted (``n_single_class``) and
    excluded from every metric, so all CIs come from the same resamples. A metric undefined in
    a kept resample (precision with no positive call) is left out of that metric only.
    ``strata`` (a label per row: the k-fold model that scored it) makes the AUC
    fold-stratified (:func:`auc_pair_counts`); the other metrics pool the rows as given, so
    pass probabilities recalibrated per fold.
    Returns ``{metric: {"value", "ci_low", "ci_high"}, "n_resamples", "n_single_class"}``.
    """
    y_true, y_prob = check_binary(y_true, y_prob, "y_prob")
    n = len(y_true)
    if n == 0:
        raise ValueError("no predictions to bootstrap")
    if strata is not None:
        strata = np.asarray(strata)
        if strata.shape != y_true.shape:
            raise ValueError(f"strata has shape {strata.shape}; expected one per row ({n})")

    def measure(weights: np.ndarray) -> dict[str, np.ndarray]:
        values = weighted_metrics(y_true, y_prob, weights, threshold)
        if strata is not None:
            concordant, pairs = auc_pair_counts(y_true, y_prob, weights, strata)
            with np.errstate(divide="ignore", invalid="ignore"):
                values["auc"] = concordant / pairs
        return values

    point = measure(np.ones((1, n)))
    if groups is None:
        row_group = np.arange(n)
    else:
        groups = np.asarray(groups)
        if groups.shape != y_true.shape:
            raise ValueError(f"groups has shape {groups.shape}; expected one per row ({n})")
        row_group = np.unique(groups, return_inverse=True)[1].ravel()
    n_groups = int(row_group.max()) + 1
    collected: dict[str, list[np.ndarray]] = {key: [] for key in BOOTSTRAP_KEYS}
    single_class = 0
    # a block's weights per row are at most 4 M cells, to bound memory for large n
    cells = max(n_groups, 4_000_000 * n_groups // n)
    for counts in bootstrap_weights(n_groups, n_resamples, seed, cells):
        weights = counts[:, row_group]
        n_pos = weights @ y_true
        n_rows = weights.sum(axis=1)
        both = (n_pos > 0) & (n_pos < n_rows)
        single_class += int((~both).sum())
        values = measure(weights[both])
        for key in BOOTSTRAP_KEYS:
            collected[key].append(values[key])
    alpha = (1 - level) / 2
    result: dict = {}
    for key in BOOTSTRAP_KEYS:
        values = np.concatenate(collected[key])
        values = values[np.isfinite(values)]
        low, high = np.quantile(values, [alpha, 1 - alpha]) if len(values) else (np.nan, np.nan)
        result[key] = {"value": float(point[key][0]), "ci_low": float(low), "ci_high": float(high)}
    result["threshold"] = float(threshold)
    result["n_resamples"] = n_resamples
    result["n_single_class"] = single_class
    return result


def bootstrap_sweep(
    y_true: ArrayLike,
    y_score: ArrayLike,
    n_resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    groups: ArrayLike | None = None,
) -> dict[str, np.ndarray]:
    """The percentile bootstrap CIs of every rate of :data:`RATE_KEYS` at every row of
    :func:`threshold_sweep` at once: ``{rate: array[rows, 2]}`` (low, high). Row ``k`` is
    the same threshold as the sweep's; each row's CI equals :func:`bootstrap_metrics` at that
    threshold with the same ``seed`` and ``groups`` (the same resamples, the same policy for
    single-class resamples and undefined rates). One sort, then cumulative counts over the
    tie groups of each resample: O(B n) for every threshold together."""
    y_true, y_score = check_binary(y_true, y_score)
    n = len(y_true)
    if n == 0:
        raise ValueError("no predictions to bootstrap")
    row_group = (
        np.arange(n) if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1]
    )
    row_group = np.asarray(row_group).ravel()
    n_groups = int(row_group.max()) + 1
    order = np.argsort(-y_score, kind="stable")
    scores, labels = y_score[order], y_true[order]
    starts = np.flatnonzero(np.r_[True, scores[1:] != scores[:-1]])
    collected: dict[str, list[np.ndarray]] = {key: [] for key in RATE_KEYS}
    cells = max(n_groups, 4_000_000 * n_groups // n)
    for counts in bootstrap_weights(n_groups, n_resamples, seed, cells):
        w = counts[:, row_group][:, order].astype(np.float64)
        positives = np.add.reduceat(w * labels, starts, axis=1)
        negatives = np.add.reduceat(w * (1 - labels), starts, axis=1)
        zero = np.zeros((len(w), 1))
        tp = np.concatenate([zero, np.cumsum(positives, axis=1)], axis=1)  # [B, rows]
        fp = np.concatenate([zero, np.cumsum(negatives, axis=1)], axis=1)
        n_pos, n_neg = tp[:, -1:], fp[:, -1:]
        both = ((n_pos > 0) & (n_neg > 0)).ravel()
        rates = rates_from_counts(
            tp[both], fp[both], n_pos[both] - tp[both], n_neg[both] - fp[both]
        )
        for key in RATE_KEYS:
            collected[key].append(rates[key])
    alpha = (1 - level) / 2
    result = {}
    for key in RATE_KEYS:
        values = np.concatenate(collected[key])
        values[~np.isfinite(values)] = np.nan
        with warnings.catch_warnings():  # a row with no defined value in any resample: NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            result[key] = np.nanquantile(values, [alpha, 1 - alpha], axis=0).T
    return result


def delong_test(y_true: ArrayLike, score_a: ArrayLike, score_b: ArrayLike) -> dict:
    """DeLong's test of two correlated ROC AUCs on the same patients (fast midrank form of
    Sun & Xu 2014): the AUCs, their difference (a - b) with its standard error, 95 % CI,
    z and the two-sided p-value."""
    from scipy.stats import norm

    y_true, score_a = check_binary(y_true, score_a, "score_a")
    _, score_b = check_binary(y_true, score_b, "score_b")
    positive, negative = y_true == 1, y_true == 0
    m, n = int(positive.sum()), int(negative.sum())
    if m < 2 or n < 2:
        raise ValueError("DeLong's test needs at least two patients of each class")
    scores = np.stack([score_a, score_b])
    all_ranks = _midranks(scores)
    v10 = (all_ranks[:, positive] - _midranks(scores[:, positive])) / n
    v01 = 1.0 - (all_ranks[:, negative] - _midranks(scores[:, negative])) / m
    aucs = v10.mean(axis=1)
    covariance = np.cov(v10) / m + np.cov(v01) / n
    variance = covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]
    difference = float(aucs[0] - aucs[1])
    se = float(np.sqrt(max(variance, 0.0)))
    z = difference / se if se > 0 else (0.0 if difference == 0 else np.inf * np.sign(difference))
    return {
        "auc_a": float(aucs[0]),
        "auc_b": float(aucs[1]),
        "difference": difference,
        "se": se,
        "ci_low": difference - 1.959964 * se,
        "ci_high": difference + 1.959964 * se,
        "z": float(z),
        "p_value": float(2 * norm.sf(abs(z))),
    }
