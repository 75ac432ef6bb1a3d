"""Experiments over seeds on the pages (:mod:`nsclc_engine.evaluate.experiment`): the Runs
table's experiment rows, the fitted threshold's spread and the metrics at a threshold over
seeds (Threshold page), a patient's prediction by every seed (Patient page), and the
C-index over seeds beside one run's (Survival page)."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from nsclc_engine.dashboard.patient import patient_table
from nsclc_engine.dashboard.run_view import RunView, part_predictions
from nsclc_engine.dashboard.runs import TEST_AUC, TEST_C
from nsclc_engine.evaluate.experiment import interval, read_summary, spread_text
from nsclc_engine.evaluate.figures import LAYOUT
from nsclc_engine.stats.metrics import metrics_at_threshold
from nsclc_engine.task_spec import spec_of

SPREAD_METRICS = ("sensitivity", "specificity", "f1", "precision", "npv")


def summary_of(artifacts: str | os.PathLike, view: RunView) -> dict | None:
    """The summary of the experiment ``view`` belongs to (``None``: not in one)."""
    name = view.config.get("experiment")
    return read_summary(artifacts, name) if name else None


def finished_runs(summary: dict | None) -> list[str]:
    """The experiment's finished runs, by seed."""
    runs = summary["runs"] if summary else []
    return [run["run_id"] for run in runs if run["state"] == "finished"]


def experiment_rows(
    overview: pd.DataFrame, summaries: dict[str, dict], expanded=()
) -> pd.DataFrame:
    """The Runs table with each experiment as one row (``run_id`` its name, ``kind``
    "experiment", its headline metrics as mean ± SD, ``seeds`` finished / runs) in place of
    its runs, which follow it only for the experiments in ``expanded``. ``overview``'s rows
    carry their experiment in an ``experiment`` column (blank for other runs)."""
    rows, placed = [], set()
    for _, row in overview.iterrows():
        name = row.get("experiment") or ""
        if not name or name not in summaries:
            rows.append(row.to_dict())
            continue
        if name in placed:
            continue
        placed.add(name)
        summary = summaries[name]
        rows.append(_experiment_row(name, summary, row))
        if name in expanded:
            members = overview[overview.experiment == name]
            rows += [
                member.to_dict() | {"run_id": f"  {member.run_id}"}
                for _, member in members.iterrows()
            ]
    return pd.DataFrame(rows, columns=[*overview.columns, "seeds"])


def _experiment_row(name: str, summary: dict, first: pd.Series) -> dict:
    splits = summary.get("splits", {})
    spec = spec_of(summary)
    key, survival = spec.metric_key, spec.name == "survival"
    held_out = "test" if "test" in splits else "external"
    runs = summary.get("runs", [])
    return {
        "run_id": name,
        "state": f"{summary.get('n_finished', 0)} of {len(runs)} finished",
        "kind": "experiment",
        "progress": summary.get("n_finished", 0) / max(len(runs), 1),
        "task": first.get("task"),
        "label": first.get("label"),
        "experiment": name,
        "seeds": f"{summary.get('n_finished', 0)} / {len(runs)}",
        f"validation {spec.metric_name}": _mean_sd(splits, "validation", key),
        TEST_C if survival else TEST_AUC: _mean_sd(splits, held_out, key),
        "share of achievable": _mean_sd(splits, held_out, "share of achievable", percent=True),
    }


def _mean_sd(splits: dict, split: str, metric: str, percent: bool = False) -> str:
    entry = splits.get(split, {}).get(metric)
    if not entry or not entry.get("n"):
        return ""
    if percent:
        return (
            f"{entry['mean']:.0%} ± {entry['sd']:.0%}" if entry["n"] > 1 else f"{entry['mean']:.0%}"
        )
    return spread_text(entry).split(" (")[0] + f" (n={entry['n']})"


def threshold_spread(views: list[RunView], split: str, threshold: float, scale: str) -> dict:
    """Over the experiment's runs: the threshold each fitted on its validation rows
    (:func:`~nsclc_engine.evaluate.experiment.interval` of them) and the metrics of each run's
    ``split`` at ``threshold`` on probability ``scale`` (``{metric: interval}``)."""
    fitted, at = [], {name: [] for name in SPREAD_METRICS}
    for view in views:
        for entry in view.threshold.fitted_thresholds:
            if int(entry.get("fold", 0)) == 0:
                fitted.append(float(entry["threshold"]))
        frame = part_predictions(view.predictions, split, scale)
        if frame.empty:
            continue
        metrics = metrics_at_threshold(frame.y_true, frame.y_prob, threshold)
        for name in SPREAD_METRICS:
            if np.isfinite(metrics[name]):
                at[name].append(metrics[name])
    return {
        "fitted": interval(fitted),
        "metrics": {name: interval(values) for name, values in at.items() if values},
        "n_runs": len(views),
    }


def patient_by_seed(
    views: list[RunView], patient_id: str, horizon_days: float = 730
) -> pd.DataFrame:
    """The patient's prediction by each run of the experiment: ``seed``, ``run_id``,
    ``split`` (the seed's split of the patient), ``value`` (the probability of the label, or
    survival at ``horizon_days``) and ``call`` (at each run's threshold in force; survival
    runs: none)."""
    rows = []
    for view in views:
        found = view.predictions[view.predictions.patient_id.astype(str) == patient_id]
        if found.empty:
            continue
        split = str(found.split.iloc[0])
        seed = int(view.config.get("seed", 0))
        if view.config.get("task") == "survival":
            column = f"survival_{horizon_days:g}d"
            if column not in found:
                continue
            rows.append(
                {
                    "seed": seed,
                    "run_id": view.run_id,
                    "split": split,
                    "value": float(found[column].mean()),
                    "call": None,
                }
            )
            continue
        table = patient_table(view, split, errors_first=False)
        row = table[table.patient_id.astype(str) == patient_id].iloc[0]
        rows.append(
            {
                "seed": seed,
                "run_id": view.run_id,
                "split": split,
                "value": float(row.y_prob),
                "call": int(row.call),
            }
        )
    return pd.DataFrame(rows, columns=["seed", "run_id", "split", "value", "call"])


def seed_strip_figure(frame: pd.DataFrame, what: str) -> go.Figure:
    """One dot per seed on [0, 1], coloured by its call: a reviewer sees whether the call
    depends on the seed."""
    colours = frame.call.map({1: "#d62728", 0: "#1f77b4"}).fillna("#555555")
    figure = go.Figure(
        go.Scatter(
            x=frame.value,
            y=[0] * len(frame),
            mode="markers+text",
            marker={"size": 14, "color": list(colours), "line": {"width": 1, "color": "white"}},
            # each seed draws its own split: a train-split dot is an in-sample prediction
            text=[
                f"seed {seed} ({split})"
                for seed, split in zip(frame.seed, frame.split, strict=True)
            ],
            textposition="top center",
            hovertemplate="%{text}: %{x:.3f}<extra></extra>",
        )
    )
    figure.update_layout(
        height=150,
        xaxis={"title": what, "range": [0, 1]},
        yaxis={"visible": False, "range": [-0.5, 1]},
        margin={"l": 20, "r": 20, "t": 10, "b": 40},
        **{k: v for k, v in LAYOUT.items() if k not in ("height", "margin")},
    )
    return figure


def with_seed_spread(table: pd.DataFrame, summary: dict | None) -> pd.DataFrame:
    """The Survival page's C-index table with each model's mean ± SD over the experiment's
    seeds on the same split (where the run belongs to one)."""
    if not summary:
        return table
    splits = summary.get("splits", {})
    spread = [
        spread_text(splits.get(row.split, {}).get(f"c_index: {row.model}", {}))
        for row in table.itertuples()
    ]
    return table.assign(**{"over seeds (mean ± SD, 95% CI)": spread})
