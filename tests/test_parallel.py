"""parallel_map: results in order, serial or in processes, and its progress callback."""

import pytest

from nsclc_engine.parallel import parallel_map


@pytest.mark.parametrize("workers", [1, 2])
def test_results_in_order_and_progress_reaches_one(workers):
    seen = []
    results = parallel_map(
        abs, list(range(-50, 0)), workers, "t", "x", False, on_progress=seen.append
    )
    assert results == list(range(50, 0, -1))
    assert seen == sorted(seen) and seen[-1] == 1.0
    assert 10 <= len(seen) <= 26  # about every 5 %, not once per task
