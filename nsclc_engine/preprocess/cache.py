"""On-disk cache of preprocessed volumes: ``.npy`` arrays (memory-mappable) + a diskcache index.

Layout under the cache folder::

    volumes/<patient_id>__<key[:16]>.image.npy   float32 [D, H, W]
    volumes/<patient_id>__<key[:16]>.mask.npy    bool    [D, H, W]
    index/                                       diskcache (SQLite): key -> entry metadata

Arrays are written to a temporary file and renamed into place, and the index entry is added
only after both renames, so a killed writer leaves no entry and a reader never sees half an
array. Each entry records the files' sizes and CRC32s; :meth:`VolumeCache.get` checks them and
drops a corrupt entry (the caller rebuilds it). Why ``.npy`` and not arrays pickled into
diskcache: a memory-mapped ``.npy`` costs data-loader workers no copy and no unpickling
(``benchmarks/bench_preprocess.py`` measures both).
"""

from __future__ import annotations

import json
import logging
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nsclc_engine.atomic import atomic_path, remove_stale_temporaries
from nsclc_engine.diskstore import open_cache, to_json

log = logging.getLogger(__name__)

SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class CacheEntry:
    key: str
    patient_id: str
    image_path: Path
    mask_path: Path
    metadata: dict

    def load(self, mmap: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """``(image, mask)``; memory-mapped read-only by default."""
        mode = "r" if mmap else None
        return np.load(self.image_path, mmap_mode=mode), np.load(self.mask_path, mmap_mode=mode)


class VolumeCache:
    """A process-safe cache of ``(image, mask, metadata)`` per key."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.volumes = self.directory / "volumes"
        self.volumes.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.volumes)  # arrays of writers that died mid-write
        self.index = open_cache(self.directory / "index")  # JSON values, never pickles

    def close(self) -> None:
        self.index.close()

    def __enter__(self) -> VolumeCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _paths(self, key: str, patient_id: str) -> tuple[Path, Path]:
        stem = f"{SAFE_NAME.sub('_', patient_id)}__{key[:16]}"
        return self.volumes / f"{stem}.image.npy", self.volumes / f"{stem}.mask.npy"

    def put(
        self, key: str, patient_id: str, image: np.ndarray, mask: np.ndarray, metadata: dict
    ) -> CacheEntry:
        image_path, mask_path = self._paths(key, patient_id)
        checks = {}
        for name, path, array in (
            ("image", image_path, np.asarray(image, dtype=np.float32)),
            ("mask", mask_path, np.asarray(mask, dtype=bool)),
        ):
            with atomic_path(path) as temporary, open(temporary, "wb") as handle:
                np.save(handle, np.ascontiguousarray(array))
            checks[name] = {"bytes": path.stat().st_size, "crc32": _crc32(path)}
        value = {
            "patient_id": patient_id,
            "image": image_path.name,
            "mask": mask_path.name,
            "shape": list(np.shape(image)),
            "checks": checks,
            "metadata": metadata,
        }
        self.index.set(key, to_json(value))
        return CacheEntry(key, patient_id, image_path, mask_path, metadata)

    def get(self, key: str, verify: bool = True) -> CacheEntry | None:
        """The entry for ``key``, or ``None`` (missing, or corrupt and now removed)."""
        value = self.index.get(key)
        if value is None:
            return None
        value = json.loads(value)
        entry = CacheEntry(
            key,
            value["patient_id"],
            self.volumes / value["image"],
            self.volumes / value["mask"],
            value["metadata"],
        )
        if verify:
            for name, path in (("image", entry.image_path), ("mask", entry.mask_path)):
                problem = _check(path, value["checks"][name])
                if problem:
                    log.warning(
                        "cache entry %s of %s is corrupt (%s); rebuilding it",
                        key[:16],
                        entry.patient_id,
                        problem,
                    )
                    self.index.delete(key)
                    return None
        return entry

    def __len__(self) -> int:
        return len(self.index)


def _crc32(path: Path) -> int:
    checksum = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            checksum = zlib.crc32(chunk, checksum)
    return checksum


def _check(path: Path, expected: dict) -> str:
    if not path.is_file():
        return f"{path.name} is missing"
    if path.stat().st_size != expected["bytes"]:
        return f"{path.name} has {path.stat().st_size} bytes, expected {expected['bytes']}"
    if _crc32(path) != expected["crc32"]:
        return f"{path.name} fails its CRC32 check"
    return ""
