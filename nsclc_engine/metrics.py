"""Discrimination metrics shared by the stages (the full evaluation engine builds on these).

Conventions follow scikit-learn: ``y_true``, ``y_score``; higher risk = earlier event.
"""

from __future__ import annotations

import numpy as np


def harrell_c_index(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float:
    """Harrell's concordance index for right-censored data.

    A pair (i, j) is comparable when ``time[i] < time[j]`` and ``event[i]`` is 1; it is
    concordant when ``risk[i] > risk[j]``; tied risks count one half. Raises ``ValueError``
    when no pair is comparable. O(n^2) memory in chunks of rows; fine for a few thousand
    patients.
    """
    time = np.asarray(time, dtype=np.float64)
    event = np.asarray(event).astype(bool)
    risk = np.asarray(risk, dtype=np.float64)
    if not (time.shape == event.shape == risk.shape) or time.ndim != 1:
        raise ValueError(
            f"time, event and risk must be 1-d arrays of one length; got shapes "
            f"{time.shape}, {event.shape}, {risk.shape}"
        )
    if np.isnan(risk).any() or np.isnan(time).any():
        raise ValueError("time and risk must not contain NaN")
    concordant = 0.0
    comparable = 0
    rows = np.flatnonzero(event)
    for start in range(0, len(rows), 1024):
        chunk = rows[start : start + 1024]
        later = time[None, :] > time[chunk, None]
        comparable += int(later.sum())
        difference = risk[chunk, None] - risk[None, :]
        concordant += float(
            ((difference > 0) & later).sum() + 0.5 * ((difference == 0) & later).sum()
        )
    if comparable == 0:
        raise ValueError("no comparable pair: every patient is censored or all times are equal")
    return concordant / comparable


def metrics_at_threshold(y_true: np.ndarray, y_prob: np.ndarray, threshold: float = 0.5) -> dict:
    """Confusion counts and accuracy, sensitivity, specificity, F1 at ``y_prob >= threshold``.

    Positive class = 1. Rates whose denominator is zero are NaN.
    """
    y_true = np.asarray(y_true).astype(int)
    predicted = np.asarray(y_prob) >= threshold
    tp = int(np.sum(predicted & (y_true == 1)))
    fp = int(np.sum(predicted & (y_true == 0)))
    fn = int(np.sum(~predicted & (y_true == 1)))
    tn = int(np.sum(~predicted & (y_true == 0)))

    def ratio(a: float, b: float) -> float:
        return a / b if b else float("nan")

    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "accuracy": ratio(tp + tn, tp + tn + fp + fn),
        "sensitivity": ratio(tp, tp + fn),
        "specificity": ratio(tn, tn + fp),
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
    }


def auc_score(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """ROC AUC; NaN when only one class is present (aggregates must not crash on it)."""
    from sklearn.metrics import roc_auc_score

    y_true = np.asarray(y_true).astype(int)
    if len(np.unique(y_true)) < 2:
        return float("nan")
    return float(roc_auc_score(y_true, y_score))


def bootstrap_auc_ci(
    y_true: np.ndarray, y_score: np.ndarray, n_resamples: int = 2000, seed: int = 0
) -> dict:
    """Patient-level percentile bootstrap 95 % CI of the AUC.

    Resamples holding a single class are skipped and counted (``n_single_class``).
    """
    from sklearn.metrics import roc_auc_score

    y_true = np.asarray(y_true).astype(int)
    y_score = np.asarray(y_score, dtype=np.float64)
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, len(y_true), size=(n_resamples, len(y_true)))
    values = []
    single_class = 0
    for sample in indices:
        if y_true[sample].min() == y_true[sample].max():
            single_class += 1
            continue
        values.append(roc_auc_score(y_true[sample], y_score[sample]))
    low, high = np.percentile(values, [2.5, 97.5]) if values else (float("nan"),) * 2
    return {
        "auc": auc_score(y_true, y_score),
        "ci_low": float(low),
        "ci_high": float(high),
        "n_resamples": n_resamples,
        "n_single_class": single_class,
    }
