"""One feature vector per patient from a frozen pretrained encoder, cached.

The volumes come from the preprocessing stage (its cache, its keys); the vectors are kept in a
diskcache store under ``<cache>/features``, keyed by the volume's cache key, the weights
file's SHA-256, the recipe and the network, so a second extraction with the same file is all
hits and another file or recipe never reads a stale vector. Vectors are stored as raw
little-endian float32 bytes, and a pickled row is never loaded (:mod:`nsclc_engine.diskstore`).
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from nsclc_engine.diskstore import open_cache
from nsclc_engine.features.recipes import Recipe
from nsclc_engine.preprocess.cache import VolumeCache
from nsclc_engine.preprocess.volumes import preprocess_cohort
from nsclc_engine.train.model import as_encoder, build_model, parameter_count
from nsclc_engine.train.weights import LoadReport, load_pretrained

log = logging.getLogger(__name__)

FEATURES_VERSION = 1  # bump when the extraction changes, so old vectors miss


@dataclass
class Extraction:
    features: pd.DataFrame  # one row per patient (index patient_id), one column per feature
    failed: pd.DataFrame  # patient_id, reason
    weights: LoadReport
    hits: int  # vectors read from the store rather than computed
    parameters: int  # the encoder's


def feature_key(volume_key: str, weights_sha256: str, recipe: str, network: str) -> str:
    text = f"{volume_key}|{weights_sha256}|{recipe}|{network}|v{FEATURES_VERSION}"
    return hashlib.sha256(text.encode()).hexdigest()


class FeatureStore:
    """Vectors by key, in a diskcache (SQLite) store, as raw float32 bytes."""

    def __init__(self, directory: str | os.PathLike):
        self.index = open_cache(Path(directory) / "features")

    def get(self, key: str) -> np.ndarray | None:
        raw = self.index.get(key)
        if not isinstance(raw, bytes) or len(raw) % 4:
            return None
        return np.frombuffer(raw, dtype="<f4").copy()

    def put(self, key: str, vector: np.ndarray) -> None:
        self.index.set(key, np.asarray(vector, dtype="<f4").tobytes())

    def close(self) -> None:
        self.index.close()

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def extract_features(
    cohort_dir: str | os.PathLike,
    recipe: Recipe,
    weights: str | os.PathLike,
    network: str,
    cache_dir: str | os.PathLike,
    device: str = "cpu",
    batch_size: int = 8,
    show_progress: bool = False,
) -> Extraction:
    """The encoder's feature vector for every patient of the cohort whose volume could be
    made; the others are listed in ``failed`` with the reason."""
    import torch

    volumes = preprocess_cohort(cohort_dir, recipe.preprocess, cache_dir, show_progress=False)
    failed = {
        row.patient_id: f"preprocessing failed: {row.error}"
        for row in volumes[volumes.status == "failed"].itertuples()
    }
    ok = volumes[volumes.status != "failed"]
    model = build_model(network, input_shape=recipe.preprocess.out_shape)
    report = load_pretrained(model, weights, network)
    encoder = as_encoder(model, network).to(device)
    keys = {
        row.patient_id: feature_key(row.key, report.sha256, recipe.name, network)
        for row in ok.itertuples()
    }
    vectors: dict[str, np.ndarray] = {}
    with FeatureStore(cache_dir) as store, VolumeCache(cache_dir) as cache:
        for patient_id, key in keys.items():
            vector = store.get(key)
            if vector is not None:
                vectors[patient_id] = vector
        hits = len(vectors)
        todo = []
        for row in ok.itertuples():
            entry = None if row.patient_id in vectors else cache.get(row.key)
            if entry is not None:
                todo.append((row.patient_id, entry))
            elif row.patient_id not in vectors:
                failed[row.patient_id] = "its cached volume vanished or is corrupt; run again"
        with torch.inference_mode():
            for start in range(0, len(todo), batch_size):
                chunk = todo[start : start + batch_size]
                images = [recipe.network_input(entry.load(mmap=False)[0]) for _, entry in chunk]
                batch = torch.from_numpy(np.stack(images)[:, None]).to(device)
                output = encoder(batch).float().cpu().numpy()
                for (patient_id, _), vector in zip(chunk, output, strict=True):
                    store.put(keys[patient_id], vector)
                    vectors[patient_id] = vector
                if show_progress:
                    log.info("features: %d of %d computed", start + len(chunk), len(todo))
    order = sorted(vectors)
    frame = pd.DataFrame(
        np.stack([vectors[p] for p in order]) if order else np.empty((0, 0), np.float32),
        index=pd.Index(order, name="patient_id"),
    )
    frame.columns = [f"f{i}" for i in range(frame.shape[1])]
    failures = pd.DataFrame(
        {"patient_id": list(failed), "reason": list(failed.values())}, dtype=str
    )
    return Extraction(frame, failures, report, hits, parameter_count(encoder))
