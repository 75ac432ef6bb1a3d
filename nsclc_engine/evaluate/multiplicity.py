"""Several p-values shown together: Holm's step-down adjustment and the words a page or report
puts beside them (how many comparisons, raw and adjusted p)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def holm_adjust(p_values: ArrayLike) -> np.ndarray:
    """Holm-adjusted p-values, in the input's order (family-wise error rate).

    Sorted ascending, the i-th smallest of m defined p-values (i from 1) becomes
    ``min(1, max_{j <= i} (m - j + 1) p_(j))``. NaN marks a comparison that was not made: it
    stays NaN and does not count in m. Values outside [0, 1] are refused.
    """
    p = np.asarray(p_values, dtype=float).reshape(-1)
    defined = np.isfinite(p)
    if np.any((p[defined] < 0) | (p[defined] > 1)):
        raise ValueError(f"p_values has values outside [0, 1]: {p[defined].tolist()}")
    adjusted = np.full_like(p, np.nan)
    values = p[defined]
    m = len(values)
    if m == 0:
        return adjusted
    order = np.argsort(values, kind="stable")
    scaled = (m - np.arange(m)) * values[order]
    stepped = np.minimum(1.0, np.maximum.accumulate(scaled))
    result = np.empty(m)
    result[order] = stepped
    adjusted[defined] = result
    return adjusted


def comparisons_note(m: int, what: str = "comparisons") -> str:
    """One sentence: how many p-values are shown together and how they were adjusted."""
    if m <= 1:
        return f"{m} {what.rstrip('s') if m == 1 else what} shown: no adjustment needed."
    return (
        f"{m} {what} shown together: Holm-adjusted p-values (family-wise error rate over the "
        f"{m}) beside the raw ones; read the adjusted ones."
    )
