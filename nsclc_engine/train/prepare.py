"""A run's data: the cohort (the demo is built if absent), the preprocessing cache, labels."""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from nsclc_engine.runs import has_splits
from nsclc_engine.train.config import TrainConfig


@dataclass
class PreparedData:
    cohort_dir: Path
    cache_dir: Path
    labels: dict[str, int]
    image_paths: dict[str, Path]
    preprocess: dict
    times: dict[str, float]  # survival_time_days per patient


def source_key(dicom: Path, clinical: Path) -> str:
    """The built cohort's cache key: the contents of the sources as the file system states
    them (every file's path, size and modification time, and the clinical file's), so adding,
    removing or changing a file builds a new cohort, as the volume cache does for volumes."""
    from nsclc_engine.cohort.dicom_io import list_files

    if not dicom.is_dir() or not clinical.is_file():
        raise ValueError(f"--dicom {dicom} must be a folder and --clinical {clinical} a file")
    digest = hashlib.sha256()
    for path in [*list_files(dicom), str(clinical.resolve())]:
        stat = Path(path).stat()
        digest.update(f"{Path(path).resolve()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def exclusions_digest(excluded: dict[str, str]) -> str:
    """Names the cohort built without these patients (another set builds another one)."""
    return hashlib.sha256("\n".join(sorted(excluded)).encode()).hexdigest()[:12]


EXCLUSIONS_FILE = "review_exclusions.json"


def exclusions_now(
    config: TrainConfig, artifacts: Path, images_under: str | None = None
) -> dict[str, str]:
    """The reviewers' exclusions in force now for ``config``'s data source (patient -> why);
    none without a review database. ``config`` is a run's config dataclass (a training or a
    frozen-feature run); its data source (``review.store.source_of``) names the notes that
    apply. ``images_under``: for a run on an already built cohort folder, the folder holding
    its CT series; the notes of every DICOM source folder that contains it apply."""
    from nsclc_engine.paths import review_database_exists

    if not review_database_exists(artifacts):
        return {}
    from nsclc_engine.review.store import exclusions, exclusions_in, notes, review_url, source_of

    url = review_url(artifacts)
    if images_under is None:
        return exclusions(url, source_of(asdict(config)))
    frame = notes(url)
    images = Path(images_under).resolve()
    inside = frame.source.map(
        lambda source: source != "demo" and images.is_relative_to(Path(source))
    )
    return exclusions_in(frame[inside.astype(bool)])


def run_exclusions(
    run_dir: Path, config: TrainConfig, artifacts: Path, images_under: str | None = None
) -> dict[str, str]:
    """The reviewers' exclusions a run trains with (:func:`exclusions_now` when the run first
    prepares its data), then kept in the run folder, so that a resume, the other DDP ranks and
    a later test scoring use the same cohort whatever was flagged or withdrawn since. A run
    that had split its patients before reviews existed keeps none."""
    from nsclc_engine.atomic import write_json

    path = Path(run_dir) / EXCLUSIONS_FILE
    if path.is_file():
        return json.loads(path.read_text())
    excluded = {}
    if not has_splits(Path(run_dir)):
        excluded = exclusions_now(config, artifacts, images_under)
    write_json(path, excluded)
    return excluded


# prepare_data's results kept while a search worker runs its trials (reuse_prepared_data)
_reused: dict[str, PreparedData] | None = None


@contextmanager
def reuse_prepared_data() -> Iterator[None]:
    """Within the block, :func:`prepare_data` checks the sources, the cohort and the cache
    once per data setting and hands later calls a copy of the same result: a search worker's
    trials share one cohort and cache, and each trial checking them again is a fixed cost the
    search multiplies. Sources changed during the block are not seen until it ends."""
    global _reused
    outer, _reused = _reused, {} if _reused is None else _reused
    try:
        yield
    finally:
        _reused = outer


def _data_setting(config: TrainConfig, artifacts: Path, excluded: dict[str, str]) -> str:
    fields = ("dicom", "clinical", "demo_patients", "preset", "crop_mode", "context_mm", "label")
    setting = {field: getattr(config, field) for field in fields}
    setting |= {"artifacts": str(artifacts.resolve()), "excluded": sorted(excluded.items())}
    setting["cache"] = os.environ.get("NSCLC_CACHE_DIR", "")
    return json.dumps(setting, sort_keys=True, default=str)


def prepare_data(
    config: TrainConfig,
    artifacts: Path,
    show_progress: bool,
    on_progress: Callable[[str, float], None] | None = None,
    excluded: dict[str, str] | None = None,
) -> PreparedData:
    """Cohort (the demo is built if absent), preprocessing into the cache, labels. The
    reviewers' exclusions (``excluded``, :func:`run_exclusions`) leave their patients out of a
    cohort built for them (``review_excluded`` in its cleaning report).

    ``on_progress(stage, fraction)`` follows the slow parts (writing the demo cohort)."""
    setting = None if _reused is None else _data_setting(config, artifacts, excluded or {})
    if setting in (_reused or {}):
        return copy.deepcopy(_reused[setting])
    report = on_progress or (lambda stage, fraction: None)
    from nsclc_engine.cohort.build import CohortConfig, load_cohort, run_cohort
    from nsclc_engine.demo import build_demo, demo_paths
    from nsclc_engine.paths import default_cache_dir
    from nsclc_engine.preprocess.dataset import items_from_cache
    from nsclc_engine.preprocess.volumes import PRESETS, preprocess_cohort
    from nsclc_engine.synth.outcome import SynthConfig

    excluded = excluded or {}
    reviewed = f"-reviewed-{exclusions_digest(excluded)}" if excluded else ""
    if config.dicom:
        dicom, clinical = config.dicom, config.clinical
        key = source_key(Path(dicom), Path(clinical))
        cohort_dir = artifacts / "cohorts" / f"{Path(dicom).name}-{key}{reviewed}"
    else:
        paths = demo_paths(artifacts)
        build_demo(
            artifacts,
            SynthConfig(n_patients=config.demo_patients),
            show_progress=show_progress,
            on_progress=lambda stage, fraction: report(stage, 0.9 * fraction),
        )
        dicom, clinical = paths.dicom, paths.clinical_csv
        # the demo's own cohort stays; one without the reviewers' exclusions is built beside it
        cohort_dir = paths.root / f"cohort{reviewed}" if excluded else paths.cohort
    if not (cohort_dir / "cohort.csv").exists():
        run_cohort(
            dicom,
            clinical,
            cohort_dir,
            CohortConfig(),
            show_progress=show_progress,
            review_exclusions=excluded,
        )
    preprocess_config = PRESETS[config.preset]
    if config.crop_mode:
        preprocess_config = replace(preprocess_config, crop_mode=config.crop_mode)
    if config.context_mm is not None:
        preprocess_config = replace(preprocess_config, context_mm=config.context_mm)
    cache_dir = default_cache_dir() if "NSCLC_CACHE_DIR" in os.environ else artifacts / "cache"
    report("preprocessing (tumour-centred volumes into the cache)", 0.9)
    table = preprocess_cohort(cohort_dir, preprocess_config, cache_dir, show_progress=show_progress)
    ok = table[table.status != "failed"]
    cohort = load_cohort(cohort_dir)
    cohort = cohort[cohort.patient_id.isin(ok.patient_id) & cohort[config.label].notna()]
    labels = {row.patient_id: int(getattr(row, config.label)) for row in cohort.itertuples()}
    times = {row.patient_id: float(row.survival_time_days) for row in cohort.itertuples()}
    keys = dict(zip(ok.patient_id, ok.key, strict=True))
    image_paths = items_from_cache(cache_dir, keys, labels, preprocess_config)
    preprocess = asdict(preprocess_config)
    data = PreparedData(cohort_dir, cache_dir, labels, image_paths, preprocess, times)
    if setting is None:
        return data
    _reused[setting] = data  # a search worker's: each trial gets its own copy
    return copy.deepcopy(data)


def shuffled(labels: dict[str, int], seed: int, times: dict[str, float] | None = None):
    """The negative control: the same outcomes, randomly reassigned to patients (a patient's
    label and survival time move together). Returns the labels, or ``(labels, times)``."""
    patients = sorted(labels)
    order = np.random.default_rng(seed).permutation(len(patients))
    new_labels = {p: int(labels[patients[k]]) for p, k in zip(patients, order, strict=True)}
    if times is None:
        return new_labels
    return new_labels, {p: float(times[patients[k]]) for p, k in zip(patients, order, strict=True)}
