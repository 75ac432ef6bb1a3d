"""The Patient page: the patients of a split with their calls, one patient's case, and for
survival runs the patient's predicted survival curve (:func:`patient_survival`). Which other
runs can answer a page the selected run cannot (:func:`runs_answering`)."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from nsclc_engine.dashboard.run_view import RunView, load_run, part_predictions, run_kind
from nsclc_engine.dashboard.survival_probabilities import fold_baselines, horizon_label
from nsclc_engine.evaluate.figures import COLOURS, LAYOUT
from nsclc_engine.evaluate.survival import (
    BASELINE_KINDS,
    horizon_columns,
    survival_at,
)
from nsclc_engine.explain.cache import explain_patient, patient_uncertainty
from nsclc_engine.explain.gradcam import (
    CtMap,
    ExplainConfig,
    gradcam_layers,
    input_map_to_ct,
    methods_for,
)
from nsclc_engine.explain.viewer import PatientCase, load_case
from nsclc_engine.review.store import source_of
from nsclc_engine.runs import list_runs, read_raw_status, read_saved_config, resolved_cohort
from nsclc_engine.runs import run_dir as run_folder
from nsclc_engine.stats.calibration import RECALIBRATION_METHODS
from nsclc_engine.stats.survival import kaplan_meier
from nsclc_engine.task_spec import DEFAULT_NETWORK

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
    saved = view.threshold.operating_point
    if saved.get("threshold") is not None:
        return {
            "threshold": float(saved["threshold"]),
            "recalibration": saved.get("recalibration", "none"),
            "source": f"saved operating point ({saved.get('rule', 'manual')}, on validation)",
        }
    for entry in view.threshold.fitted_thresholds:
        if int(entry.get("fold", 0)) == int(fold):
            rule = view.threshold.fitted.get("rule", "rule")
            return {
                "threshold": float(entry["threshold"]),
                "recalibration": "none",
                "source": f"{rule} fitted on validation (fold {fold})",
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
    threshold in force, the probability's margin over it and the call, and TP/FP/TN/FN;
    filtered by true and predicted label, with false negatives then false positives first.
    Survival: risk (higher = earlier death), its percentile in the split, time and event,
    highest risk first.
    """
    frame = view.predictions[view.predictions.split == split].copy()
    if view.config.get("task") == "survival":
        frame["risk_percentile"] = frame.risk.rank(pct=True) * 100
        return frame.sort_values("risk", ascending=False).reset_index(drop=True)
    frame["y_prob_recalibrated"] = part_predictions(
        view.predictions, split, recalibration
    ).y_prob.loc[frame.index]
    scales = {"none": frame.y_prob}
    thresholds, calls, margins = [], [], []
    for row in frame.itertuples():
        rule = threshold_in_force(view, row.fold)
        scale = rule["recalibration"]
        if scale not in scales:
            scales[scale] = part_predictions(view.predictions, split, scale).y_prob
        thresholds.append(rule["threshold"])
        margins.append(scales[scale][row.Index] - rule["threshold"])
        calls.append(int(margins[-1] >= 0))
    frame["threshold"] = thresholds
    frame["margin"] = margins  # the probability (on the threshold's scale) minus the threshold
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
    cohort = resolved_cohort(view.config)
    return (cohort / "cohort.csv").stat().st_mtime_ns if cohort else 0


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


def network_of(view: RunView) -> str:
    """The network a run trained (runs from before networks had names: the ResNet-18)."""
    return view.config.get("model") or DEFAULT_NETWORK


def method_choices(view: RunView) -> tuple[str, ...]:
    """The attribution methods the run's network allows (no Grad-CAM on the ViT)."""
    return methods_for(network_of(view))


def layer_choices(view: RunView) -> tuple[str, ...]:
    """The Grad-CAM layers of the run's network, finer first (``none`` without one)."""
    return gradcam_layers(network_of(view)) or ("none",)


def comparison_config(other: RunView, method: str, layer: str) -> ExplainConfig:
    """How the map of a run shown beside this one is computed: the same method and layer
    where its network has them; else saliency, and its coarsest layer."""
    layers = layer_choices(other)
    return ExplainConfig(
        method=method if method in method_choices(other) else "saliency",
        layer=layer if layer in layers else layers[-1],
    )


def uncertainty(view: RunView, fold: int, patient_id: str, case: PatientCase, model) -> dict:
    """The prediction's spread under test-time augmentation (cached under the run)."""
    task = view.config.get("task", "classification")
    return patient_uncertainty(view.run_dir, fold, patient_id, case.input_image, task, model=model)


def comparable_runs(artifacts: str | os.PathLike, view: RunView, patient_id: str) -> list[dict]:
    """Other finished trained runs whose maps can stand beside ``view``'s for this patient:
    the same data source, the patient among their predictions. Each: run id, the fold whose
    model scored the patient (out of fold where the run has folds) and the patient's split."""
    source = source_of(view.config)
    found = []
    for run in list_runs(artifacts):
        folder = run_folder(run["run_id"], artifacts)
        config = read_saved_config(folder)
        state = read_raw_status(folder).get("state")
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


def patient_splits(view: RunView) -> list[str]:
    """The splits the case list offers, those the run has: its held-out part (test, or
    external) first, then validation and train."""
    present = set(view.predictions.split)
    return [split for split in (view.held_out, "validation", "train") if split in present]


def split_of(view: RunView, patient_id: str, preferred: str | None = None) -> str | None:
    """The split to open ``patient_id`` in: ``preferred`` where it holds them, else the first
    split of :func:`patient_splits` that does (``None``: the run did not score them)."""
    held = set(view.predictions.split[view.predictions.patient_id == patient_id])
    if preferred in held:
        return preferred
    return next((split for split in patient_splits(view) if split in held), None)


# --- a survival run's patient: the predicted survival curve ---------------------------------


def patient_survival(
    view: RunView, split: str, patient_id: str, fold: int, kind: str = "raw"
) -> dict:
    """What the Patient page shows about a survival run's patient (``fold``: the fold whose
    model scored them in ``split``).

    ``risk`` (the log hazard); ``curve``: the patient's predicted survival, ``time`` from 0
    over the baseline's death times to the split's last follow-up and ``survival`` =
    ``Baseline.survival(risk, time)`` under the fold's saved baseline of ``kind`` (``None``,
    and ``curve_note`` why, where the run saved none); ``km``: the Kaplan-Meier curve of the
    split's patients (from time 0, survival 1). ``horizons``: per horizon of the run's
    survival columns, the patient's predicted ``survival`` and its ``percentile`` in the
    split, the share (%) of the split's rows predicted to survive no better (each row under
    its own fold's baseline; pooled over folds, as the case list)."""
    if kind not in BASELINE_KINDS:
        raise ValueError(f"baseline {kind!r}: choose from {tuple(BASELINE_KINDS)}")
    rows = view.predictions[view.predictions.split == split].reset_index(drop=True)
    mine = np.flatnonzero((rows.patient_id == patient_id) & (rows.fold == fold))
    if not len(mine):
        raise ValueError(
            f"run {view.run_id}: no {split} row of patient {patient_id} in fold {fold}"
        )
    position = int(mine[0])
    risk = float(rows.risk.iloc[position])
    km = kaplan_meier(rows.time_days, rows.event)
    state: dict = {
        "patient_id": patient_id,
        "split": split,
        "fold": int(fold),
        "kind": kind,
        "risk": risk,
        "n": len(rows),
        "n_deaths": int(rows.event.sum()),
        "km": {"time": np.r_[0.0, km["time"]], "survival": np.r_[1.0, km["survival"]]},
        "curve": None,
        "horizons": [],
    }
    baselines = fold_baselines(view, kind)
    columns = horizon_columns(view.predictions)
    if int(fold) in baselines:
        baseline = baselines[int(fold)]
        end = max(float(rows.time_days.max()), baseline.follow_up)
        times = np.unique(np.r_[0.0, baseline.times, end])
        state["curve"] = {"time": times, "survival": baseline.survival([risk], times)[0]}
        state["follow_up_days"] = baseline.follow_up
        values = {h: survival_at(rows, baselines, h) for h in columns}
    elif kind == "raw" and columns:
        values = {h: rows[column].to_numpy(dtype=float) for h, column in columns.items()}
        state["curve_note"] = (
            "This run holds survival at fixed horizons only (no baseline saved), so there is "
            "no whole curve to draw."
        )
    else:
        values = {}
        state["curve_note"] = (
            f"Run {view.run_id} has no {kind} baseline for fold {fold}: only its risk score is "
            "known."
        )
    for horizon, survival in values.items():
        known = survival[np.isfinite(survival)]
        if not np.isfinite(survival[position]):
            continue
        state["horizons"].append(
            {
                "horizon_days": float(horizon),
                "label": horizon_label(horizon),
                "survival": float(survival[position]),
                "percentile": float(100 * np.mean(known <= survival[position])),
                "n": len(known),
            }
        )
    return state


def survival_text(entry: dict, split: str) -> str:
    """``Survival at 2 years: 34 % (percentile 57 in the test split)``."""
    return (
        f"Survival at {entry['label']}: {100 * entry['survival']:.0f} % (percentile "
        f"{entry['percentile']:.0f} in the {split} split)"
    )


def survival_curve_figure(state: dict) -> go.Figure:
    """The patient's predicted survival curve beside the Kaplan-Meier curve of their split,
    with the patient's predicted survival marked at each horizon."""
    figure = go.Figure()
    km = state["km"]
    figure.add_trace(
        go.Scatter(
            x=km["time"],
            y=km["survival"],
            mode="lines",
            line={"shape": "hv", "color": "grey"},
            name=f"{state['split']} split, observed (Kaplan-Meier, {state['n']} patients)",
        )
    )
    if state["curve"] is not None:
        figure.add_trace(
            go.Scatter(
                x=state["curve"]["time"],
                y=state["curve"]["survival"],
                mode="lines",
                line={"shape": "hv", "color": COLOURS[1]},
                name=f"{state['patient_id']}, predicted",
            )
        )
    if state["horizons"]:
        figure.add_trace(
            go.Scatter(
                x=[h["horizon_days"] for h in state["horizons"]],
                y=[h["survival"] for h in state["horizons"]],
                mode="markers+text",
                text=[f"{h['survival']:.0%} at {h['label']}" for h in state["horizons"]],
                textposition="top right",
                marker={"size": 9, "color": COLOURS[1]},
                showlegend=False,
            )
        )
    figure.update_layout(
        title=f"Predicted survival of {state['patient_id']} and of the {state['split']} split",
        xaxis={"title": "days since diagnosis"},
        yaxis={"title": "probability of being alive", "range": [0, 1.02]},
        legend={"orientation": "h", "y": -0.25},
        **LAYOUT,
    )
    return figure


# --- pages a run cannot answer: the runs that can ---------------------------------------------

CASE_MISSING = {
    "imported": "an imported run: its predictions were made elsewhere, so there is no model or "
    "CT here to show.",
    "frozen features": "a frozen-feature run: a linear model on a pretrained encoder's features "
    "made its predictions, so there is no trained network whose attention could be shown.",
    "external validation": "an external-validation run: its predictions were made by a frozen "
    "run on another cohort; open that run for its cases.",
}


def why_no_case(view: RunView) -> str:
    """Why the Patient page cannot show ``view``'s CT and attention maps (``""``: it can)."""
    return "" if view.kind == "trained" else f"Run `{view.run_id}` is {CASE_MISSING[view.kind]}"


def case_of(patient_id: str) -> Callable[[RunView], str]:
    """The question "can this run show ``patient_id``'s CT and attention maps?" as a
    :func:`runs_answering` test: a trained run that scored the patient."""

    def why_not(view: RunView) -> str:
        if why_no_case(view):
            return why_no_case(view)
        if not (view.predictions.patient_id == patient_id).any():
            return f"run {view.run_id} did not score {patient_id}"
        return ""

    return why_not


def why_not_classification(view: RunView) -> str:
    """Why ``view`` cannot answer a page about probabilities of a yes/no label (``""``: it
    can): a survival run gives a risk over time."""
    if view.config.get("task") == "survival":
        return f"Run `{view.run_id}` is a survival run (a risk over time, not a yes/no label)."
    return ""


def why_not_survival(view: RunView) -> str:
    """Why ``view`` cannot answer a page about survival over time (``""``: it can): a
    classification run predicts a yes/no label only."""
    if view.config.get("task") != "survival":
        return f"Run `{view.run_id}` is a classification run (a yes/no label, no survival times)."
    return ""


def runs_answering(
    artifacts: str | os.PathLike, why_not: Callable[[RunView], str], exclude: str = ""
) -> list[str]:
    """The finished runs in ``artifacts`` that can answer what a page asks (``why_not(view)``
    is ``""``), newest first, ``exclude`` (the selected run) left out."""
    found = []
    for run in reversed(list_runs(artifacts)):
        if run["run_id"] == exclude or run.get("state") != "finished":
            continue
        view = load_run(run_folder(run["run_id"], artifacts))
        if view.finished and not why_not(view):
            found.append(view.run_id)
    return found
