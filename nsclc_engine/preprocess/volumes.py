"""Tumour-centred network inputs from a CT and its GTV mask, and the on-disk cache that keeps them.

Pure core (arrays in, arrays out): :func:`crop_box_bbox`, :func:`sampling_grid`,
:func:`resample_axis_aligned`, :func:`window_to_unit` and :func:`preprocess_arrays`.
Thin file layer: :func:`preprocess_patient` reads one cohort patient;
:func:`preprocess_cohort` fills the cache for a whole cohort, in parallel.

Every input voxel ``(k, j, i)`` maps to the CT voxel index ``offset + scale * (k, j, i)``
(per axis, ``z, y, x``), stored with the volume as :class:`InputGeometry`, so a voxel of the
network input (or a Grad-CAM map) can be put back onto the original CT and into patient mm.

``python -m nsclc_engine.preprocess --cohort DIR --preset demo|paper [--set key=value]``
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from nsclc_engine.cohort import contours, dicom_io
from nsclc_engine.cohort.build import CohortConfig, load_cohort
from nsclc_engine.config import add_config_arguments, cli_error, load_config
from nsclc_engine.parallel import parallel_map, worker_count
from nsclc_engine.paths import default_cache_dir
from nsclc_engine.preprocess.cache import VolumeCache

log = logging.getLogger(__name__)

PREPROCESSING_VERSION = 2  # bump when the computation changes, so old cache entries miss
AIR_HU = -1000.0


@dataclass(frozen=True)
class PreprocessConfig:
    """How a CT becomes a network input. Defaults are the report's protocol (the ``paper`` preset).

    ``crop_mode``: ``bbox`` = GTV bounding box plus a margin, resized to the output shape
    (compresses absolute tumour size: the GTV's share of the input still grows with its
    volume, from 3 % to 17 % on the demo); ``fixed_fov`` = a ``fov_mm`` cube centred on the GTV
    centroid (keeps size). ``margin_mm``, when set, replaces the voxel margins on every axis.
    ``context_mm``, when set, keeps only the CT within that distance of the GTV and makes the
    rest air, so the input shows the tumour and its rim rather than the chest wall and
    mediastinum, which look alike at every tumour size.
    """

    crop_mode: str = "bbox"
    margin_voxels_xy: int = 10
    margin_voxels_z: int = 0
    margin_mm: float | None = None
    fov_mm: float = 150.0
    out_depth: int = 100
    out_height: int = 128
    out_width: int = 128
    window_center_hu: float = 0.0
    window_width_hu: float = 2000.0
    context_mm: float | None = None

    def __post_init__(self) -> None:
        if self.crop_mode not in ("bbox", "fixed_fov"):
            raise ValueError(f"crop_mode {self.crop_mode!r}: choose 'bbox' or 'fixed_fov'")
        if min(self.out_depth, self.out_height, self.out_width) < 1:
            raise ValueError(f"output shape {self.out_shape} must be positive")
        if self.window_width_hu <= 0 or self.fov_mm <= 0:
            raise ValueError("window_width_hu and fov_mm must be positive")
        if min(self.margin_voxels_xy, self.margin_voxels_z) < 0 or (self.margin_mm or 0) < 0:
            raise ValueError("margins must not be negative")
        if self.context_mm is not None and self.context_mm < 0:
            raise ValueError(f"context_mm {self.context_mm}: must not be negative")

    @property
    def out_shape(self) -> tuple[int, int, int]:
        return (self.out_depth, self.out_height, self.out_width)


PRESETS: dict[str, PreprocessConfig] = {
    "paper": PreprocessConfig(),
    "demo": PreprocessConfig(out_depth=32, out_height=64, out_width=64),
    # end-to-end checks in seconds on a CPU (tests); not for results
    "smoke": PreprocessConfig(out_depth=16, out_height=32, out_width=32),
}


@dataclass(frozen=True)
class InputGeometry:
    """Where the network input sits on the CT (see the module docstring)."""

    offset_zyx: tuple[float, float, float]
    scale_zyx: tuple[float, float, float]
    crop_box_zyx: tuple[int, int, int, int, int, int]  # z0, z1, y0, y1, x0, x1 (CT voxels, clipped)
    ct_shape_zyx: tuple[int, int, int]
    ct_spacing_mm: tuple[float, float, float]
    ct_origin_mm: tuple[float, float, float]
    ct_direction: tuple[tuple[float, float, float], ...]

    def input_to_ct_index(self, points_zyx: np.ndarray) -> np.ndarray:
        """Input voxel indices ``(n, 3)`` (z, y, x) -> continuous CT voxel indices (z, y, x)."""
        return np.asarray(self.offset_zyx) + np.asarray(self.scale_zyx) * np.asarray(points_zyx)

    def ct_index_to_input(self, points_zyx: np.ndarray) -> np.ndarray:
        return (np.asarray(points_zyx) - np.asarray(self.offset_zyx)) / np.asarray(self.scale_zyx)

    def input_to_patient_mm(self, points_zyx: np.ndarray) -> np.ndarray:
        """Input voxel indices ``(n, 3)`` (z, y, x) -> patient coordinates (x, y, z) in mm."""
        ct_xyz = self.input_to_ct_index(points_zyx)[:, ::-1]
        spacing_xyz = np.asarray(self.ct_spacing_mm[::-1])
        return (ct_xyz * spacing_xyz) @ np.asarray(self.ct_direction) + np.asarray(
            self.ct_origin_mm
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> InputGeometry:
        return cls(**{key: _tuples(value) for key, value in values.items()})


@dataclass(frozen=True)
class PreprocessedVolume:
    """``image[D, H, W]`` float32 in [0, 1], ``mask[D, H, W]`` bool (the GTV), and the geometry.

    ``gtv_fraction_inside``: share of the CT's GTV voxels inside the input's field of view (a
    ``fixed_fov`` smaller than the tumour cuts it; a warning says so).
    """

    image: np.ndarray
    mask: np.ndarray
    geometry: InputGeometry
    gtv_fraction_inside: float = 1.0


def crop_box_bbox(
    mask: np.ndarray, spacing_mm: Sequence[float], config: PreprocessConfig
) -> tuple[int, int, int, int, int, int]:
    """GTV bounding box plus the margin, clipped to the volume: ``(z0, z1, y0, y1, x0, x1)``."""
    if not mask.any():
        raise ValueError("the GTV mask is empty: nothing to centre the crop on")
    if config.margin_mm is not None:
        margins = [int(np.ceil(config.margin_mm / s - 1e-9)) for s in spacing_mm]
    else:
        margins = [config.margin_voxels_z, config.margin_voxels_xy, config.margin_voxels_xy]
    box: list[int] = []
    for axis, margin in enumerate(margins):
        present = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        box += [
            max(int(present[0]) - margin, 0),
            min(int(present[-1]) + 1 + margin, mask.shape[axis]),
        ]
    return tuple(box)


def sampling_grid(
    mask: np.ndarray, spacing_mm: Sequence[float], config: PreprocessConfig
) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """``(offset_zyx, scale_zyx, crop_box)``: input voxel k samples CT index offset + scale * k.

    Voxel centres follow the ``align_corners=False`` convention: the output grid spans the box
    edge to edge, as ``torch.nn.functional.interpolate`` does.
    """
    out_shape = np.asarray(config.out_shape, dtype=np.float64)
    if config.crop_mode == "bbox":
        box = crop_box_bbox(mask, spacing_mm, config)
        start = np.asarray(box[0::2], dtype=np.float64)
        extent = np.asarray(box[1::2], dtype=np.float64) - start
    else:
        centre = np.array([axis.mean() for axis in np.nonzero(mask)])
        if centre.size == 0 or np.isnan(centre).any():
            raise ValueError("the GTV mask is empty: nothing to centre the crop on")
        extent = config.fov_mm / np.asarray(spacing_mm, dtype=np.float64)
        start = centre + 0.5 - extent / 2  # voxel centres sit at integer indices
        low = np.floor(start).astype(int)
        high = np.ceil(start + extent).astype(int)
        box = tuple(int(v) for a in range(3) for v in (max(low[a], 0), min(high[a], mask.shape[a])))
    scale = extent / out_shape
    offset = start + 0.5 * scale - 0.5
    return offset, scale, box


def resample_axis_aligned(
    volume: np.ndarray,
    offset_zyx: Sequence[float],
    scale_zyx: Sequence[float],
    out_shape: Sequence[int],
) -> np.ndarray:
    """Separable linear resampling of ``volume[z, y, x]`` onto ``offset + scale * k`` per axis.

    Equivalent to trilinear interpolation (bilinear in-plane, linear along z); samples beyond
    the volume take the edge value.
    """
    result = np.asarray(volume, dtype=np.float32)
    for axis in range(3):
        coords = offset_zyx[axis] + scale_zyx[axis] * np.arange(out_shape[axis], dtype=np.float64)
        size = result.shape[axis]
        clamped = np.clip(coords, 0, size - 1)
        lower = np.floor(clamped).astype(np.int64)
        upper = np.minimum(lower + 1, size - 1)
        shape = [1, 1, 1]
        shape[axis] = -1
        weight = (clamped - lower).astype(np.float32).reshape(shape)
        below, above = np.take(result, lower, axis=axis), np.take(result, upper, axis=axis)
        result = below * (1 - weight) + above * weight
    return result


def outside_volume(
    offset_zyx: Sequence[float],
    scale_zyx: Sequence[float],
    out_shape: Sequence[int],
    volume_shape: Sequence[int],
) -> np.ndarray:
    """Boolean ``out_shape`` mask of the samples more than half a voxel beyond the volume."""
    outside = np.zeros(tuple(out_shape), dtype=bool)
    for axis in range(3):
        coords = offset_zyx[axis] + scale_zyx[axis] * np.arange(out_shape[axis])
        shape = [1, 1, 1]
        shape[axis] = -1
        outside |= ((coords < -0.5) | (coords > volume_shape[axis] - 0.5)).reshape(shape)
    return outside


def window_to_unit(hu: np.ndarray, center_hu: float, width_hu: float) -> np.ndarray:
    """Clip to ``[center - width/2, center + width/2]`` HU and scale to [0, 1] (float32)."""
    low = center_hu - width_hu / 2
    return np.clip((np.asarray(hu, dtype=np.float32) - low) / np.float32(width_hu), 0.0, 1.0)


def preprocess_arrays(
    hu: np.ndarray, mask: np.ndarray, spacing_mm: Sequence[float], config: PreprocessConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[int, ...]]:
    """Crop, resample and window one CT.

    ``hu[z, y, x]`` in Hounsfield units, ``mask`` the GTV on the same grid, ``spacing_mm``
    (z, y, x). Returns ``(image, mask, offset_zyx, scale_zyx, crop_box)`` with ``image`` float32
    in [0, 1] and ``mask`` bool, both of shape ``config.out_shape``.
    """
    if hu.shape != mask.shape or hu.ndim != 3:
        raise ValueError(f"hu {hu.shape} and mask {mask.shape} must be the same 3-d shape")
    offset, scale, box = sampling_grid(mask, spacing_mm, config)
    if config.crop_mode == "bbox":
        # crop, then resize: samples near the box edge repeat the edge, as in the report
        low, high = np.asarray(box[0::2]), np.asarray(box[1::2])
    else:
        # only the part of the CT the grid touches (plus one voxel), not the whole scan
        first = offset
        last = offset + scale * (np.asarray(config.out_shape) - 1)
        low = np.maximum(np.floor(np.minimum(first, last)).astype(int) - 1, 0)
        high = np.maximum(
            np.minimum(np.ceil(np.maximum(first, last)).astype(int) + 2, hu.shape), low + 1
        )
    region = tuple(slice(lo, hi) for lo, hi in zip(low, high, strict=True))
    local_offset = offset - low
    image_hu = resample_axis_aligned(hu[region], local_offset, scale, config.out_shape)
    mask_fraction = resample_axis_aligned(
        mask[region].astype(np.float32), local_offset, scale, config.out_shape
    )
    if config.crop_mode == "fixed_fov":  # beyond the scan is air, not a copy of its edge
        outside = outside_volume(offset, scale, config.out_shape, hu.shape)
        image_hu[outside] = AIR_HU
        mask_fraction[outside] = 0.0
    mask_out = mask_fraction >= 0.5
    if config.context_mm is not None:
        # distances on the CT's own grid, then sampled like the image: a GTV smaller than one
        # output voxel still gets its context (else tiny tumours alone would keep the chest)
        distance = distance_to_mask(mask[region], spacing_mm)
        far = resample_axis_aligned(distance, local_offset, scale, config.out_shape)
        image_hu[far > config.context_mm] = AIR_HU
    image = window_to_unit(image_hu, config.window_center_hu, config.window_width_hu)
    return image, mask_out, offset, scale, box


def distance_to_mask(mask: np.ndarray, voxel_mm: Sequence[float]) -> np.ndarray:
    """Euclidean distance in mm from each voxel to the nearest voxel of ``mask`` (0 inside;
    infinite everywhere when the mask is empty), float32."""
    from scipy.ndimage import distance_transform_edt

    if not mask.any():
        return np.full(mask.shape, np.inf, dtype=np.float32)
    sampling = tuple(float(v) for v in voxel_mm)
    return distance_transform_edt(~mask, sampling=sampling).astype(np.float32)


def preprocess_ct(
    volume: dicom_io.CtVolume, mask: np.ndarray, config: PreprocessConfig
) -> PreprocessedVolume:
    """:func:`preprocess_arrays` on a read CT, keeping the geometry back to the CT."""
    grid = volume.geometry
    image, mask_out, offset, scale, box = preprocess_arrays(
        volume.hu, mask, grid.spacing_mm, config
    )
    geometry = InputGeometry(
        offset_zyx=tuple(float(v) for v in offset),
        scale_zyx=tuple(float(v) for v in scale),
        crop_box_zyx=tuple(int(v) for v in box),
        ct_shape_zyx=grid.shape_zyx,
        ct_spacing_mm=grid.spacing_mm,
        ct_origin_mm=grid.origin_mm,
        ct_direction=grid.direction,
    )
    gtv = np.stack(np.nonzero(mask), axis=1)
    corner = geometry.ct_index_to_input(gtv)
    inside = ((corner >= -0.5) & (corner <= np.asarray(config.out_shape) - 0.5)).all(axis=1)
    fraction = float(inside.mean())
    if fraction < 1.0:
        log.warning(
            "%s: only %.1f %% of the GTV lies inside the %s input (fov_mm=%s)",
            volume.patient_id,
            100 * fraction,
            config.crop_mode,
            config.fov_mm,
        )
    return PreprocessedVolume(image, mask_out, geometry, fraction)


# --- file layer ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PatientSource:
    """What a cohort row says about where one patient's CT and GTV are."""

    patient_id: str
    ct_headers: tuple[dicom_io.DicomHeader, ...]
    rtstruct_path: str
    roi_names: tuple[str, ...]
    roi_pattern: str

    def fingerprint(self) -> str:
        """Hash of the source files as they are now (UIDs, sizes, mtimes) and the ROI choice."""
        digest = hashlib.sha256()
        for header in sorted(self.ct_headers, key=lambda h: h.sop_uid):
            stat = os.stat(header.path)
            digest.update(f"{header.sop_uid}:{stat.st_size}:{stat.st_mtime_ns};".encode())
        stat = os.stat(self.rtstruct_path)
        digest.update(f"rtstruct:{stat.st_size}:{stat.st_mtime_ns}:{self.roi_names}".encode())
        return digest.hexdigest()


def cohort_sources(cohort_dir: str | os.PathLike) -> list[PatientSource]:
    """One :class:`PatientSource` per patient of a cohort folder written by the cohort stage."""
    cohort_dir = Path(cohort_dir)
    cohort = load_cohort(cohort_dir)
    cohort_config = load_config(CohortConfig, cohort_dir / "cohort_config.json")
    headers = dicom_io.read_index_csv(cohort_dir / "dicom_index.csv")
    by_series: dict[str, list[dicom_io.DicomHeader]] = {}
    for header in headers:
        if header.modality == "CT":
            by_series.setdefault(header.series_uid, []).append(header)
    return [
        PatientSource(
            patient_id=row.patient_id,
            ct_headers=tuple(by_series.get(row.ct_series_uid, ())),
            rtstruct_path=row.rtstruct_path,
            roi_names=tuple(row.roi_names.split("+")),
            roi_pattern=cohort_config.roi_pattern,
        )
        for row in cohort.itertuples()
    ]


def read_source(source: PatientSource) -> tuple[dicom_io.CtVolume, np.ndarray]:
    """Read the CT (HU) and rasterise the GTV ROI(s) the cohort chose."""
    geometry = dicom_io.ct_series_geometry(source.ct_headers)
    volume = dicom_io.read_ct_volume(geometry, source.patient_id, source.ct_headers[0].series_uid)
    rois, _ = dicom_io.read_rtstruct_rois(source.rtstruct_path, source.roi_pattern)
    chosen = [roi for roi in rois if roi.name in source.roi_names]
    if not chosen:
        raise ValueError(
            f"{source.rtstruct_path}: ROI(s) {list(source.roi_names)} not found any more; "
            "rebuild the cohort"
        )
    return volume, dicom_io.roi_mask(geometry, chosen).mask


def preprocess_patient(source: PatientSource, config: PreprocessConfig) -> PreprocessedVolume:
    volume, mask = read_source(source)
    return preprocess_ct(volume, mask, config)


@functools.cache
def code_fingerprint() -> str:
    """Hash of the code that turns DICOM into inputs: changing it invalidates the cache."""
    digest = hashlib.sha256(str(PREPROCESSING_VERSION).encode())
    for module in (__file__, dicom_io.__file__, contours.__file__):
        digest.update(Path(module).read_bytes())
    return digest.hexdigest()


def cache_key(source: PatientSource, config: PreprocessConfig) -> str:
    """Hash of the source files as they are now, the config and the preprocessing code."""
    payload = json.dumps(
        {"source": source.fingerprint(), "config": asdict(config), "code": code_fingerprint()},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def store(
    cache: VolumeCache, key: str, patient_id: str, result: PreprocessedVolume, config: dict
) -> None:
    """Put one preprocessed patient into the volume cache, with the metadata every reader of
    the cache expects (input geometry, the preprocessing config, GTV share inside)."""
    metadata = {
        "geometry": result.geometry.to_dict(),
        "config": config,
        "gtv_fraction_inside": result.gtv_fraction_inside,
    }
    cache.put(key, patient_id, result.image, result.mask, metadata)


def _preprocess_one(task: tuple[PatientSource, PreprocessConfig, str]) -> dict:
    source, config, cache_dir = task
    cache = VolumeCache(cache_dir)
    try:
        key = cache_key(source, config)
        entry = cache.get(key)
        if entry is not None:
            return {"patient_id": source.patient_id, "key": key, "status": "hit"}
        store(cache, key, source.patient_id, preprocess_patient(source, config), asdict(config))
        return {"patient_id": source.patient_id, "key": key, "status": "miss"}
    except Exception as error:  # one broken patient never stops the cohort
        return {
            "patient_id": source.patient_id,
            "key": "",
            "status": "failed",
            "error": f"{type(error).__name__}: {error}",
        }
    finally:
        cache.close()


def preprocess_cohort(
    cohort_dir: str | os.PathLike,
    config: PreprocessConfig,
    cache_dir: str | os.PathLike | None = None,
    workers: int = 0,
    show_progress: bool = True,
) -> pd.DataFrame:
    """Fill the cache for every patient of a cohort; one row per patient with its cache key.

    Columns: ``patient_id, key, status`` (hit / miss / failed) and ``error``.
    """
    cache_dir = str(cache_dir or default_cache_dir())
    sources = cohort_sources(cohort_dir)
    tasks = [(source, config, cache_dir) for source in sources]
    n_workers = worker_count(workers, len(tasks), parallel_min=4)
    rows = parallel_map(
        _preprocess_one, tasks, n_workers, "Preprocessing", "patient", show_progress
    )
    table = pd.DataFrame(rows, columns=["patient_id", "key", "status", "error"])
    for row in table[table.status == "failed"].itertuples():
        log.warning("%s: preprocessing failed: %s", row.patient_id, row.error)
    return table


def resolve_config(
    preset: str, config_path: str | None = None, overrides: Sequence[str] = ()
) -> PreprocessConfig:
    """A preset, then a JSON file, then ``key=value`` overrides."""
    if preset not in PRESETS:
        raise ValueError(f"preset {preset!r}: choose one of {sorted(PRESETS)}")
    return load_config(PreprocessConfig, config_path, overrides, base=PRESETS[preset])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nsclc_engine.preprocess",
        description="Preprocess a cohort into the volume cache (a second run is all hits).",
    )
    parser.add_argument("--cohort", required=True, help="cohort folder (from nsclc_engine.cohort)")
    parser.add_argument("--preset", default="demo", choices=sorted(PRESETS))
    add_config_arguments(parser, PreprocessConfig)
    parser.add_argument(
        "--cache-dir", help="cache folder (default $NSCLC_CACHE_DIR or artifacts/cache)"
    )
    parser.add_argument("--workers", type=int, default=0, help="processes (0 = all cores)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        config = resolve_config(args.preset, args.config, args.set)
        table = preprocess_cohort(args.cohort, config, args.cache_dir, args.workers, not args.quiet)
    except (ValueError, OSError) as error:
        return cli_error(error)
    counts = table.status.value_counts().to_dict()
    cache_dir = args.cache_dir or default_cache_dir()
    print(
        f"{len(table)} patients: {counts.get('hit', 0)} cache hits, {counts.get('miss', 0)} "
        f"preprocessed, {counts.get('failed', 0)} failed; cache {cache_dir}"
    )
    failed = table[table.status == "failed"]
    for row in failed.itertuples():
        print(f"failed: {row.patient_id}: {row.error}", file=sys.stderr)
    return 1 if len(failed) else 0


def _tuples(value):
    if isinstance(value, list):
        return tuple(_tuples(item) for item in value)
    return value
