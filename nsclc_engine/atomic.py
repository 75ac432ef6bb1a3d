"""Atomic file writes, locked read-modify-writes and JSON-ready values: the one place the
engine writes files from.

Every writer goes through :func:`atomic_path`: the bytes go to a temporary file beside the
target, named by process, thread and a random part (so sessions of one Streamlit process, or
two processes, never share one), flushed to disk, and renamed over the target only when
complete (then the folder is flushed too). A reader sees the old file or the new one, never
half of one; a killed writer leaves the old file and a temporary that
:func:`remove_stale_temporaries` clears when the folder is next opened. Files that several
writers change (a run's status, its threshold) go through :func:`update_json`, which holds a
lock across threads and processes while it reads, changes and writes.

:func:`fault_point` is a test hook: with ``NSCLC_FAULT=<stage>:<file name>:<n>`` set, the
process kills itself (SIGKILL) at the n-th such point, so tests can crash a writer inside each
window of a write sequence without relying on timing.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; it replaces ``path`` when the block ends without error
    and is removed when it raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(
        f".{path.name}.{os.getpid()}.{threading.get_ident()}.{uuid.uuid4().hex[:8]}{TEMPORARY}"
    )
    try:
        yield temporary
        fault_point("written", path.name)
        _fsync(temporary)
        os.replace(temporary, path)
        fsync_folder(path.parent)
        fault_point("replaced", path.name)
    finally:
        temporary.unlink(missing_ok=True)


TEMPORARY = ".tmp"


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_folder(folder: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename into it) to disk."""
    _fsync(Path(folder))


def swap_folder(new: Path, target: Path) -> None:
    """Put folder ``new`` at ``target`` in one step: the kernel exchanges the two (Linux
    ``renameat2(RENAME_EXCHANGE)``), then ``new`` holds the old build for the caller to
    remove. Without that call, two renames leave ``target`` missing for a moment, never mixed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        try:
            os.rename(new, target)
            fsync_folder(target.parent)
            return
        except OSError as error:  # another build put its folder there first: exchange
            if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
    if not _exchange(new, target):
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(target, old)
        os.rename(new, target)
        os.rename(old, new)
    fsync_folder(target.parent)


def _exchange(a: Path, b: Path) -> bool:
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_cwd, rename_exchange = -100, 2
    return renameat2(at_cwd, os.fsencode(a), at_cwd, os.fsencode(b), rename_exchange) == 0


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporaries that writers which have since died left in ``folder`` (those
    of live processes are being written); returns what was removed."""
    removed = []
    for path in Path(folder).glob(f".*{TEMPORARY}"):
        if dead_temporary(path):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def dead_temporary(path: Path) -> bool:
    """Whether ``path`` is a temporary of :func:`atomic_path` whose writer has died."""
    if not (path.name.startswith(".") and path.name.endswith(TEMPORARY)):
        return False
    parts = path.name[: -len(TEMPORARY)].rsplit(".", 3)
    return len(parts) == 4 and parts[1].isdigit() and not process_exists(int(parts[1]))


def process_exists(pid: int) -> bool:
    """Whether a process with this pid exists (it may since be another one)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_held_locks: set[int] = set()


def hold_lock_descriptor(descriptor: int) -> None:
    """Register a descriptor that carries a lock, so that forked children (process pools,
    data-loader workers) close their copy: an flock lasts until every copy is closed, and a
    child outliving a killed parent would otherwise keep the lock for ever."""
    _held_locks.add(descriptor)


def release_lock_descriptor(descriptor: int) -> None:
    _held_locks.discard(descriptor)
    os.close(descriptor)


def _close_inherited_locks() -> None:
    for descriptor in list(_held_locks):
        try:
            os.close(descriptor)
        except OSError:
            pass
    _held_locks.clear()


os.register_at_fork(after_in_child=_close_inherited_locks)


@contextmanager
def locked(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock for ``path`` (on ``.<name>.lock`` beside it) across threads and
    processes: each call locks a descriptor of its own (``flock``), released when the block
    ends or the process dies."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    hold_lock_descriptor(descriptor)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        release_lock_descriptor(descriptor)  # releases the lock


def update_json(path: str | os.PathLike, change: Callable[[dict], dict]) -> dict:
    """Read the JSON object at ``path`` (``{}`` where absent), apply ``change`` and write the
    result atomically, all under :func:`locked`, so concurrent updates are never lost."""
    path = Path(path)
    with locked(path):
        current = json.loads(path.read_text()) if path.exists() else {}
        updated = change(current)
        write_json(path, updated)
    return updated


_faults: Counter = Counter()
FAULT_VARIABLE = "NSCLC_FAULT"


def fault_point(stage: str, name: str) -> None:
    """Test hook (see the module docstring): SIGKILL this process at the chosen point."""
    spec = os.environ.get(FAULT_VARIABLE)
    if not spec:
        return
    wanted_stage, wanted_name, nth = spec.rsplit(":", 2)
    if (stage, name) == (wanted_stage, wanted_name):
        _faults[stage, name] += 1
        if _faults[stage, name] == int(nth):
            os.kill(os.getpid(), signal.SIGKILL)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` so that a reader never sees half a file."""
    with atomic_path(path) as temporary:
        temporary.write_text(text)


def to_jsonable(value: Any) -> Any:
    """A JSON-ready copy: arrays to lists, NumPy scalars to Python numbers, paths to strings,
    tuples to lists; non-finite floats stay (``json`` writes them as NaN/Infinity)."""
    if isinstance(value, dict):
        return {key: to_jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def json_line(payload: Any) -> str:
    """``payload`` as one line of JSON (a ``.jsonl`` record), newline included."""
    return json.dumps(to_jsonable(payload)) + "\n"


def write_json(path: str | os.PathLike, payload: Any) -> None:
    """Write ``payload`` as indented JSON, atomically."""
    write_text_atomic(path, json.dumps(to_jsonable(payload), indent=2) + "\n")
