"""The Patient page: the patients of a split with their calls, and one patient's case."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from nsclc_engine.dashboard.run_view import RunView, part_predictions, run_kind
from nsclc_engine.explain.cache import explain_patient, patient_uncertainty
from nsclc_engine.explain.gradcam import CtMap, ExplainConfig, input_map_to_ct
from nsclc_engine.explain.viewer import PatientCase, load_case
from nsclc_engine.stats.calibration import RECALIBRATION_METHODS

SPLITS = ("test", "validation", "train")  # the case list opens on test
RECALIBRATIONS = tuple(m for m in RECALIBRATION_METHODS if m != "none")
OUTCOME_ORDER = {"FN": 0, "FP": 1, "TP": 2, "TN": 3}


OUTCOME_NAMES = {
    "FN": "false negative",
    "FP": "false positive",
    "TP": "true positive",
    "TN": "true negative",
}


def threshold_in_force(view: RunView, fold: int = 0) -> dict:
    """The threshold a patient's call uses: the saved operating point (on its probability
    scale), else the threshold fitted on ``fold``'s validation predictions (raw scale)."""
    saved = (view.threshold or {}).get("operating_point") or {}
    if saved.get("threshold") is not None:
        return {
            "threshold": float(saved["threshold"]),
            "recalibration": saved.get("recalibration", "none"),
            "source": f"saved operating point ({saved.get('rule', 'manual')}, on validation)",
        }
    fitted = (view.threshold or {}).get("fitted") or {}
    for entry in fitted.get("thresholds", []):
        if int(entry.get("fold", 0)) == int(fold):
            return {
                "threshold": float(entry["threshold"]),
                "recalibration": "none",
                "source": f"{fitted.get('rule', 'rule')} fitted on validation (fold {fold})",
            }
    return {"threshold": 0.5, "recalibration": "none", "source": "0.5 (nothing fitted yet)"}


def patient_table(
    view: RunView,
    split: str,
    recalibration: str = "platt",
    true_label: int | None = None,
    predicted: int | None = None,
    errors_first: bool = True,
) -> pd.DataFrame:
    """The patients of one split with what the case page shows about each.

    Classification: raw and recalibrated (on each fold's validation rows) probability, the
    threshold in force and its call, and TP/FP/TN/FN; filtered by true and predicted label, with
    false negatives then false positives first. Survival: risk (higher = earlier death), its
    percentile in the split, time and event, highest risk first.
    """
    frame = view.predictions[view.predictions.split == split].copy()
    if view.config.get("task") == "survival":
        frame["risk_percentile"] = frame.risk.rank(pct=True) * 100
        return frame.sort_values("risk", ascending=False).reset_index(drop=True)
    frame["y_prob_recalibrated"] = part_predictions(
        view.predictions, split, recalibration
    ).y_prob.loc[frame.index]
    scales = {"none": frame.y_prob}
    thresholds, calls = [], []
    for row in frame.itertuples():
        rule = threshold_in_force(view, row.fold)
        scale = rule["recalibration"]
        if scale not in scales:
            scales[scale] = part_predictions(view.predictions, split, scale).y_prob
        thresholds.append(rule["threshold"])
        calls.append(int(scales[scale][row.Index] >= rule["threshold"]))
    frame["threshold"] = thresholds
    frame["call"] = calls
    names = np.array([["TN", "FP"], ["FN", "TP"]])
    frame["outcome"] = names[frame.y_true.to_numpy(int), frame.call.to_numpy(int)]
    if true_label is not None:
        frame = frame[frame.y_true == true_label]
    if predicted is not None:
        frame = frame[frame.call == predicted]
    if errors_first:
        order = frame.outcome.map(OUTCOME_ORDER)
        frame = frame.assign(_order=order).sort_values(["_order", "patient_id"])
        frame = frame.drop(columns="_order")
    else:
        frame = frame.sort_values("patient_id")
    return frame.reset_index(drop=True)


def cohort_stamp(view: RunView) -> int:
    """Changes when the run's cohort is rebuilt (a cache key for the case viewer)."""
    path = Path((view.config.get("resolved") or {}).get("cohort_dir", "")) / "cohort.csv"
    return path.stat().st_mtime_ns if path.is_file() else 0


def patient_case(view: RunView, patient_id: str):
    """The patient's CT, GTV and network input as the run saw them (:mod:`nsclc_engine.viewer`)."""

    resolved = view.config.get("resolved") or {}
    if not resolved.get("cohort_dir"):
        raise ValueError(f"run {view.run_id}: config.json has no resolved cohort; rerun it")
    return load_case(
        resolved["cohort_dir"], resolved["cache_dir"], resolved["preprocess"], patient_id
    )


def attribution_maps(
    view: RunView, fold: int, patient_id: str, case: PatientCase, config: ExplainConfig, model
) -> tuple[np.ndarray, CtMap, bool]:
    """The patient's attribution map on the network input, the same map on the CT voxels,
    and whether it is flat (cached under the run, :func:`~nsclc_engine.explain.cache.
    explain_patient`)."""
    attribution, _ = explain_patient(
        view.run_dir, fold, patient_id, case.input_image, config, model=model
    )
    return attribution.scores, input_map_to_ct(attribution.scores, case.geometry), attribution.flat


def uncertainty(view: RunView, fold: int, patient_id: str, case: PatientCase, model) -> dict:
    """The prediction's spread under test-time augmentation (cached under the run)."""
    task = view.config.get("task", "classification")
    return patient_uncertainty(view.run_dir, fold, patient_id, case.input_image, task, model=model)


def comparable_runs(artifacts: str | os.PathLike, view: RunView, patient_id: str) -> list[dict]:
    """Other finished trained runs whose maps can stand beside ``view``'s for this patient:
    the same data source, the patient among their predictions. Each: run id, the fold whose
    model scored the patient (out of fold where the run has folds) and the patient's split."""
    from nsclc_engine.dashboard.run_view import load_run
    from nsclc_engine.review.store import source_of
    from nsclc_engine.runs import list_runs, read_json
    from nsclc_engine.runs import run_dir as run_folder

    source = source_of(view.config)
    found = []
    for run in list_runs(artifacts):
        folder = run_folder(run["run_id"], artifacts)
        config = read_json(folder / "config.json") or {}
        state = (read_json(folder / "status.json") or {}).get("state")
        if run["run_id"] == view.run_id or state != "finished" or run_kind(config) != "trained":
            continue
        if source_of(config) != source:
            continue
        other = load_run(folder)
        rows = other.predictions[other.predictions.patient_id == patient_id]
        held = rows[rows.split != "train"] if (rows.split != "train").any() else rows
        if not held.empty:
            found.append(
                {
                    "run_id": other.run_id,
                    "fold": int(held.fold.iloc[0]),
                    "split": str(held.split.iloc[0]),
                }
            )
    return found


def note_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Review notes as a page lists them: newest first, readable columns, state in force."""
    shown = frame.sort_values("note_id", ascending=False).copy()
    withdrawn = (
        "withdrawn by " + shown.withdrawn_by.astype(str) + " " + shown.withdrawn_at.astype(str)
    )
    shown["state"] = np.where(shown.withdrawn_at.isna(), "in force", withdrawn)
    columns = ["note_id", "patient_id", "run_id", "flag_name", "text", "author", "created_at"]
    return shown[[*columns, "state"]].rename(columns={"flag_name": "flag"}).reset_index(drop=True)
