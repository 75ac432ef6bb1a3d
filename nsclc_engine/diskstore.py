"""diskcache stores that never unpickle: values are JSON text, raw bytes or arrays.

diskcache pickles any value or key that is not ``str``, ``bytes`` or a number, and unpickles
a row whose mode says "pickle" on ``get`` and a key marked "not raw" wherever it reads keys
back (iterating, ``peekitem``, ``pop`` of the oldest): a crafted row in a cache folder would
run code. The caches under ``artifacts/`` go through :class:`SafeDisk`, which stores only text
and bytes, treats a pickled row (an older version's entry, or a tampered one) as a miss, so
the caller recomputes and overwrites it, and refuses any key that is not text or bytes: a
pickled key is handed back as its raw bytes, never unpickled.
"""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import PurePath

import diskcache
import numpy as np

log = logging.getLogger(__name__)


class SafeDisk(diskcache.Disk):
    def put(self, key):
        if not isinstance(key, str | bytes):
            raise TypeError(f"a safe cache takes str or bytes keys, not {type(key).__name__}")
        return super().put(key)

    def get(self, key, raw):
        if not raw:
            log.warning("cache %s: a pickled key is read as bytes, not unpickled", self._directory)
            return bytes(key)
        return super().get(key, raw)

    def store(self, value, read, key=diskcache.core.UNKNOWN):
        if not read and not isinstance(value, str | bytes):
            raise TypeError(f"a safe cache stores str or bytes, not {type(value).__name__}")
        return super().store(value, read, key)

    def fetch(self, mode, filename, value, read):
        if mode == diskcache.core.MODE_PICKLE:
            log.warning("cache %s: a pickled entry is ignored and recomputed", self._directory)
            raise OSError("pickled entry refused")  # diskcache's get() answers a miss
        if filename and (os.path.isabs(filename) or ".." in PurePath(filename).parts):
            log.warning("cache %s: an entry naming %s is ignored", self._directory, filename)
            raise OSError("entry outside the cache refused")
        return super().fetch(mode, filename, value, read)


def open_cache(directory: str | os.PathLike) -> diskcache.Cache:
    """A diskcache ``Cache`` at ``directory`` that stores and returns only str and bytes."""
    return diskcache.Cache(str(directory), disk=SafeDisk)


def to_json(value) -> str:
    return json.dumps(value, sort_keys=True)


def arrays_to_bytes(**arrays: np.ndarray) -> bytes:
    """Named arrays as one ``.npz`` blob (loaded back without pickle)."""
    buffer = io.BytesIO()
    np.savez(buffer, **{name: np.asarray(array) for name, array in arrays.items()})
    return buffer.getvalue()


def arrays_from_bytes(blob: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(blob), allow_pickle=False) as loaded:
        return {name: loaded[name] for name in loaded.files}
