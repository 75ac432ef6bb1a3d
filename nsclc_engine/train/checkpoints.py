"""The checkpoint protocol of one fold: a kill after any write resumes to the same end state.

After each epoch the main process writes, in this order:

1. where the epoch improved, its model to ``checkpoint_best[_fold<k>].pending.pt``;
2. ``checkpoint_last[_fold<k>].pt``, the commit point: model, optimiser, scheduler, the task's
   state (the Cox risk bank), the random states, every epoch line so far and the best epoch;
3. the pending best renamed over ``checkpoint_best[_fold<k>].pt``.

Files 1 and 2 are atomic writes (:func:`nsclc_engine.atomic.atomic_path`), step 3 one rename.
:func:`recover`, run before a fold resumes, completes or undoes step 3: a pending best of the
epoch the committed last names as best is renamed in, any other is deleted. So
``checkpoint_best`` always holds the epoch that ``checkpoint_last`` names as best, and a resumed
fold repeats exactly the epochs whose commit was lost, from the same random states. Files
derived from the checkpoint (``history.jsonl``, the status) are rewritten from it on resume.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np

from nsclc_engine.atomic import atomic_path, fault_point, fsync_folder, remove_stale_temporaries


def pending_path(best_path: Path) -> Path:
    return best_path.with_name(f"{best_path.stem}.pending.pt")


def save(payload: dict, path: Path) -> None:
    """``torch.save`` through :func:`nsclc_engine.atomic.atomic_path`."""
    import torch

    with atomic_path(path) as temporary:
        torch.save(payload, temporary)


def commit(last_path: Path, best_path: Path, last: dict, best: dict | None) -> None:
    """Write one epoch's checkpoints in the protocol's order (``best``: None where the epoch
    did not improve)."""
    if best is not None:
        save(best, pending_path(best_path))
    save(last, last_path)
    if best is not None:
        _promote(best_path)


def _promote(best_path: Path) -> None:
    fault_point("promoting", best_path.name)
    os.replace(pending_path(best_path), best_path)
    fsync_folder(best_path.parent)


def recover(last_path: Path, best_path: Path) -> dict | None:
    """The committed ``checkpoint_last`` (``None``: the fold starts afresh), after clearing dead
    writers' temporaries and making ``checkpoint_best`` agree with it."""
    import torch

    remove_stale_temporaries(last_path.parent)
    last = (
        torch.load(last_path, map_location="cpu", weights_only=True) if last_path.exists() else None
    )
    pending = pending_path(best_path)
    if pending.exists():
        epoch = torch.load(pending, map_location="cpu", weights_only=True, mmap=True)["epoch"]
        if last is not None and last.get("best_epoch") == epoch:
            _promote(best_path)
        else:
            pending.unlink()
    return last


def random_states() -> dict:
    """The global random states (Python, NumPy's legacy, torch's CPU) as plain Python values,
    for a checkpoint and for gathering across DDP ranks."""
    import torch

    name, keys, position, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    return {
        "python": random.getstate(),
        "numpy": [name, keys.tolist(), int(position), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state().tolist(),
    }


def restore_random_states(states: dict) -> None:
    import torch

    random.setstate(states["python"])
    name, keys, position, has_gauss, cached = states["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), position, has_gauss, cached))  # noqa: NPY002
    torch.set_rng_state(torch.tensor(states["torch"], dtype=torch.uint8))
