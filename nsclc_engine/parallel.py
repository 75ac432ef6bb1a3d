"""One way to map a function over patients or files: in processes when it pays, with a bar."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from tqdm import tqdm


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def worker_count(requested: int, n_tasks: int, parallel_min: int = 2) -> int:
    """Processes to use: ``requested`` (0 = all available cores), 1 below ``parallel_min`` tasks."""
    if requested == 1 or n_tasks < parallel_min:
        return 1
    available = available_cores()
    return max(1, min(requested or available, available, n_tasks))


def parallel_map(
    function: Callable[[Any], Any],
    tasks: Sequence[Any],
    workers: int,
    description: str,
    unit: str,
    show_progress: bool = True,
    chunksize: int = 1,
    on_progress: Callable[[float], None] | None = None,
) -> list[Any]:
    """``[function(task) for task in tasks]``, in ``workers`` processes when more than one,
    in order, with a tqdm progress bar. ``function`` must be picklable (module level).
    ``on_progress(fraction done)`` is called about every 5 % (for a job's status file)."""
    results = []
    step = max(1, len(tasks) // 20)

    def done(result: Any) -> None:
        results.append(result)
        bar.update(1)
        if on_progress is not None and (len(results) % step == 0 or len(results) == len(tasks)):
            on_progress(len(results) / len(tasks))

    with tqdm(total=len(tasks), desc=description, unit=unit, disable=not show_progress) as bar:
        if workers > 1:
            with ProcessPoolExecutor(workers) as pool:
                for result in pool.map(function, tasks, chunksize=chunksize):
                    done(result)
        else:
            for task in tasks:
                done(function(task))
    return results
