"""Embedded demo cohort: a synthetic Lung1 look-alike written as real DICOM (CT + RTSTRUCT).

``python -m nsclc_engine.synth --out DIR --patients N --seed S`` writes

* ``DIR/dicom/<PatientID>/<study>/<series>/1-001.dcm``: the TCIA layout, one CT series (CT Image
  Storage, int16 with RescaleIntercept -1024, full geometry) and one RTSTRUCT per patient with
  ``GTV-1`` and distractor ROIs (``PTV-1``, ``Lung L``, ``Lung R``; some patients a ``GTV-2``);
* ``DIR/clinical.csv``: the exact Lung1 v3 columns and vocabularies, ``NA`` for missing;
* ``DIR/synth_metadata.json``: this config, the generating model, the best achievable
  (oracle) AUC and C-index, and which patients are deliberately broken and why;
* ``DIR/synth_truth.csv``: per-patient latent features, linear predictor and event times.

Generating model (proportional hazards, Weibull baseline)::

    eta = 0.6 z(log GTV volume) + 0.4 z(heterogeneity) + 0.15 z(age) + 0.3 [N stage >= 2] - 0.162
    T   = 800 d * (-log U * exp(-eta)) ** (1 / 0.9),   U ~ Uniform(0, 1)
    C   = min(Uniform(1800, 4500) d, Exponential(mean 40000 d))
    Survival.time = round(min(T, C)), deadstatus.event = [T <= C]

Heterogeneity (0..1) is drawn into the tumour as a darker necrotic core and a stronger
texture, so the outcome depends on what the CT shows. With these constants about 88 % of
patients die during follow-up and 60 % within two years, as in Lung1. Every patient has its
own random stream (seed, patient number), so one patient never changes another.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from nsclc_engine.cohort.build import Reason
from nsclc_engine.cohort.clinical import OS_2Y_HORIZON_DAYS, V3_COLUMNS
from nsclc_engine.cohort.contours import fill_polygon
from nsclc_engine.config import (
    add_config_arguments,
    load_config,
    save_config,
    write_text_atomic,
)
from nsclc_engine.parallel import parallel_map, worker_count
from nsclc_engine.stats.survival import harrell_c_index

# --- generating model (see the module docstring) -------------------------------------------
LOG_VOLUME_MEAN = float(np.log(25.0))  # median GTV 25 cm3, as in Lung1
LOG_VOLUME_SD = 1.0
VOLUME_RANGE_CM3 = (2.0, 250.0)
HETEROGENEITY_BETA = (2.0, 2.0)  # mean 0.5, sd 0.2236
AGE_MEAN, AGE_SD = 68.0, 10.0
COEFFICIENTS = {"z_log_volume": 0.6, "z_heterogeneity": 0.4, "z_age": 0.15, "n_stage_ge_2": 0.3}
ETA_OFFSET = -0.162  # centres eta: -0.3 * P(N >= 2)
WEIBULL_SCALE_DAYS, WEIBULL_SHAPE = 800.0, 0.9
ACCRUAL_CENSORING_DAYS = (1800.0, 4500.0)
DROPOUT_MEAN_DAYS = 40000.0
N_STAGE_PROBABILITIES = (0.40, 0.06, 0.34, 0.19, 0.01)
HISTOLOGY = ("large cell", "squamous cell carcinoma", "adenocarcinoma", "nos", None)
HISTOLOGY_PROBABILITIES = (0.27, 0.36, 0.12, 0.15, 0.10)
IMAGE_TERMS = ("z_log_volume", "z_heterogeneity")
CLINICAL_TERMS = ("z_age", "n_stage_ge_2")

# --- deliberate defects and the exclusion each must cause ----------------------------------
DEFECTS: dict[str, Reason] = {
    "no_ct": Reason.NO_CT,
    "no_rtstruct": Reason.NO_RTSTRUCT,
    "no_gtv": Reason.NO_MATCHING_ROI,
    "bad_orientation": Reason.BAD_GEOMETRY,
    "duplicate_slice": Reason.BAD_GEOMETRY,
    "missing_slice": Reason.BAD_GEOMETRY,
    "truncated_slice": Reason.UNREADABLE_FILE,
    "empty_gtv": Reason.EMPTY_CONTOUR,
    "missing_label": Reason.MISSING_LABEL,
    "duplicate_clinical_row": Reason.DUPLICATE_CLINICAL_ID,
    "no_clinical_row": Reason.NO_CLINICAL_ROW,
    "no_imaging": Reason.NO_IMAGING,
}

CT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.2"
RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
STUDY_ROOT_SOP_CLASS = "1.2.840.10008.3.1.2.3.1"
RESCALE_INTERCEPT = -1024
CONTOUR_ANGLES = 64


@dataclass(frozen=True)
class SynthConfig:
    """Size and content of the synthetic cohort; the defaults are the demo size."""

    n_patients: int = 100
    seed: int = 0
    rows: int = 128  # in-plane pixels (rows = columns)
    pixel_spacing_mm: float = 3.0
    n_slices: int = 48
    slice_thickness_mm: float = 4.0
    noise_hu: float = 10.0
    patient_id_prefix: str = "DEMO"
    # "auto": every defect once when n_patients >= 4 x their number, else none;
    # "none"; or explicit "3:no_rtstruct,7:truncated_slice" with 1-based patient numbers
    defects: str = "auto"
    workers: int = 0


@dataclass(frozen=True)
class PatientTruth:
    """Latent features and outcome of one synthetic patient."""

    patient_id: str
    number: int
    defect: str
    volume_cm3: float
    heterogeneity: float
    age_years: float
    age_recorded: bool
    t_stage: int
    n_stage: int
    m_stage: int
    overall_stage: str
    histology: str | None
    gender: str
    has_gtv2: bool
    eta: float
    eta_image: float
    eta_clinical: float
    event_time_days: float
    censoring_time_days: float

    @property
    def survival_time_days(self) -> int:
        return max(1, round(min(self.event_time_days, self.censoring_time_days)))

    @property
    def deadstatus_event(self) -> int:
        return int(self.event_time_days <= self.censoring_time_days)


def patient_id(config: SynthConfig, number: int) -> str:
    return f"{config.patient_id_prefix}-{number:03d}"


def parse_defects(config: SynthConfig) -> dict[int, str]:
    """Patient number (1-based) -> defect kind."""
    if config.defects == "none":
        return {}
    if config.defects == "auto":
        kinds = list(DEFECTS)
        if config.n_patients < 4 * len(kinds):
            return {}
        step = config.n_patients / len(kinds)
        return {int((j + 0.5) * step) + 1: kind for j, kind in enumerate(kinds)}
    defects = {}
    for item in config.defects.split(","):
        number, _, kind = item.strip().partition(":")
        if kind not in DEFECTS or not number.isdigit():
            raise ValueError(
                f"defects item {item!r}: expected NUMBER:KIND with KIND one of {sorted(DEFECTS)}"
            )
        if not 1 <= int(number) <= config.n_patients:
            raise ValueError(
                f"defects item {item!r}: patient number outside 1..{config.n_patients}"
            )
        defects[int(number)] = kind
    return defects


def _draw_features(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    log_volume = np.clip(rng.normal(LOG_VOLUME_MEAN, LOG_VOLUME_SD, n), *np.log(VOLUME_RANGE_CM3))
    heterogeneity = rng.beta(*HETEROGENEITY_BETA, n)
    age = np.clip(rng.normal(AGE_MEAN, AGE_SD, n), 33.0, 92.0)
    n_stage = rng.choice(len(N_STAGE_PROBABILITIES), p=N_STAGE_PROBABILITIES, size=n)
    return {
        "log_volume": log_volume,
        "heterogeneity": heterogeneity,
        "age": age,
        "n_stage": n_stage,
    }


def _linear_predictor(features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    het_mean = HETEROGENEITY_BETA[0] / sum(HETEROGENEITY_BETA)
    het_sd = np.sqrt(het_mean * (1 - het_mean) / (sum(HETEROGENEITY_BETA) + 1))
    terms = {
        "z_log_volume": (features["log_volume"] - LOG_VOLUME_MEAN) / LOG_VOLUME_SD,
        "z_heterogeneity": (features["heterogeneity"] - het_mean) / het_sd,
        "z_age": (features["age"] - AGE_MEAN) / AGE_SD,
        "n_stage_ge_2": (features["n_stage"] >= 2).astype(float),
    }
    image = sum(COEFFICIENTS[name] * terms[name] for name in IMAGE_TERMS)
    clinical = sum(COEFFICIENTS[name] * terms[name] for name in CLINICAL_TERMS)
    return {"eta": image + clinical + ETA_OFFSET, "eta_image": image, "eta_clinical": clinical}


def _draw_times(rng: np.random.Generator, eta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = len(eta)
    event_time = WEIBULL_SCALE_DAYS * (-np.log(rng.random(n)) * np.exp(-eta)) ** (1 / WEIBULL_SHAPE)
    censoring = np.minimum(
        rng.uniform(*ACCRUAL_CENSORING_DAYS, n), rng.exponential(DROPOUT_MEAN_DAYS, n)
    )
    return event_time, censoring


def _t_stage(diameter_mm: float, invasive: bool) -> int:
    if invasive or diameter_mm > 70:
        return 4
    return 1 if diameter_mm <= 30 else 2 if diameter_mm <= 50 else 3


def _overall_stage(t: int, n: int, m: int) -> str:
    if n >= 3 or (t == 4 and n >= 2) or m > 0:
        return "IIIb"
    if n == 2 or (t >= 3 and n == 1) or t == 4:
        return "IIIa"
    if n == 1 or t == 3:
        return "II"
    return "I"


def simulate_patient(config: SynthConfig, number: int, defect: str = "") -> PatientTruth:
    """Draw one patient's features and outcome from its own random stream."""
    rng = np.random.default_rng([config.seed, number, 0])
    features = _draw_features(rng, 1)
    predictor = _linear_predictor(features)
    event_time, censoring = _draw_times(rng, predictor["eta"])
    volume_cm3 = float(np.exp(features["log_volume"][0]))
    diameter_mm = 2 * (3 * volume_cm3 * 1000 / (4 * np.pi)) ** (1 / 3)
    t_stage = _t_stage(diameter_mm, invasive=rng.random() < 0.15)
    n_stage = int(features["n_stage"][0])
    m_stage = int(rng.choice([0, 1, 3], p=[0.985, 0.005, 0.01]))
    histology = HISTOLOGY[rng.choice(len(HISTOLOGY), p=HISTOLOGY_PROBABILITIES)]
    return PatientTruth(
        patient_id=patient_id(config, number),
        number=number,
        defect=defect,
        volume_cm3=volume_cm3,
        heterogeneity=float(features["heterogeneity"][0]),
        age_years=round(float(features["age"][0]), 4),
        age_recorded=bool(rng.random() > 0.05),
        t_stage=t_stage,
        n_stage=n_stage,
        m_stage=m_stage,
        overall_stage=_overall_stage(t_stage, n_stage, m_stage),
        histology=histology,
        gender="male" if rng.random() < 0.687 else "female",
        has_gtv2=bool(rng.random() < 0.12),
        eta=float(predictor["eta"][0]),
        eta_image=float(predictor["eta_image"][0]),
        eta_clinical=float(predictor["eta_clinical"][0]),
        event_time_days=float(event_time[0]),
        censoring_time_days=float(censoring[0]),
    )


# --- images --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grid:
    rows: int
    n_slices: int
    pixel_spacing_mm: float
    slice_thickness_mm: float
    origin_mm: tuple[float, float, float]

    def axis_mm(self, axis: str) -> np.ndarray:
        if axis == "z":
            return self.origin_mm[2] + self.slice_thickness_mm * np.arange(self.n_slices)
        start = self.origin_mm[0 if axis == "x" else 1]
        return start + self.pixel_spacing_mm * np.arange(self.rows)

    def to_pixel(self, x_mm: np.ndarray, y_mm: np.ndarray) -> np.ndarray:
        return np.stack(
            [
                (x_mm - self.origin_mm[0]) / self.pixel_spacing_mm,
                (y_mm - self.origin_mm[1]) / self.pixel_spacing_mm,
            ],
            axis=1,
        )


@dataclass(frozen=True)
class Lesion:
    """A lobulated ellipsoid: inside when ``|((p - c) / a)| <= 1 + e1 ((u.w)^2 - 1/3) + e2 u.v``."""

    centre_mm: np.ndarray
    semi_axes_mm: np.ndarray
    w: np.ndarray
    v: np.ndarray
    e1: float
    e2: float

    def normalised_radius(self, points_mm: np.ndarray) -> np.ndarray:
        """Radius relative to the surface along each point's direction (1 = on the surface)."""
        q = (points_mm - self.centre_mm) / self.semi_axes_mm
        d = np.linalg.norm(q, axis=-1)
        u = q / np.maximum(d, 1e-9)[..., None]
        surface = 1 + self.e1 * ((u @ self.w) ** 2 - 1 / 3) + self.e2 * (u @ self.v)
        return d / surface

    def slice_contour(self, z_mm: float) -> np.ndarray | None:
        """Star-shaped polygon ``(n, 2)`` (x, y mm) of the section at ``z_mm``, or None."""
        angles = np.linspace(0, 2 * np.pi, CONTOUR_ANGLES, endpoint=False)
        directions = np.stack([np.cos(angles), np.sin(angles)], axis=1)
        reach = 1.5 * float(self.semi_axes_mm.max())
        radii = np.linspace(0, reach, int(reach / 0.1) + 1)
        xy = self.centre_mm[:2] + radii[None, :, None] * directions[:, None, :]
        points = np.concatenate([xy, np.full((*xy.shape[:2], 1), z_mm)], axis=2)
        inside = self.normalised_radius(points) <= 1.0
        if not inside[:, 0].all():
            return None
        first_outside = np.argmin(inside, axis=1)  # the shapes are star-shaped, so this is the exit
        first_outside[inside.all(axis=1)] = len(radii) - 1
        exit_radius = radii[np.maximum(first_outside - 1, 0)]
        if exit_radius.max() < 0.5:
            return None
        return self.centre_mm[:2] + exit_radius[:, None] * directions


def _make_lesion(rng: np.random.Generator, centre_mm: np.ndarray, volume_cm3: float) -> Lesion:
    anisotropy = rng.uniform(0.8, 1.25, 3)
    anisotropy /= np.prod(anisotropy) ** (1 / 3)
    radius = (3 * volume_cm3 * 1000 / (4 * np.pi)) ** (1 / 3)
    w, v = rng.normal(size=3), rng.normal(size=3)
    return Lesion(
        centre_mm,
        radius * anisotropy,
        w / np.linalg.norm(w),
        v / np.linalg.norm(v),
        float(rng.uniform(-0.25, 0.25)),
        float(rng.uniform(-0.15, 0.15)),
    )


@dataclass(frozen=True)
class RenderedPatient:
    hu: np.ndarray  # [z, y, x] int16
    grid: Grid
    rois: dict[str, dict[int, np.ndarray]]  # ROI name -> slice index -> polygon (n, 2) mm


def render_patient(config: SynthConfig, truth: PatientTruth) -> RenderedPatient:
    """Chest phantom with the tumour; contours are the exact boundaries of what is drawn."""
    rng = np.random.default_rng([config.seed, truth.number, 1])
    fov = config.rows * config.pixel_spacing_mm
    grid = Grid(
        config.rows,
        config.n_slices,
        config.pixel_spacing_mm,
        config.slice_thickness_mm,
        (
            -(config.rows - 1) / 2 * config.pixel_spacing_mm,
            -(config.rows - 1) / 2 * config.pixel_spacing_mm + float(rng.uniform(-10, 10)),
            float(rng.uniform(-450.0, -350.0)),
        ),
    )
    x, y, z = grid.axis_mm("x"), grid.axis_mm("y"), grid.axis_mm("z")
    depth = z[-1] - z[0]
    body_a, body_b = 0.42 * fov * rng.uniform(0.9, 1.02), 0.30 * fov * rng.uniform(0.9, 1.05)
    lung_a, lung_b = 0.33 * body_a, 0.72 * body_b
    lung_cx, lung_cy = 0.47 * body_a, -0.08 * body_b
    lung_top = z[0] + depth * rng.uniform(0.85, 0.97)

    yy, xx = np.meshgrid(y, x, indexing="ij")
    body = (xx / body_a) ** 2 + (yy / body_b) ** 2 <= 1
    fat = body & ((xx / (0.93 * body_a)) ** 2 + (yy / (0.91 * body_b)) ** 2 > 1)
    spine = (xx / (0.11 * body_b)) ** 2 + ((yy - 0.68 * body_b) / (0.11 * body_b)) ** 2 <= 1
    base = np.where(body, 40.0, -1000.0)
    base[fat] = -100.0
    base[spine] = 700.0
    hu = np.repeat(base[None], len(z), axis=0)
    rois: dict[str, dict[int, np.ndarray]] = {"Lung R": {}, "Lung L": {}}
    angles = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    for k, z_mm in enumerate(z):
        taper = np.sqrt(max(0.0, 1 - ((z_mm - z[0]) / (lung_top - z[0]) - 0.35) ** 2 / 0.65**2))
        if taper < 0.15:
            continue
        for name, side in (("Lung R", -1), ("Lung L", 1)):
            a, b = lung_a * taper, lung_b * taper
            polygon = np.stack(
                [side * lung_cx + a * np.cos(angles), lung_cy + b * np.sin(angles)], 1
            )
            rois[name][k] = polygon
            inside = fill_polygon(grid.to_pixel(polygon[:, 0], polygon[:, 1]), hu.shape[1:])
            hu[k][inside] = -850.0

    # the tumour sits in the middle of one lung, away from the top and bottom of the scan
    side = 1 if rng.random() < 0.5 else -1
    gtv = _make_lesion(rng, np.zeros(3), truth.volume_cm3)
    reach_z = 1.3 * float(gtv.semi_axes_mm[2])
    z_low, z_high = (
        z[0] + reach_z + 2 * grid.slice_thickness_mm,
        z[-1] - reach_z - 2 * grid.slice_thickness_mm,
    )
    centre = np.array(
        [
            side * lung_cx + rng.uniform(-0.2, 0.2) * lung_a,
            lung_cy + rng.uniform(-0.25, 0.25) * lung_b,
            rng.uniform(z_low, z_high) if z_high > z_low else (z[0] + z[-1]) / 2,
        ]
    )
    lesions = {"GTV-1": Lesion(centre, gtv.semi_axes_mm, gtv.w, gtv.v, gtv.e1, gtv.e2)}
    if truth.has_gtv2:
        node_centre = np.array(
            [-side * lung_cx, lung_cy + 0.3 * lung_b, centre[2] + rng.uniform(-20, 20)]
        )
        lesions["GTV-2"] = _make_lesion(rng, node_centre, float(rng.uniform(1.0, 4.0)))

    texture = _smooth_noise(rng, hu.shape)
    for name, lesion in lesions.items():
        rois[name] = {}
        for k, z_mm in enumerate(z):
            polygon = lesion.slice_contour(float(z_mm))
            if polygon is None:
                continue
            rois[name][k] = polygon
            inside = fill_polygon(grid.to_pixel(polygon[:, 0], polygon[:, 1]), hu.shape[1:])
            points = np.stack([xx[inside], yy[inside], np.full(inside.sum(), z_mm)], axis=1)
            core = np.clip(1 - lesion.normalised_radius(points) / 0.6, 0, 1)
            h = truth.heterogeneity if name == "GTV-1" else 0.2
            hu[k][inside] = 30.0 - 160.0 * h * core + (8.0 + 70.0 * h) * texture[k][inside]
    rois["PTV-1"] = {
        k: _expand(polygon, lesions["GTV-1"].centre_mm[:2], 10.0)
        for k, polygon in rois["GTV-1"].items()
    }

    hu += rng.normal(0.0, config.noise_hu, hu.shape)
    hu = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
    return RenderedPatient(hu, grid, rois)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    noise = gaussian_filter(rng.normal(size=shape), sigma=1.0)
    return noise / noise.std()


def _expand(polygon: np.ndarray, centre_xy: np.ndarray, margin_mm: float) -> np.ndarray:
    offset = polygon - centre_xy
    radius = np.linalg.norm(offset, axis=1, keepdims=True)
    return centre_xy + offset * (radius + margin_mm) / np.maximum(radius, 1e-9)


# --- DICOM writing -------------------------------------------------------------------------


def _uid(config: SynthConfig, *parts: object) -> str:
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=[str(config.seed), *map(str, parts)])


def _file_meta(sop_class: str, sop_uid: str):
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return meta


def _common(ds, truth: PatientTruth, study_uid: str, frame_uid: str) -> None:
    ds.PatientID = truth.patient_id
    ds.PatientName = truth.patient_id  # synthetic: the ID is the only identifier
    ds.PatientSex = "M" if truth.gender == "male" else "F"
    ds.StudyInstanceUID = study_uid
    ds.FrameOfReferenceUID = frame_uid
    ds.StudyDate = ds.SeriesDate = "20000101"
    ds.StudyTime = ds.SeriesTime = "120000"
    ds.StudyID = f"{truth.number:05d}"
    ds.AccessionNumber = ""
    ds.Manufacturer = "nsclc_engine synthetic cohort"


def write_patient(config: SynthConfig, truth: PatientTruth, dicom_root: Path) -> None:
    """Write one patient's CT series and RTSTRUCT (with its defect, if any)."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    defect = truth.defect
    if defect == "no_imaging":
        return
    rendered = render_patient(config, truth)
    grid = rendered.grid
    study_uid = _uid(config, truth.patient_id, "study")
    ct_series_uid = _uid(config, truth.patient_id, "ct")
    frame_uid = _uid(config, truth.patient_id, "frame")
    study_dir = dicom_root / truth.patient_id / f"01-01-2000-NA-CT THORAX-{truth.number:05d}"
    ct_dir = study_dir / f"0.000000-NA-{int(ct_series_uid[-5:]):05d}"
    z_mm = grid.axis_mm("z")
    n = len(z_mm)
    # scanners number slices head to feet: instance 1 is the highest z, so file names run
    # against the slice order and a reader that sorts by name or number gets it wrong
    slice_uids = [_uid(config, truth.patient_id, "ct", k) for k in range(n)]
    skipped_slice = n // 2 if defect == "missing_slice" else None

    if defect != "no_ct":
        ct_dir.mkdir(parents=True, exist_ok=True)
        for k in range(n):
            if k == skipped_slice:
                continue
            instance = n - k
            ds = Dataset()
            ds.file_meta = _file_meta(CT_SOP_CLASS, slice_uids[k])
            _common(ds, truth, study_uid, frame_uid)
            ds.SOPClassUID = CT_SOP_CLASS
            ds.SOPInstanceUID = slice_uids[k]
            ds.SeriesInstanceUID = ct_series_uid
            ds.Modality = "CT"
            ds.SeriesNumber = 0
            ds.InstanceNumber = instance
            ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
            ds.ImagePositionPatient = [
                f"{grid.origin_mm[0]:.4f}",
                f"{grid.origin_mm[1]:.4f}",
                f"{z_mm[k]:.4f}",
            ]
            orientation = [1, 0, 0, 0, 1, 0]
            if defect == "bad_orientation" and k == n // 3:
                orientation = [1, 0, 0, 0, 0.98, 0.19899749]
            ds.ImageOrientationPatient = orientation
            ds.SliceLocation = f"{z_mm[k]:.4f}"
            ds.SliceThickness = config.slice_thickness_mm
            ds.PixelSpacing = [config.pixel_spacing_mm, config.pixel_spacing_mm]
            ds.Rows = ds.Columns = config.rows
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.BitsAllocated = ds.BitsStored = 16
            ds.HighBit = 15
            ds.PixelRepresentation = 1
            ds.RescaleIntercept = RESCALE_INTERCEPT
            ds.RescaleSlope = 1
            ds.RescaleType = "HU"
            ds.WindowCenter, ds.WindowWidth = -600, 1500
            ds.KVP = 120
            stored = (rendered.hu[k].astype(np.int32) - RESCALE_INTERCEPT).astype(np.int16)
            ds.PixelData = stored.tobytes()
            path = ct_dir / f"1-{instance:03d}.dcm"
            ds.save_as(path, enforce_file_format=True)
            if defect == "truncated_slice" and k == n // 2:
                with open(path, "r+b") as handle:
                    handle.truncate(path.stat().st_size - stored.nbytes // 2)
            if defect == "duplicate_slice" and k == n // 2:
                ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = _uid(
                    config, truth.patient_id, "ct-duplicate"
                )
                ds.InstanceNumber = n + 1
                ds.save_as(ct_dir / f"1-{n + 1:03d}.dcm", enforce_file_format=True)

    if defect == "no_rtstruct":
        return
    rois = dict(rendered.rois)
    if defect == "no_gtv":
        rois.pop("GTV-1")
        rois.pop("GTV-2", None)
    # distractors come first, so "take the first ROI" is wrong
    order = [name for name in ("PTV-1", "Lung R", "Lung L", "GTV-1", "GTV-2") if name in rois]
    rtstruct_uid = _uid(config, truth.patient_id, "rtstruct")
    ds = Dataset()
    ds.file_meta = _file_meta(RTSTRUCT_SOP_CLASS, rtstruct_uid)
    _common(ds, truth, study_uid, frame_uid)
    ds.SOPClassUID = RTSTRUCT_SOP_CLASS
    ds.SOPInstanceUID = rtstruct_uid
    ds.SeriesInstanceUID = _uid(config, truth.patient_id, "rtstruct-series")
    ds.Modality = "RTSTRUCT"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.StructureSetLabel = "synthetic"
    ds.StructureSetDate, ds.StructureSetTime = "20000101", "120000"

    def image_refs(indices) -> DicomSequence:
        refs = []
        for k in indices:
            ref = Dataset()
            ref.ReferencedSOPClassUID = CT_SOP_CLASS
            ref.ReferencedSOPInstanceUID = slice_uids[k]
            refs.append(ref)
        return DicomSequence(refs)

    series_ref = Dataset()
    series_ref.SeriesInstanceUID = ct_series_uid
    series_ref.ContourImageSequence = image_refs(range(n))
    study_ref = Dataset()
    study_ref.ReferencedSOPClassUID = STUDY_ROOT_SOP_CLASS
    study_ref.ReferencedSOPInstanceUID = study_uid
    study_ref.RTReferencedSeriesSequence = DicomSequence([series_ref])
    frame_ref = Dataset()
    frame_ref.FrameOfReferenceUID = frame_uid
    frame_ref.RTReferencedStudySequence = DicomSequence([study_ref])
    ds.ReferencedFrameOfReferenceSequence = DicomSequence([frame_ref])

    structure_rois, contour_rois, observations = [], [], []
    for number, name in enumerate(order, start=1):
        roi = Dataset()
        roi.ROINumber = number
        roi.ReferencedFrameOfReferenceUID = frame_uid
        roi.ROIName = name
        roi.ROIGenerationAlgorithm = "MANUAL"
        structure_rois.append(roi)
        contour_roi = Dataset()
        contour_roi.ReferencedROINumber = number
        contour_roi.ROIDisplayColor = [255, 0, 0] if name.startswith("GTV") else [0, 128, 255]
        if not (defect == "empty_gtv" and name == "GTV-1"):
            contours = []
            for k, polygon in sorted(rois[name].items()):
                contour = Dataset()
                contour.ContourImageSequence = image_refs([k])
                contour.ContourGeometricType = "CLOSED_PLANAR"
                contour.NumberOfContourPoints = len(polygon)
                points = np.column_stack([polygon, np.full(len(polygon), z_mm[k])])
                contour.ContourData = [f"{value:.3f}" for value in points.ravel()]
                contours.append(contour)
            contour_roi.ContourSequence = DicomSequence(contours)
        contour_rois.append(contour_roi)
        observation = Dataset()
        observation.ObservationNumber = number
        observation.ReferencedROINumber = number
        observation.RTROIInterpretedType = (
            name.split("-")[0] if name[:3] in ("GTV", "PTV") else "ORGAN"
        )
        observation.ROIInterpreter = ""
        observations.append(observation)
    ds.StructureSetROISequence = DicomSequence(structure_rois)
    ds.ROIContourSequence = DicomSequence(contour_rois)
    ds.RTROIObservationsSequence = DicomSequence(observations)
    rtstruct_dir = study_dir / f"1.000000-NA-{int(rtstruct_uid[-5:]):05d}"
    rtstruct_dir.mkdir(parents=True, exist_ok=True)
    ds.save_as(rtstruct_dir / "1-1.dcm", enforce_file_format=True)


def clinical_rows(truths: Sequence[PatientTruth]) -> pd.DataFrame:
    """The clinical table in Lung1 v3 format, defects applied."""
    rows = []
    for truth in truths:
        if truth.defect == "no_clinical_row":
            continue
        row = {
            "PatientID": truth.patient_id,
            "age": f"{truth.age_years:.4f}" if truth.age_recorded else "NA",
            "clinical.T.Stage": truth.t_stage,
            "Clinical.N.Stage": truth.n_stage,
            "Clinical.M.Stage": truth.m_stage,
            "Overall.Stage": truth.overall_stage,
            "Histology": truth.histology or "NA",
            "gender": truth.gender,
            "Survival.time": truth.survival_time_days,
            "deadstatus.event": "NA" if truth.defect == "missing_label" else truth.deadstatus_event,
        }
        rows.append(row)
        if truth.defect == "duplicate_clinical_row":
            rows.append({**row, "Survival.time": truth.survival_time_days + 30})
    return pd.DataFrame(rows, columns=list(V3_COLUMNS))


def oracle_metrics(eta: dict[str, np.ndarray], time_days: np.ndarray, event: np.ndarray) -> dict:
    """C-index and AUCs of the true risk scores: the best any model can reach on these labels."""
    from sklearn.metrics import roc_auc_score

    os_2y_known = (event == 1) | (time_days > OS_2Y_HORIZON_DAYS)
    os_2y = ((event == 1) & (time_days <= OS_2Y_HORIZON_DAYS)).astype(int)

    def auc(y_true: np.ndarray, y_score: np.ndarray) -> float | None:
        return float(roc_auc_score(y_true, y_score)) if len(np.unique(y_true)) == 2 else None

    def c_index(score: np.ndarray) -> float | None:
        try:
            return harrell_c_index(time_days, event, score)
        except ValueError:  # no comparable pair in a tiny sample
            return None

    # None (JSON null) where a metric is undefined on this sample (one class only)
    return {
        name: {
            "c_index_harrell": c_index(score),
            "auc_os_2y": auc(os_2y[os_2y_known], score[os_2y_known]),
            "auc_deadstatus_event": auc(event, score),
        }
        for name, score in eta.items()
    }


def population_oracle(n: int = 4000, seed: int = 12345) -> dict:
    """Oracle metrics on a large sample from the generating model (no images needed)."""
    rng = np.random.default_rng(seed)
    predictor = _linear_predictor(_draw_features(rng, n))
    event_time, censoring = _draw_times(rng, predictor["eta"])
    time_days = np.maximum(1, np.rint(np.minimum(event_time, censoring)))
    return oracle_metrics(predictor, time_days, (event_time <= censoring).astype(int))


def _write_one(task: tuple[SynthConfig, PatientTruth, str]) -> str:
    config, truth, dicom_root = task
    write_patient(config, truth, Path(dicom_root))
    return truth.patient_id


def write_cohort(
    config: SynthConfig,
    out_dir: str | os.PathLike,
    show_progress: bool = True,
    on_progress: Callable[[float], None] | None = None,
) -> dict:
    """Write the whole synthetic cohort to ``out_dir`` and return its metadata
    (``on_progress(fraction of patients written)`` as it goes)."""
    out_dir = Path(out_dir)
    dicom_root = out_dir / "dicom"
    if dicom_root.exists() and any(dicom_root.iterdir()):
        raise FileExistsError(f"{dicom_root} is not empty; choose a new --out folder")
    dicom_root.mkdir(parents=True, exist_ok=True)
    defects = parse_defects(config)
    truths = [
        simulate_patient(config, number, defects.get(number, ""))
        for number in range(1, config.n_patients + 1)
    ]
    tasks = [(config, truth, str(dicom_root)) for truth in truths]
    workers = worker_count(config.workers, len(tasks), parallel_min=4)
    parallel_map(
        _write_one,
        tasks,
        workers,
        "Writing synthetic DICOM",
        "patient",
        show_progress,
        on_progress=on_progress,
    )

    write_text_atomic(out_dir / "clinical.csv", clinical_rows(truths).to_csv(index=False))
    truth_table = pd.DataFrame(
        [
            {
                **asdict(t),
                "survival_time_days": t.survival_time_days,
                "deadstatus_event": t.deadstatus_event,
            }
            for t in truths
        ]
    )
    write_text_atomic(out_dir / "synth_truth.csv", truth_table.to_csv(index=False))
    clean = truth_table[truth_table.defect == ""]
    metadata = {
        "generator": "nsclc_engine.synth",
        "config": asdict(config),
        "generating_model": {
            "description": __doc__.split("Generating model")[1].split("Heterogeneity")[0].strip(),
            "coefficients": COEFFICIENTS,
            "eta_offset": ETA_OFFSET,
            "image_terms": list(IMAGE_TERMS),
            "clinical_terms": list(CLINICAL_TERMS),
            "log_volume_mean": LOG_VOLUME_MEAN,
            "log_volume_sd": LOG_VOLUME_SD,
            "heterogeneity_beta": list(HETEROGENEITY_BETA),
            "age_mean_sd": [AGE_MEAN, AGE_SD],
            "weibull_scale_days": WEIBULL_SCALE_DAYS,
            "weibull_shape": WEIBULL_SHAPE,
            "accrual_censoring_days": list(ACCRUAL_CENSORING_DAYS),
            "dropout_mean_days": DROPOUT_MEAN_DAYS,
        },
        "oracle": {
            "note": "metrics of the true linear predictor (eta), its image part and its clinical "
            "part: no model can beat 'eta' except by chance",
            "sample": {
                "n_patients": len(clean),
                **oracle_metrics(
                    {name: clean[name].to_numpy() for name in ("eta", "eta_image", "eta_clinical")},
                    clean.survival_time_days.to_numpy(float),
                    clean.deadstatus_event.to_numpy(),
                ),
            },
            "population": population_oracle(),
        },
        "defects": {patient_id(config, number): kind for number, kind in sorted(defects.items())},
        "expected_exclusions": {
            patient_id(config, number): DEFECTS[kind].value
            for number, kind in sorted(defects.items())
        },
    }
    write_text_atomic(out_dir / "synth_metadata.json", json.dumps(metadata, indent=2) + "\n")
    save_config(config, out_dir / "synth_config.json")
    return metadata


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nsclc_engine.synth",
        description="Write the synthetic Lung1-format demo cohort "
        "(DICOM CT + RTSTRUCT + clinical CSV).",
    )
    parser.add_argument("--out", required=True, help="output folder (must not hold a cohort yet)")
    parser.add_argument("--patients", type=int, help="number of patients (default 100)")
    parser.add_argument("--seed", type=int, help="random seed (default 0)")
    parser.add_argument(
        "--defects", help="'auto', 'none' or 'NUMBER:KIND,...'; kinds: " + ", ".join(DEFECTS)
    )
    add_config_arguments(parser, SynthConfig)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    overrides = list(args.set)
    for key, value in (
        ("n_patients", args.patients),
        ("seed", args.seed),
        ("defects", args.defects),
    ):
        if value is not None:
            overrides.append(f"{key}={value}")
    try:
        config = load_config(SynthConfig, args.config, overrides)
        if config.n_patients < 1:
            raise ValueError(f"n_patients={config.n_patients}: need at least 1 patient")
        metadata = write_cohort(config, args.out, show_progress=not args.quiet)
    except (ValueError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    best = metadata["oracle"]["sample"]["eta"]
    print(
        f"Wrote {config.n_patients} synthetic patients to {args.out} "
        f"({len(metadata['defects'])} deliberately broken)."
    )
    shown = [f"{name} {'undefined' if v is None else f'{v:.3f}'}" for name, v in best.items()]
    print("Best achievable on this cohort (true risk score): " + ", ".join(shown) + ".")
    print(
        f"Next: python -m nsclc_engine.cohort --dicom {Path(args.out) / 'dicom'} "
        f"--clinical {Path(args.out) / 'clinical.csv'} --out {Path(args.out) / 'cohort'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
