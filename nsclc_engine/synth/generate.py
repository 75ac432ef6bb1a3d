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
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from nsclc_engine.atomic import write_text_atomic
from nsclc_engine.cohort.clinical import OS_2Y_HORIZON_DAYS, V3_COLUMNS
from nsclc_engine.config import add_config_arguments, cli_error, load_config, save_config
from nsclc_engine.parallel import parallel_map, worker_count
from nsclc_engine.stats.survival import harrell_c_index
from nsclc_engine.synth.dicom_writer import write_patient
from nsclc_engine.synth.outcome import (
    ACCRUAL_CENSORING_DAYS,
    AGE_MEAN,
    AGE_SD,
    CLINICAL_TERMS,
    COEFFICIENTS,
    DEFECTS,
    DROPOUT_MEAN_DAYS,
    ETA_OFFSET,
    HETEROGENEITY_BETA,
    IMAGE_TERMS,
    LOG_VOLUME_MEAN,
    LOG_VOLUME_SD,
    WEIBULL_SCALE_DAYS,
    WEIBULL_SHAPE,
    PatientTruth,
    SynthConfig,
    _draw_features,
    _draw_times,
    _linear_predictor,
    parse_defects,
    patient_id,
    simulate_patient,
)

CLINICAL_FILE = "clinical.csv"
TRUTH_FILE = "synth_truth.csv"
METADATA_FILE = "synth_metadata.json"
CONFIG_FILE = "synth_config.json"


def read_truth(source_dir: str | os.PathLike) -> pd.DataFrame | None:
    """The per-patient truth (``TRUTH_FILE``) of a synthetic cohort written to ``source_dir``;
    ``None`` where there is none (real data)."""
    path = Path(source_dir) / TRUTH_FILE
    return pd.read_csv(path, dtype={"patient_id": str}) if path.is_file() else None


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

    os_2y_known = (event == 1) | (time_days >= OS_2Y_HORIZON_DAYS)  # as cohort.clinical
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

    write_text_atomic(out_dir / CLINICAL_FILE, clinical_rows(truths).to_csv(index=False))
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
    write_text_atomic(out_dir / TRUTH_FILE, truth_table.to_csv(index=False))
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
    write_text_atomic(out_dir / METADATA_FILE, json.dumps(metadata, indent=2) + "\n")
    save_config(config, out_dir / CONFIG_FILE)
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
    except (ValueError, OSError) as error:
        return cli_error(error)
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
