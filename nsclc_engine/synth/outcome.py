"""The synthetic cohort's outcome model: each patient's latent features, true risk
(``eta``), stage, clinical fields and event times, and the deliberate defects (see
:mod:`nsclc_engine.synth.generate` for the generating model)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nsclc_engine.cohort.build import Reason

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
