"""What the dashboard pages show, computed here (no Streamlit): runs, splits, thresholds,
calibration and run comparison. Pages only lay these out."""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from nsclc_engine.paths import artifacts_dir
from nsclc_engine.stats.calibration import fit_recalibrator
from nsclc_engine.stats.metrics import (
    bootstrap_metrics,
    choose_threshold,
    delong_test,
    threshold_sweep,
)

FIRST_START_MARKER = ".first_start_done"
RULE_BUTTONS = (
    ("youden", None, "Youden J"),
    ("max_f1", None, "max F1"),
    ("spec_at_sens", 0.8, "best specificity at sensitivity ≥ 0.8"),
    ("sens_at_spec", 0.8, "best sensitivity at specificity ≥ 0.8"),
)


@dataclass(frozen=True)
class RunView:
    """One run folder, read once: whatever exists of config, status, predictions, metrics."""

    run_id: str
    run_dir: Path
    config: dict
    status: dict
    predictions: pd.DataFrame | None = None
    metrics: dict | None = None
    threshold: dict | None = None
    history: list[dict] = field(default_factory=list)
    splits: list[dict] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.predictions is not None and self.status.get("state") == "finished"


def _json(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def load_run(run_dir: str | os.PathLike) -> RunView:
    run_dir = Path(run_dir)
    predictions = None
    if (run_dir / "predictions.csv").exists():
        predictions = pd.read_csv(run_dir / "predictions.csv", dtype={"patient_id": str})
    history_path = run_dir / "history.jsonl"
    history = (
        [json.loads(line) for line in history_path.read_text().splitlines() if line.strip()]
        if history_path.exists()
        else []
    )
    splits = (_json(run_dir / "splits.json") or {}).get("splits", [])
    return RunView(
        run_dir.name,
        run_dir,
        _json(run_dir / "config.json") or {},
        _json(run_dir / "status.json") or {},
        predictions,
        _json(run_dir / "metrics.json"),
        _json(run_dir / "threshold.json"),
        history,
        splits,
    )


def runs_overview(artifacts: str | os.PathLike | None = None) -> pd.DataFrame:
    """One row per run, newest first: state, progress, label, preset, test AUC with CI, times."""
    from nsclc_engine.runs import list_runs

    rows = []
    for run in list_runs(artifacts):
        run_dir = Path(artifacts or artifacts_dir()) / "runs" / run["run_id"]
        config = _json(run_dir / "config.json") or {}
        metrics = _json(run_dir / "metrics.json") or {}
        threshold = (_json(run_dir / "threshold.json") or {}).get("threshold")
        test_split = metrics.get("splits", {}).get("test", {})
        test = test_split.get("auc", {})
        c_index = test_split.get("c_index", {}).get("c_index")
        yardstick = test_verdict(metrics)
        rows.append(
            {
                "run_id": run["run_id"],
                "state": run.get("state"),
                "progress": float(run.get("progress", 0.0)),
                "stage": run.get("stage", ""),
                "task": config.get("task", "classification"),
                "protocol": config.get("protocol", "report"),  # older runs: the report's
                "label": config.get("label"),
                "preset": config.get("preset"),
                "folds": config.get("folds", 0),
                "shuffled labels": bool(config.get("shuffle_labels", False)),
                "test AUC": test.get("auc"),
                "test AUC 95% CI": (
                    f"{test['ci_low']:.3f}-{test['ci_high']:.3f}" if test else None
                ),
                "test C-index": c_index,
                "best achievable (image)": yardstick["best"] if yardstick else None,
                "share of achievable": yardstick["share"] if yardstick else None,
                "threshold": threshold,
                "created": run.get("created"),
                "finished": run.get("finished"),
            }
        )
    # the results first: the table is wider than a page
    columns = ["run_id", "state", "progress", "task", "label", "test AUC", "test AUC 95% CI"]
    columns += ["test C-index", "best achievable (image)", "share of achievable", "protocol"]
    columns += ["shuffled labels", "stage", "preset", "folds", "threshold", "created", "finished"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.iloc[::-1].reset_index(drop=True)


def test_verdict(metrics: dict) -> dict | None:
    """The test result against the best achievable on the same patients (synthetic cohort):
    ``value, ci_low, ci_high, best`` (image part), ``best_full``, ``learns``, ``no_leak``,
    ``share`` and ``metric``; ``None`` for real data or runs without test metrics."""
    from nsclc_engine.evaluate.yardstick import best_for, judge_run, metric_key

    judgement = judge_run(metrics)
    if judgement is None or judgement.best is None:
        return None
    return judgement.to_dict() | {
        "best_full": best_for(metrics, "test", "eta"),
        "metric": "C-index" if metric_key(metrics) == "c_index" else "AUC",
    }


def verdict_text(verdict: dict) -> str:
    """One sentence for a page: the test metric against the best achievable on its patients."""
    share = "" if verdict["share"] is None else f", {verdict['share']:.0%} of the achievable signal"
    leak = (
        ""
        if verdict["no_leak"]
        else " Its CI lies wholly above what the truth reaches: treat it as a leak until explained."
    )
    return (
        f"Test {verdict['metric']} {verdict['value']:.3f} ({verdict['ci_low']:.3f}-"
        f"{verdict['ci_high']:.3f}). On these test patients the image part of the true risk "
        f"reaches {verdict['best']:.3f} (the full true risk {verdict['best_full']:.3f}): "
        f"{'above chance' if verdict['learns'] else 'not clearly above chance'}{share}.{leak}"
    )


# --- dataset and splits ------------------------------------------------------------------------


def split_overview(view: RunView) -> dict:
    """The report's Table 1 per fold, class balance before and after sampling, leakage check."""
    from nsclc_engine.cohort.splits import check_disjoint, split_table
    from nsclc_engine.preprocess.dataset import expected_balance

    if view.predictions is None or not view.splits:
        return {}
    outcome = "event" if view.config.get("task") == "survival" else "y_true"
    labels = view.predictions.drop_duplicates("patient_id").set_index("patient_id")[outcome]
    tables, balance, leaks = [], [], []
    for fold, split in enumerate(view.splits):
        table = split_table(split, labels.to_dict()).assign(fold=fold)
        tables.append(table)
        train_labels = [int(labels[p]) for p in split["train"]]
        expected = expected_balance(train_labels, bool(view.config.get("use_sampler", True)))
        balance.append(
            {"fold": fold, **{f"class {k} share per epoch": v for k, v in expected.items()}}
        )
        try:
            check_disjoint(split)
        except ValueError as error:
            leaks.append(f"fold {fold}: {error}")
    return {
        "table": pd.concat(tables, ignore_index=True),
        "sampling": pd.DataFrame(balance),
        "leaks": leaks,
        "folds": len(view.splits),
    }


# --- threshold explorer ------------------------------------------------------------------------


def part_predictions(
    predictions: pd.DataFrame, split: str, recalibration: str = "none"
) -> pd.DataFrame:
    """The rows of one split (test: pooled out of fold), with ``y_prob`` recalibrated on each
    fold's validation rows when ``recalibration`` is not ``none``. ``frame.attrs["notes"]``
    lists what the page should say (small-sample warnings, fits that fell back to raw)."""
    frame = predictions[predictions.split == split].copy()
    notes: list[str] = []
    if recalibration != "none":
        for fold, rows in frame.groupby("fold"):
            validation = predictions[
                (predictions.split == "validation") & (predictions.fold == fold)
            ]
            try:
                recalibrator = fit_recalibrator(validation.y_true, validation.y_prob, recalibration)
            except ValueError as error:
                notes.append(f"fold {fold}: {error}; showing raw probabilities")
                continue
            frame.loc[rows.index, "y_prob"] = recalibrator.apply(rows.y_prob)
            if recalibrator.warning and recalibrator.warning not in notes:
                notes.append(recalibrator.warning)
    frame.attrs["notes"] = notes
    return frame


def curves(frame: pd.DataFrame) -> dict:
    """ROC and precision-recall curves with AUC and AP of one set of predictions."""
    sweep = threshold_sweep(frame.y_true, frame.y_prob)
    fpr, tpr = sweep.roc_curve()
    recall, precision = sweep.pr_curve()
    return {
        "roc": {"fpr": fpr, "tpr": tpr},
        "pr": {"recall": recall, "precision": precision},
        "auc": sweep.roc_auc(),
        "average_precision": sweep.average_precision(),
        "sweep": sweep,
    }


def rule_thresholds(predictions: pd.DataFrame, recalibration: str = "none") -> dict[str, float]:
    """The threshold of each rule of :data:`RULE_BUTTONS`, fitted on validation predictions
    (the first fold's for k-fold runs); a rule whose target cannot be met is left out."""
    validation = part_predictions(predictions, "validation", recalibration)
    validation = validation[validation.fold == validation.fold.min()]
    result = {}
    for rule, target, name in RULE_BUTTONS:
        try:
            result[name] = choose_threshold(
                validation.y_true, validation.y_prob, rule, target
            ).threshold
        except ValueError:
            continue
    return result


def threshold_state(frame: pd.DataFrame, threshold: float, n_resamples: int = 1000) -> dict:
    """Metrics at ``threshold`` (counts and rates) with bootstrap 95 % CIs, and the curves.

    The bootstrap draws patients, not rows: pooled k-fold validation rows repeat patients."""
    result = curves(frame)
    intervals = bootstrap_metrics(
        frame.y_true, frame.y_prob, threshold, n_resamples, seed=0, groups=frame.patient_id
    )
    return {
        "metrics": result.pop("sweep").at(threshold),
        "ci": {
            key: (value["ci_low"], value["ci_high"])
            for key, value in intervals.items()
            if isinstance(value, dict)
        },
        "prevalence": float(np.mean(frame.y_true)),
        **result,
    }


def save_threshold(
    run_dir: str | os.PathLike, value: float, rule: str, split: str, recalibration: str
) -> dict:
    """Save the operating threshold into the run's ``threshold.json`` (beside the thresholds
    evaluation fitted). Only a threshold chosen on validation predictions is accepted."""
    from nsclc_engine.evaluate.run import write_threshold_file

    if not 0.0 <= value <= 1.0:
        raise ValueError(f"threshold {value} must lie in [0, 1]")
    if split != "validation":
        raise ValueError(
            "choose the threshold on validation predictions; test predictions only show what a "
            "threshold already chosen does"
        )
    point = {
        "threshold": float(value),
        "rule": rule,
        "split_used": split,
        "recalibration": recalibration,
        "written": dt.datetime.now().isoformat(timespec="seconds"),
        "source": "dashboard",
    }
    return write_threshold_file(run_dir, operating_point=point)["operating_point"]


# --- comparing runs ----------------------------------------------------------------------------


def compare_runs(a: RunView, b: RunView) -> dict:
    """Side-by-side test metrics of two finished runs and, on their shared test patients with
    the same labels, DeLong's test of the AUC difference (a - b)."""
    rows = []
    for view in (a, b):
        splits = (view.metrics or {}).get("splits", {})
        for part in ("validation", "test"):
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
    test_a = part_predictions(a.predictions, "test").set_index("patient_id")
    test_b = part_predictions(b.predictions, "test").set_index("patient_id")
    shared = test_a.index.intersection(test_b.index)
    same_labels = (test_a.loc[shared, "y_true"] == test_b.loc[shared, "y_true"]).all()
    if len(shared) < 4 or not same_labels:
        result["note"] = (
            "The runs share too few test patients, or their labels differ: no paired test."
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


# --- launching ---------------------------------------------------------------------------------


PROTOCOL_NOTES = {
    "house": (
        "the default, learnable and honest",
        "2-year survival as the label (on the demo at least 30 patients of each class in "
        "validation and test), a fixed field of view that keeps tumour size, every class "
        "augmented alike, class weights only, Adam 3e-4, batch 8, the best epoch by "
        "validation AUC (C-index for survival).",
    ),
    "report": (
        "the technical report's settings, to reproduce it",
        "Deceased at last follow-up as the label: about 10 survivors in an 84-patient "
        "validation split, so its threshold and calibration rest on a handful of patients. "
        "Minority-only augmentation lets the network read the label from the resampling "
        "smoothness, and sampler plus class weights correct the imbalance twice. Not the "
        "default for these reasons; results are marked with a warning.",
    ),
}


def protocol_defaults(name: str) -> dict:
    """The Train form's starting values: the named protocol's ``TrainConfig`` as a dict."""
    from dataclasses import asdict

    from nsclc_engine.train.config import protocol_config

    return asdict(protocol_config(name))


def validate_train_form(values: dict) -> tuple[object | None, list[str]]:
    """A ``TrainConfig`` from the Train page's fields on top of the chosen protocol's
    settings, or the messages saying what to fix."""
    from dataclasses import asdict

    from nsclc_engine.train.config import TrainConfig, protocol_config

    errors = []
    values = dict(values)
    if values.get("source") == "demo":
        values["dicom"] = values["clinical"] = ""
    else:
        dicom, clinical = values.get("dicom", "").strip(), values.get("clinical", "").strip()
        if not dicom or not Path(dicom).is_dir():
            errors.append(f"DICOM folder {dicom!r} is not a folder on this server")
        if not clinical or not Path(clinical).is_file():
            errors.append(f"clinical CSV {clinical!r} is not a file on this server")
        values["dicom"], values["clinical"] = dicom, clinical
    pretrained = values.get("pretrained", "").strip()
    if pretrained and not Path(pretrained).is_file():
        errors.append(f"pretrained weights {pretrained!r} are not a file on this server")
    if not 0 < float(values.get("lr", 1e-3)) < 1:
        errors.append("learning rate must lie between 0 and 1")
    if values.get("folds", 0) == 1 or values.get("folds", 0) < 0:
        errors.append("folds must be 0 (one split) or at least 2")
    values.pop("source", None)
    if values.get("task") == "survival":
        values["label"] = "deadstatus_event"  # the event; the time is survival_time_days
    if errors:
        return None, errors
    try:
        # the fields the form does not show keep the chosen protocol's values
        base = asdict(protocol_config(values.pop("protocol", "house")))
        return TrainConfig(**(base | values)), []
    except (TypeError, ValueError) as error:
        return None, [str(error)]


DEMO_JOBS = (("demo", "classification"), ("demo-survival", "survival"))


def launch_demo_jobs(artifacts: str | os.PathLike | None = None) -> list[str]:
    """Queue the demo's two runs with the house defaults: a classification run (2-year
    survival) first, so its results come soonest, then a survival run (Cox head) on the same
    cohort, so every page has something to show. Run ids are ``demo`` and ``demo-survival``
    when free, else time stamps."""
    from nsclc_engine.train.jobs import launch
    from nsclc_engine.runs import list_runs
    from nsclc_engine.train.config import TrainConfig
    from nsclc_engine.runs import new_run_id

    root = Path(artifacts or artifacts_dir())
    taken = {run["run_id"] for run in list_runs(root)}
    # when the plain names are taken: one time stamp, so the queue keeps this order
    prefix = "" if not taken & {name for name, _ in DEMO_JOBS} else new_run_id() + "-"
    return [launch(TrainConfig(task=task), root, run_id=prefix + name) for name, task in DEMO_JOBS]


def first_start(artifacts: str | os.PathLike | None = None) -> str | None:
    """On the very first start (no run, no marker): launch the demo jobs, which build the
    demo cohort themselves; returns the first run's id. Never again once the marker exists."""
    from nsclc_engine.runs import list_runs

    root = Path(artifacts or artifacts_dir())
    marker = root / FIRST_START_MARKER
    if marker.exists() or list_runs(root) or os.environ.get("NSCLC_NO_AUTOSTART"):
        return None
    root.mkdir(parents=True, exist_ok=True)
    marker.write_text("the dashboard launched the demo jobs on its first start\n")
    return launch_demo_jobs(root)[0]


def log_tail(run_dir: str | os.PathLike, lines: int = 20) -> str:
    path = Path(run_dir) / "train.log"
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# --- patient case review -----------------------------------------------------------------------

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
    from nsclc_engine.explain.viewer import load_case

    resolved = view.config.get("resolved") or {}
    if not resolved.get("cohort_dir"):
        raise ValueError(f"run {view.run_id}: config.json has no resolved cohort; rerun it")
    return load_case(
        resolved["cohort_dir"], resolved["cache_dir"], resolved["preprocess"], patient_id
    )


# --- survival runs -----------------------------------------------------------------------------


def survival_models(view: RunView) -> pd.DataFrame | None:
    """The run's ``survival_models.csv`` (image / clinical / volume / fusion risks), if any."""
    path = Path(view.run_dir) / "survival_models.csv"
    if not path.exists():
        return None
    return pd.read_csv(path, dtype={"patient_id": str})


def c_index_table(view: RunView) -> pd.DataFrame:
    """Harrell's C with its 95 % CI per model and split, from ``metrics.json``."""
    from nsclc_engine.evaluate.baselines import in_sample

    models = (view.metrics or {}).get("models", {})
    rows = []
    for name, per_split in models.get("c_index", {}).items():
        for part, value in per_split.items():
            rows.append(
                {
                    "model": name,
                    "split": part,
                    "C-index": value["c_index"],
                    "95% CI": f"{value['ci_low']:.3f}-{value['ci_high']:.3f}",
                    "fitted on these patients": in_sample(name, part),
                    "what": models["description"].get(name, ""),
                }
            )
    columns = ["model", "split", "C-index", "95% CI", "fitted on these patients", "what"]
    return pd.DataFrame(rows, columns=columns)


def time_dependent_table(view: RunView) -> pd.DataFrame:
    """Uno's C, time-dependent AUC at 1 and 2 years and IBS per model and fold (test)."""
    rows = []
    for entry in ((view.metrics or {}).get("models") or {}).get("folds", []):
        for name, values in entry.items():
            if isinstance(values, dict) and "time_dependent_auc" in values:
                rows.append(
                    {
                        "fold": entry["fold"],
                        "model": name,
                        "Uno C": values["uno_c_index"],
                        **{f"AUC {k}": v for k, v in values["time_dependent_auc"].items()},
                        "IBS": values["integrated_brier_score"],
                    }
                )
    return pd.DataFrame(rows)


def risk_group_state(models: pd.DataFrame, model: str, split: str, quantile: float) -> dict:
    """Kaplan-Meier by risk group and the log-rank test for ``model``'s risks on ``split``,
    cut at the ``quantile`` of each fold's *validation* risks (0.5: the median)."""
    from nsclc_engine.stats.survival import groups_at

    if not 0 < quantile < 1:
        raise ValueError(f"quantile {quantile} must lie strictly between 0 and 1")
    rows, cuts = [], []
    for _, frame in models.groupby("fold"):
        cut = float(np.quantile(frame.loc[frame.split == "validation", model], quantile))
        part = frame[frame.split == split]
        rows.append(part.assign(high=part[model] > cut))
        cuts.append(cut)
    chosen = pd.concat(rows, ignore_index=True)
    return {
        "cuts": cuts,
        "n_high": int(chosen.high.sum()),
        "n_low": int((~chosen.high).sum()),
        **groups_at(chosen.time_days, chosen.event, chosen.high),
    }


def compare_survival_runs(a: RunView, b: RunView) -> dict:
    """Side-by-side C-indices of two finished survival runs and, on their shared test patients
    with the same times and events, the paired bootstrap difference of Harrell's C (a - b)."""
    from nsclc_engine.stats.survival import paired_c_index_difference

    rows = []
    for view in (a, b):
        for part, value in ((view.metrics or {}).get("splits") or {}).items():
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
    test_a = a.predictions[a.predictions.split == "test"].set_index("patient_id")
    test_b = b.predictions[b.predictions.split == "test"].set_index("patient_id")
    shared = test_a.index.intersection(test_b.index)
    columns = ["time_days", "event"]
    if len(shared) < 4 or not test_a.loc[shared, columns].equals(test_b.loc[shared, columns]):
        result["note"] = (
            "The runs share too few test patients, or their times/events differ: no paired test."
        )
        return result
    try:
        result["difference"] = paired_c_index_difference(
            test_a.loc[shared, "time_days"],
            test_a.loc[shared, "event"],
            test_a.loc[shared, "risk"],
            test_b.loc[shared, "risk"],
        )
    except ValueError as error:
        result["note"] = str(error)
    return result
