"""Per-patient explanations of a run, cached on disk under ``<run>/explain`` (diskcache):
keys name the run, its checkpoint as it is now, the patient, the input's bytes and what was
computed, so a retrained run or a rebuilt cohort misses. Values are stored as ``.npz`` bytes
and JSON, never pickles (:mod:`nsclc_engine.diskstore`)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from nsclc_engine.diskstore import arrays_from_bytes, arrays_to_bytes, open_cache, to_json
from nsclc_engine.explain.gradcam import AttributionMap, ExplainConfig, attribute
from nsclc_engine.explain.inference import load_run_model, tta_interval
from nsclc_engine.runs import best_checkpoint

EXPLAIN_VERSION = 1  # bump when a map's computation changes, so cached maps miss


def checkpoint_stamp(run_dir: str | os.PathLike, fold: int) -> str:
    """The fold's best checkpoint as it is now: changes whenever it is rewritten."""
    path = best_checkpoint(Path(run_dir), fold)
    stat = path.stat()
    return f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}"


def result_key(run_dir: str | os.PathLike, fold: int, patient_id: str, what: dict) -> str:
    """Patient-level cache key: the run, its checkpoint as it is now, the patient and ``what``
    was computed (method, layer, target, ...)."""
    payload = {
        "run": Path(run_dir).name,
        "checkpoint": checkpoint_stamp(run_dir, fold),
        "patient": patient_id,
        "version": EXPLAIN_VERSION,
        **what,
    }
    digest = hashlib.sha256(repr(sorted(payload.items())).encode()).hexdigest()
    return f"{patient_id}:{digest[:24]}"


def volume_digest(volume: np.ndarray) -> str:
    """Hash of an input volume's bytes: a rebuilt cohort with the same IDs gets new keys."""
    return hashlib.sha1(np.ascontiguousarray(volume, dtype=np.float32).tobytes()).hexdigest()


def map_key(
    run_dir: str | os.PathLike,
    fold: int,
    patient_id: str,
    config: ExplainConfig,
    volume: np.ndarray,
) -> str:
    layer = config.layer if config.method == "gradcam" else "input"
    what = {"method": config.method, "layer": layer, "target": config.target}
    return result_key(run_dir, fold, patient_id, what | {"input": volume_digest(volume)})


def _cached(run_dir: str | os.PathLike, key: str, compute, encode, decode):
    """``(value, was_cached)`` from the run's ``explain`` cache, computing it on a miss;
    ``encode`` turns a value into str or bytes and ``decode`` back."""
    with open_cache(Path(run_dir) / "explain") as cache:
        stored = cache.get(key)
        if stored is not None:
            return decode(stored), True
        value = compute()
        cache.set(key, encode(value))
    return value, False


def _encode_map(found: AttributionMap) -> bytes:
    fields = {k: v for k, v in asdict(found).items() if k != "scores"}
    text = np.frombuffer(to_json(fields).encode(), dtype=np.uint8)
    return arrays_to_bytes(scores=found.scores, fields=text)


def _decode_map(blob: bytes) -> AttributionMap:
    arrays = arrays_from_bytes(blob)
    fields = json.loads(arrays["fields"].tobytes().decode())
    return AttributionMap(scores=arrays["scores"], **fields)


def explain_patient(
    run_dir: str | os.PathLike,
    fold: int,
    patient_id: str,
    volume: np.ndarray,
    config: ExplainConfig | None = None,
    model=None,
) -> tuple[AttributionMap, bool]:
    """The attribution map of one patient's input ``volume``, from the disk cache under
    ``<run>/explain`` when present; returns ``(map, was_cached)``. ``model``: the loaded model
    (loaded from the run when ``None``)."""

    config = config or ExplainConfig()

    def compute() -> AttributionMap:
        return attribute(model or load_run_model(run_dir, fold), volume, config)

    key = map_key(run_dir, fold, patient_id, config, volume)
    return _cached(run_dir, key, compute, _encode_map, _decode_map)


def patient_uncertainty(
    run_dir: str | os.PathLike,
    fold: int,
    patient_id: str,
    volume: np.ndarray,
    task: str,
    config: ExplainConfig | None = None,
    model=None,
) -> dict:
    """:func:`tta_interval` of one patient, cached like the maps."""
    config = config or ExplainConfig()
    what = {"method": "tta", "samples": config.tta_samples, "seed": config.seed, "task": task}
    what["input"] = volume_digest(volume)
    key = result_key(run_dir, fold, patient_id, what)

    def compute() -> dict:
        loaded = model or load_run_model(run_dir, fold)
        return tta_interval(loaded, volume, task, config.tta_samples, config.seed)

    return _cached(run_dir, key, compute, to_json, json.loads)[0]
