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
