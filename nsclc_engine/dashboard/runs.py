"""The Runs page: every run with its state and headline result, comparisons of two runs,
and the demo jobs queued on the first start."""

from __future__ import annotations

import os
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from nsclc_engine.dashboard.run_view import (
    RunView,
    curves,
    load_run,
    part_predictions,
    run_kind,
    test_verdict,
)
from nsclc_engine.evaluate.multiplicity import holm_adjust
from nsclc_engine.paths import artifacts_dir
from nsclc_engine.run_records import Metrics
from nsclc_engine.runs import (
    list_runs,
    new_run_id,
    read_metrics,
    read_saved_config,
    read_threshold,
)
from nsclc_engine.runs import run_dir as run_folder
from nsclc_engine.stats.metrics import delong_test, threshold_sweep
from nsclc_engine.stats.survival import harrell_c_index, paired_c_index_difference
from nsclc_engine.task_spec import spec_of
from nsclc_engine.train.config import TrainConfig
from nsclc_engine.train.jobs import launch

FIRST_START_MARKER = ".first_start_done"
HELD_OUT = "(held out, not for choosing)"
TEST_AUC = f"test AUC {HELD_OUT}"
TEST_C = f"test C-index {HELD_OUT}"
VALIDATION_RANK = "rank on validation"


def runs_overview(artifacts: str | os.PathLike | None = None) -> pd.DataFrame:
    """One row per run, newest first: state, progress, label, preset, test AUC with CI, times."""

    rows = []
    for run in list_runs(artifacts):
        run_dir = run_folder(run["run_id"], artifacts)
        config = read_saved_config(run_dir)
        metrics = read_metrics(run_dir)
        threshold = read_threshold(run_dir).in_force
        held_out = metrics.held_out
        test_split = metrics.split(held_out)
        test = test_split.get("auc", {})
        c_index = test_split.get("c_index", {}).get("c_index")
        yardstick = test_verdict(metrics)
        share_low, share_high = yardstick.get("share_ci_low"), yardstick.get("share_ci_high")
        rows.append(
            {
                "run_id": run["run_id"],
                "state": run.get("state"),
                "kind": run_kind(config),
                "held-out part": held_out,
                "progress": float(run.get("progress", 0.0)),
                "stage": run.get("stage", ""),
                "task": spec_of(config).name,
                "protocol": config.get("protocol", ""),
                "label": config.get("label"),
                # a features run's input is its recipe's (FMCIB: a 50 mm cube), not a preset
                "preset": preset_of(config),
                "network": network_name(config),
                # a search's trial: its study and number (its test part is held out)
                "study": f"{config['study']} #{config.get('trial')}" if config.get("study") else "",
                "experiment": config.get("experiment", ""),
                "parameters (M)": run.get("model", {}).get("parameters", float("nan")) / 1e6,
                "folds": config.get("folds", 0),
                "shuffled labels": bool(config.get("shuffle_labels", False)),
                "validation AUC": validation_score(run_dir, metrics, "auc"),
                "validation C-index": validation_score(run_dir, metrics, "c_index"),
                TEST_AUC: test.get("auc"),
                "test AUC 95% CI": (
                    f"{test['ci_low']:.3f}-{test['ci_high']:.3f}" if test else None
                ),
                TEST_C: c_index,
                "best achievable (image)": yardstick.get("best"),
                "share of achievable": yardstick.get("share"),
                "share 95% CI": (
                    f"{share_low:.0%}-{share_high:.0%}"
                    if share_low is not None and share_high is not None
                    else None
                ),
                "threshold": threshold,
                "created": run.get("created"),
                "finished": run.get("finished"),
            }
        )
    # the results first (validation, the one to choose by): the table is wider than a page
    columns = ["run_id", "state", "progress", "kind", "task", "label", VALIDATION_RANK]
    columns += ["validation AUC", "validation C-index", "held-out part", TEST_AUC]
    columns += ["test AUC 95% CI", TEST_C, "best achievable (image)", "share of achievable"]
    columns += ["share 95% CI", "protocol"]
    columns += ["shuffled labels", "stage", "network", "parameters (M)", "preset", "folds"]
    columns += ["study", "experiment"]
    columns += ["threshold", "created", "finished"]
    frame = pd.DataFrame(rows, columns=[c for c in columns if c != VALIDATION_RANK])
    frame = frame.iloc[::-1].reset_index(drop=True)
    frame.insert(columns.index(VALIDATION_RANK), VALIDATION_RANK, validation_rank(frame))
    return frame


def validation_score(run_dir: Path, metrics: Metrics, key: str) -> float | None:
    """A finished run's validation AUC (``key`` ``auc``) or C-index (``c_index``): from
    ``metrics.json`` for a single split, else the mean over folds of each fold's validation
    predictions; ``None`` without validation predictions (imported, external) or another
    task. Optimistic (the best epoch was chosen on it), but the number to choose runs by."""
    if (key == "c_index") != (metrics.get("task") == "survival") or not metrics.splits:
        return None
    block = metrics.split("validation").get(key)
    if block:
        return float(block[key])
    view = load_run(run_dir)
    if view.predictions is None:
        return None
    values = []
    for _, rows in view.predictions[view.predictions.split == "validation"].groupby("fold"):
        try:
            if key == "auc":
                values.append(threshold_sweep(rows.y_true, rows.y_prob).roc_auc())
            else:
                values.append(harrell_c_index(rows.time_days, rows.event, rows.risk))
        except ValueError:  # one class, no comparable pair: that fold has no value
            continue
    return float(np.mean(values)) if values else None


def validation_rank(frame: pd.DataFrame) -> pd.Series:
    """1 = best validation AUC (or C-index) among finished runs of the same task and label;
    empty where a run has no validation value. Test never ranks runs."""
    score = frame["validation AUC"].astype(float).fillna(frame["validation C-index"].astype(float))
    score = score.where(frame.state == "finished")
    rank = score.groupby([frame.task, frame.label.fillna("")]).rank(ascending=False, method="min")
    return rank.astype("Int64")


def ranked_by_validation(frame: pd.DataFrame) -> pd.DataFrame:
    """The overview for choosing: queued and running runs first, then finished runs by their
    rank on validation (within task and label), then the rest newest first."""
    active = frame.state.isin(["queued", "running"])
    order = pd.DataFrame(
        {
            "group": np.where(active, 0, np.where(frame[VALIDATION_RANK].notna(), 1, 2)),
            "task": frame.task.fillna(""),
            "label": frame.label.fillna("").astype(str),
            "rank": frame[VALIDATION_RANK].astype(float).fillna(np.inf),
            "position": np.arange(len(frame)),
        }
    )
    chosen = order.sort_values(["group", "task", "label", "rank", "position"]).index
    return frame.loc[chosen].reset_index(drop=True)


def blank_missing(frame: pd.DataFrame, formats: dict[str, str]) -> pd.DataFrame:
    """``frame`` as text for a table a person reads: each column of ``formats`` written with
    its format (``"{:.3f}"``), every missing value an empty cell (Streamlit's grid writes
    "None" in an empty cell; a blank says "nothing here" without a word to misread)."""
    shown = frame.copy()
    for column in frame.columns:
        form = formats.get(column, "{}")
        if column in formats or frame[column].isna().any():
            shown[column] = [_shown(value, form) for value in frame[column]]
    return shown


def _shown(value, form: str) -> str:
    """A number in its column's format, text as it is (an experiment's "mean ± SD"), a
    missing value blank."""
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return ""  # pandas' NA too: a nullable integer column's ("<NA>" in the grid otherwise)
    is_number = isinstance(value, int | float | np.number) and not isinstance(value, bool)
    return form.format(value) if is_number else str(value)


def compare_runs(a: RunView, b: RunView) -> dict:
    """Side-by-side held-out metrics (test, or external) of two finished runs and, on their
    shared held-out patients with the same labels, DeLong's test of the AUC difference (a - b).
    A k-fold run's pooled test probabilities come from several models: they are compared only
    after each fold's own recalibration (Platt, fitted on that fold's validation rows)."""
    rows = []
    for view in (a, b):
        splits = view.metrics.splits
        for part in ("validation", view.held_out):
            if part in splits:
                auc = splits[part]["auc"]
                rows.append(
                    {
                        "run": view.run_id,
                        "split": part,
                        "n": splits[part]["n"],
                        "AUC": auc["auc"],
                        "95% CI": f"{auc['ci_low']:.3f}-{auc['ci_high']:.3f}",
                        "Brier": splits[part].get("brier", {}).get("value"),
                    }
                )
    result: dict = {"table": pd.DataFrame(rows), "delong": None, "note": ""}
    test_a = part_predictions(a.predictions, a.held_out, _pooling(a)).set_index("patient_id")
    test_b = part_predictions(b.predictions, b.held_out, _pooling(b)).set_index("patient_id")
    shared = test_a.index.intersection(test_b.index)
    same_labels = a.config.get("label") == b.config.get("label")
    same_labels &= bool((test_a.loc[shared, "y_true"] == test_b.loc[shared, "y_true"]).all())
    if len(shared) < 4 or not same_labels:
        result["note"] = (
            "The runs share too few held-out patients, or their labels differ: no paired test."
        )
    else:
        try:
            result["delong"] = delong_test(
                test_a.loc[shared, "y_true"],
                test_a.loc[shared, "y_prob"],
                test_b.loc[shared, "y_prob"],
            ) | {"n_shared": len(shared)}
        except ValueError as error:
            result["note"] = str(error)
    return result


def _pooling(view: RunView) -> str:
    """How a run's held-out probabilities are pooled for a comparison: per-fold Platt for a
    k-fold run, as they are (one model) otherwise."""
    held_out = view.predictions[view.predictions.split == view.held_out]
    return "platt" if held_out.fold.max() > held_out.fold.min() else "none"


def compare_survival_runs(a: RunView, b: RunView) -> dict:
    """Side-by-side C-indices of two finished survival runs and, on their shared test patients
    with the same times and events, the paired bootstrap difference of Harrell's C (a - b).
    Where either run is k-fold, only pairs of patients scored by the same fold model in each
    run are compared: the risks of two Cox models have no common location."""

    rows = []
    for view in (a, b):
        for part, value in view.metrics.splits.items():
            rows.append(
                {
                    "run": view.run_id,
                    "split": part,
                    "n": value["n"],
                    "events": value["n_events"],
                    "C-index": value["c_index"]["c_index"],
                    "95% CI": f"{value['c_index']['ci_low']:.3f}-{value['c_index']['ci_high']:.3f}",
                }
            )
    result: dict = {"table": pd.DataFrame(rows), "difference": None, "note": ""}
    test_a = a.predictions[a.predictions.split == a.held_out].set_index("patient_id")
    test_b = b.predictions[b.predictions.split == b.held_out].set_index("patient_id")
    shared = test_a.index.intersection(test_b.index)
    columns = ["time_days", "event"]
    if len(shared) < 4 or not test_a.loc[shared, columns].equals(test_b.loc[shared, columns]):
        result["note"] = (
            "The runs share too few test patients, or their times/events differ: no paired test."
        )
        return result
    strata = None
    if any(t.fold.max() > t.fold.min() for t in (test_a, test_b)):
        strata = (
            test_a.loc[shared, "fold"].astype(str) + "/" + test_b.loc[shared, "fold"].astype(str)
        ).to_numpy()
    try:
        result["difference"] = paired_c_index_difference(
            test_a.loc[shared, "time_days"],
            test_a.loc[shared, "event"],
            test_a.loc[shared, "risk"],
            test_b.loc[shared, "risk"],
            strata=strata,
        )
    except ValueError as error:
        result["note"] = str(error)
    return result


def pairwise_tests(views: list[RunView]) -> pd.DataFrame:
    """Every paired test the Runs page can show among ``views`` (finished runs of one task):
    each pair sharing held-out patients with the same outcomes, DeLong's AUC difference
    (classification) or the paired bootstrap C-index difference (survival), a - b, with raw
    and Holm-adjusted p-values over all the pairs tested (the family a reader picks from)."""
    rows = []
    for a, b in combinations(views, 2):
        survival = a.config.get("task") == "survival"
        if survival != (b.config.get("task") == "survival"):
            continue
        result = compare_survival_runs(a, b) if survival else compare_runs(a, b)
        test = result["difference"] if survival else result["delong"]
        if test:
            rows.append(
                {
                    "a": a.run_id,
                    "b": b.run_id,
                    "shared patients": test.get("n_shared", test.get("n")),
                    "difference (a - b)": test["difference"],
                    "95% CI": f"{test['ci_low']:+.3f} to {test['ci_high']:+.3f}",
                    "p": test["p_value"],
                }
            )
    columns = ["a", "b", "shared patients", "difference (a - b)", "95% CI", "p", "p (Holm)"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["p (Holm)"] = holm_adjust(frame.p.astype(float))
    return frame


def pair_line(tests: pd.DataFrame, a: str, b: str) -> str:
    """The Holm-adjusted p of the pair (a, b) among ``tests`` (:func:`pairwise_tests`), as one
    sentence saying how many comparisons the adjustment covers."""
    chosen = tests[((tests.a == a) & (tests.b == b)) | ((tests.a == b) & (tests.b == a))]
    if chosen.empty:
        return ""
    return (
        f"One of {len(tests)} pairwise comparisons among the finished runs: Holm-adjusted "
        f"p = {chosen['p (Holm)'].iloc[0]:.3f} (raw p = {chosen.p.iloc[0]:.3f})."
    )


def compare_roc(a: RunView, b: RunView) -> list[dict]:
    """The held-out ROC curve of each of two classification runs, with its AUC."""
    result = []
    for view in (a, b):
        drawn = curves(part_predictions(view.predictions, view.held_out))
        name = f"{view.run_id} ({view.held_out})"
        result.append({"name": name, **drawn["roc"], "auc": drawn["auc"]})
    return result


def baseline_table(view: RunView) -> pd.DataFrame:
    """The run beside its baselines on the same held-out patients: AUC with 95 % CI and the
    paired DeLong difference (run - baseline). Imported runs' baselines are fitted out of fold
    on exactly the imported patients; trained runs' on the run's training split."""
    metrics, held_out = view.metrics, view.metrics.held_out
    run = metrics.splits.get(held_out)
    if run is None or not metrics.baselines:
        return pd.DataFrame()
    rows = [
        {
            "model": f"{view.run_id} (this run)",
            "n": run["n"],
            "AUC": run["auc"]["auc"],
            "95% CI": f"{run['auc']['ci_low']:.3f}-{run['auc']['ci_high']:.3f}",
            "run - model (95% CI)": "",
            "p (DeLong)": None,
            "p (Holm)": None,
        }
    ]
    for name, entry in metrics["baselines"].items():
        if held_out not in entry:
            continue
        block, delong = entry[held_out]["auc"], entry.get("delong_image_vs_baseline")
        rows.append(
            {
                "model": f"{name} baseline",
                "n": entry[held_out]["n"],
                "AUC": block["value"],
                "95% CI": f"{block['ci_low']:.3f}-{block['ci_high']:.3f}",
                "run - model (95% CI)": (
                    f"{delong['difference']:+.3f} ({delong['ci_low']:+.3f} to "
                    f"{delong['ci_high']:+.3f})"
                    if delong
                    else ""
                ),
                "p (DeLong)": delong["p_value"] if delong else None,
            }
        )
    frame = pd.DataFrame(rows)
    frame["p (Holm)"] = holm_adjust(frame["p (DeLong)"].astype(float))
    frame.attrs["n_comparisons"] = int(frame["p (DeLong)"].notna().sum())
    return frame


DEMO_JOBS = (("demo", "classification"), ("demo-survival", "survival"))


def launch_demo_jobs(artifacts: str | os.PathLike | None = None) -> list[str]:
    """Queue the demo's two runs with the house defaults: a classification run (2-year
    survival) first, so its results come soonest, then a survival run (Cox head) on the same
    cohort, so every page has something to show. Run ids are ``demo`` and ``demo-survival``
    when free, else time stamps."""

    root = Path(artifacts or artifacts_dir())
    taken = {run["run_id"] for run in list_runs(root)}
    # when the plain names are taken: one time stamp, so the queue keeps this order
    prefix = "" if not taken & {name for name, _ in DEMO_JOBS} else new_run_id() + "-"
    return [launch(TrainConfig(task=task), root, run_id=prefix + name) for name, task in DEMO_JOBS]


def first_start(artifacts: str | os.PathLike | None = None) -> str | None:
    """On the very first start (no run, no marker): launch the demo jobs, which build the
    demo cohort themselves; returns the first run's id. Never again once the marker exists."""

    root = Path(artifacts or artifacts_dir())
    marker = root / FIRST_START_MARKER
    if marker.exists() or list_runs(root) or os.environ.get("NSCLC_NO_AUTOSTART"):
        return None
    root.mkdir(parents=True, exist_ok=True)
    try:  # exclusive creation: of sessions starting at once, exactly one launches the demo
        with open(marker, "x") as handle:
            handle.write("the dashboard launched the demo jobs on its first start\n")
    except FileExistsError:
        return None
    return launch_demo_jobs(root)[0]


def network_name(config: dict) -> str:
    """The network a run used: the one it trained, ``NAME (frozen)`` for a frozen-feature
    run's encoder, nothing for predictions made elsewhere."""
    kind = run_kind(config)
    if kind == "frozen features":
        return f"{config.get('model', '')} (frozen)"
    # a trained run's config as read (runs.migrated: one from before networks had names
    # trained the ResNet-18); blank for a folder without a config
    return config.get("model", "") if kind == "trained" else ""


def preset_of(config: dict) -> str | None:
    """The input a run's network saw: its preset, or a features run's recipe (FMCIB's is a
    50 mm cube whatever the preset; MedicalNet's takes the preset's size)."""
    if config.get("kind") != "features":
        return config.get("preset")
    recipe = config.get("recipe", "")
    return f"{recipe}, {config.get('preset')}" if recipe == "medicalnet" else recipe
