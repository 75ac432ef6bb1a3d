"""Atomic file writes and JSON-ready values: the one place the engine writes files from.

Every writer goes through :func:`atomic_path`: the bytes go to a temporary file beside the
target, named by process, thread and a random part (so sessions of one Streamlit process, or
two processes, never share one), and are renamed over the target only when complete. A reader
sees the old file or the new one, never half of one; a killed writer leaves the old file.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterator
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
        f".{path.name}.{os.getpid()}.{threading.get_ident()}.{uuid.uuid4().hex[:8]}.tmp"
    )
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


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
