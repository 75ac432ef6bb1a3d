"""The patient-level bootstrap as weights: each resample is a count per patient, so a metric
of all resamples is one matrix product instead of a loop (metrics and survival both use it)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def bootstrap_weights(
    n: int, n_resamples: int, seed: int, max_cells: int = 2_000_000
) -> Iterator[np.ndarray]:
    """Blocks of ``(size, n)`` integer arrays, ``[b, i]`` = how often resample ``b`` draws
    patient ``i``; at most ``max_cells`` cells a block. The same seed gives the same draws,
    however they are blocked."""
    rng = np.random.default_rng(seed)
    block = max(1, min(n_resamples, max_cells // max(n, 1)))
    for start in range(0, n_resamples, block):
        size = min(block, n_resamples - start)
        draws = rng.integers(0, n, size=(size, n))
        yield np.bincount(
            (draws + n * np.arange(size)[:, None]).ravel(), minlength=size * n
        ).reshape(size, n)
