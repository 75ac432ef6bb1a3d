"""Patient-level splits: stratified train/validation/test and k folds, written once as data.

A split is a mapping ``part -> sorted patient ids`` (``train``, ``validation``, ``test``).
Splits are made with a seed, saved to ``splits.json`` and reloaded, never re-drawn; any
patient in two parts raises (:func:`check_disjoint`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from nsclc_engine.atomic import write_text_atomic

PARTS = ("train", "validation", "test")


@dataclass(frozen=True)
class SplitConfig:
    """The report's protocol: 60/20/20, at least 10 % minority in validation and in test."""

    validation_fraction: float = 0.2
    test_fraction: float = 0.2
    min_minority_fraction: float = 0.1
    folds: int = 0  # 0 = one train/validation/test split; k >= 2 = k-fold cross-validation
    seed: int = 0

    def __post_init__(self) -> None:
        if not (0 < self.validation_fraction < 1 and 0 < self.test_fraction < 1):
            raise ValueError("validation_fraction and test_fraction must be in (0, 1)")
        if self.validation_fraction + self.test_fraction >= 1:
            raise ValueError("validation_fraction + test_fraction must leave patients to train on")
        if self.folds == 1 or self.folds < 0:
            raise ValueError(f"folds={self.folds}: use 0 (no cross-validation) or at least 2")


Split = dict[str, list[str]]


def check_disjoint(split: Mapping[str, Sequence[str]]) -> None:
    """Raise ``ValueError`` naming the patients found in more than one part."""
    seen: dict[str, str] = {}
    for part, patients in split.items():
        for patient_id in patients:
            if patient_id in seen:
                raise ValueError(
                    f"patient {patient_id} is in both {seen[patient_id]!r} and {part!r}: "
                    "splits must be disjoint at patient level"
                )
            seen[patient_id] = part


def _minority_label(labels: np.ndarray) -> int:
    values, counts = np.unique(labels, return_counts=True)
    if len(values) != 2 or not set(values.tolist()) <= {0, 1}:
        raise ValueError(f"splits need the two classes 0 and 1; labels hold {values.tolist()}")
    return int(values[np.argmin(counts)])


def stratified_split(
    patient_ids: Sequence[str], labels: Sequence[int], config: SplitConfig
) -> Split:
    """Train/validation/test with class proportions kept and a minimum minority share.

    Each part's minority count is ``max(round(fraction * n_minority),
    ceil(min_minority_fraction * part size))``; raises when the minority class is too small.
    """
    patient_ids = np.asarray(patient_ids, dtype=object)
    labels = np.asarray(labels).astype(int)
    if len(set(patient_ids)) != len(patient_ids):
        raise ValueError("patient ids must be unique: split patients, not scans")
    minority = _minority_label(labels)
    rng = np.random.default_rng(config.seed)
    by_class = {
        label: list(rng.permutation(np.sort(patient_ids[labels == label]))) for label in (0, 1)
    }
    n_total, n_minority = len(labels), len(by_class[minority])
    split: Split = {part: [] for part in PARTS}
    for part, fraction in (
        ("validation", config.validation_fraction),
        ("test", config.test_fraction),
    ):
        size = round(fraction * n_total)
        minority_count = max(
            round(fraction * n_minority), math.ceil(config.min_minority_fraction * size)
        )
        majority = by_class[1 - minority]
        if minority_count > len(by_class[minority]) or size - minority_count > len(majority):
            raise ValueError(
                f"cannot give the {part} part {size} patients with {minority_count} of the "
                f"minority class: only {n_minority} minority patients in {n_total}"
            )
        split[part] = by_class[minority][:minority_count] + majority[: size - minority_count]
        by_class[minority] = by_class[minority][minority_count:]
        by_class[1 - minority] = majority[size - minority_count :]
    split["train"] = by_class[0] + by_class[1]
    split = {part: sorted(str(p) for p in patients) for part, patients in split.items()}
    check_disjoint(split)
    return split


def kfold_splits(
    patient_ids: Sequence[str], labels: Sequence[int], config: SplitConfig
) -> list[Split]:
    """Stratified k folds: fold i tests on part i; a stratified ``validation_fraction`` of the
    whole cohort is drawn from the other parts for validation; the rest trains.

    Every patient is in the test part of exactly one fold. Folds keep the class proportions
    (stratification) but do not enforce ``min_minority_fraction``.
    """
    from sklearn.model_selection import StratifiedKFold, train_test_split

    order = np.argsort(np.asarray(patient_ids, dtype=str), kind="stable")  # input order is moot
    patient_ids = np.asarray(patient_ids, dtype=object)[order]
    labels = np.asarray(labels).astype(int)[order]
    _minority_label(labels)
    folds = StratifiedKFold(n_splits=config.folds, shuffle=True, random_state=config.seed)
    n_validation = round(config.validation_fraction * len(labels))
    splits = []
    for i, (rest, test) in enumerate(folds.split(patient_ids, labels)):
        if n_validation >= len(rest) - 1:
            raise ValueError(f"{config.folds} folds leave no patient to train on")
        train, validation = train_test_split(
            patient_ids[rest],
            test_size=n_validation,
            stratify=labels[rest],
            random_state=config.seed + i,
        )
        split = {
            "train": sorted(train),
            "validation": sorted(validation),
            "test": sorted(patient_ids[test]),
        }
        check_disjoint(split)
        splits.append(split)
    return splits


def make_splits(
    patient_ids: Sequence[str], labels: Sequence[int], config: SplitConfig
) -> list[Split]:
    """One split, or ``config.folds`` of them."""
    if config.folds >= 2:
        return kfold_splits(patient_ids, labels, config)
    return [stratified_split(patient_ids, labels, config)]


def labels_fingerprint(patient_ids: Sequence[str], labels: Sequence[int]) -> str:
    """Hash of the sorted (patient, label) pairs the splits were stratified on."""
    pairs = sorted(zip((str(p) for p in patient_ids), (int(v) for v in labels), strict=True))
    return hashlib.sha256(json.dumps(pairs).encode()).hexdigest()


def save_splits(
    path: str | os.PathLike,
    splits: list[Split],
    config: SplitConfig,
    label: str,
    labels_hash: str = "",
) -> None:
    payload = {
        "label": label,
        "labels_hash": labels_hash,
        "config": asdict(config),
        "splits": splits,
    }
    write_text_atomic(path, json.dumps(payload, indent=2) + "\n")


def load_splits(path: str | os.PathLike) -> tuple[list[Split], SplitConfig, str, str]:
    """``(splits, config, label name, labels hash)`` from a ``splits.json``."""
    payload = json.loads(Path(path).read_text())
    splits = payload["splits"]
    for split in splits:
        check_disjoint(split)
    config = SplitConfig(**payload["config"])
    return splits, config, payload["label"], payload.get("labels_hash", "")


def splits_for(
    path: str | os.PathLike,
    patient_ids: Sequence[str],
    labels: Sequence[int],
    config: SplitConfig,
    label: str,
) -> list[Split]:
    """Reload ``path`` when it exists (checking it fits), else make the splits and write them."""
    path = Path(path)
    labels_hash = labels_fingerprint(patient_ids, labels)
    if path.exists():
        splits, saved_config, saved_label, saved_hash = load_splits(path)
        if saved_config != config or saved_label != label or saved_hash != labels_hash:
            raise ValueError(
                f"{path} was made for another cohort, label values or split config; delete it "
                "to make new splits (it is never re-drawn silently)"
            )
        return splits
    splits = make_splits(patient_ids, labels, config)
    save_splits(path, splits, config, label, labels_hash)
    return splits


def split_table(split: Mapping[str, Sequence[str]], labels: Mapping[str, int]) -> pd.DataFrame:
    """The report's Table 1: per part, total, minority count and minority %."""
    all_labels = np.array([labels[p] for part in split.values() for p in part])
    minority = _minority_label(all_labels)
    rows = []
    for part in PARTS:
        values = np.array([labels[p] for p in split.get(part, [])])
        count = int((values == minority).sum())
        percent = 100.0 * count / len(values) if len(values) else np.nan
        rows.append(
            {
                "split": part,
                "total": len(values),
                "minority_count": count,
                "minority_percent": percent,
            }
        )
    return pd.DataFrame(rows)
