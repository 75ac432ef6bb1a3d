"""Experiments over seeds: one configuration trained once per seed (runs whose config names
the same ``experiment``), summarised so that a reader sees how much of a number the next seed
would keep.

:func:`summarize` reads the experiment's runs and gives, per split and metric (AUC or
C-index; the threshold metrics at each run's frozen threshold; calibration slope and
intercept; the share of the best achievable on the synthetic cohort), the per-seed values,
their mean, SD, min, max and a t-based 95 % interval over seeds; and, per baseline (clinical,
volume, radiomics where present), the image model's per-seed difference on the same held-out
patients, its mean and interval over seeds, and how many seeds it wins. Each run's versions,
device and threads are recorded beside it. :func:`write_summary` keeps it in
``<artifacts>/experiments/<name>.json`` (written atomically after each finished run).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np

from nsclc_engine.atomic import write_json
from nsclc_engine.run_records import Calibration, Metrics
from nsclc_engine.runs import (
    list_runs,
    read_calibration,
    read_config,
    read_json,
    read_metrics,
    run_dir,
)
from nsclc_engine.task_spec import DEFAULT_NETWORK, spec_of

EXPERIMENTS_DIR = "experiments"
THRESHOLD_METRICS = ("threshold", "sensitivity", "specificity", "precision", "npv", "f1")
BASELINES = ("clinical", "volume", "radiomics")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def check_name(name: str) -> str:
    """An experiment's name: letters, digits, ``.``, ``_``, ``-`` (it names a file and runs)."""
    if not NAME.match(name or ""):
        raise ValueError(
            f"experiment {name!r}: use letters, digits, '.', '_' and '-' (at most 100), "
            "starting with a letter or digit"
        )
    return name


def parse_seeds(text: str) -> list[int]:
    """``0,1,2`` (or ``0-4``) as distinct seeds, in the order given."""
    seeds: list[int] = []
    for part in (text or "").split(","):
        part = part.strip()
        low, dash, high = part.partition("-")
        try:
            chosen = range(int(low), int(high) + 1) if dash and low else [int(part)]
        except ValueError:
            raise ValueError(f"--seeds {text!r}: give seeds as 0,1,2,3,4 or 0-4") from None
        seeds += [seed for seed in chosen if seed not in seeds]
    if len(seeds) < 2:
        raise ValueError(f"--seeds {text!r}: an experiment needs two seeds or more")
    return seeds


def run_id_of(name: str, seed: int) -> str:
    """The id of the experiment's run for ``seed``."""
    return f"{name}-seed{seed}"


def default_name(config: dict) -> str:
    """The name an experiment gets from its configuration: what it trains, on what, how."""
    spec = spec_of(config)
    parts = [spec.name, config.get("label") or spec.default_label]
    parts += [config.get("preset", "demo"), config.get("model", DEFAULT_NETWORK)]
    if config.get("folds"):
        parts.append(f"{config['folds']}fold")
    if config.get("protocol", "house") != "house":
        parts.append(config["protocol"])
    if config.get("dicom"):
        parts.append(Path(config["dicom"]).name)
    return check_name("-".join(str(part) for part in parts))


def interval(values: list[float], level: float = 0.95) -> dict:
    """Mean, SD (n - 1), min, max and the t-based ``level`` interval of the mean over seeds
    (``None`` bounds with fewer than two seeds)."""
    from scipy.stats import t

    array = np.asarray(values, dtype=float)
    n = len(array)
    mean = float(array.mean()) if n else math.nan
    sd = float(array.std(ddof=1)) if n > 1 else math.nan
    half = float(t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n)) if n > 1 else math.nan
    return {
        "n": n,
        "mean": mean,
        "sd": sd,
        "min": float(array.min()) if n else math.nan,
        "max": float(array.max()) if n else math.nan,
        "ci_low": mean - half if n > 1 else None,
        "ci_high": mean + half if n > 1 else None,
    }


def run_values(metrics: dict, calibration: dict | None = None) -> dict[str, dict[str, float]]:
    """One finished run's numbers by split: ``auc`` or ``c_index``, the threshold metrics at
    its frozen threshold (``at threshold: NAME``), calibration slope and intercept (raw
    probabilities) and the share of the best achievable (synthetic cohort)."""
    metrics, calibration = Metrics(metrics), Calibration(calibration or {})
    survival = metrics.get("task") == "survival"
    found: dict[str, dict[str, float]] = {}
    for split in metrics.splits:
        values: dict[str, float | None] = {}
        if survival:
            values["c_index"] = metrics.headline(split, "c_index")
            for model in metrics.models.get("c_index", {}):  # image, clinical, volume, fusion
                values[f"c_index: {model}"] = metrics.model_c_index(model, split)
        else:
            values["auc"] = metrics.headline(split, "auc")
            frozen = metrics.split(split).get("at_threshold", {})
            for name in THRESHOLD_METRICS:
                values[f"at threshold: {name}"] = frozen.get(name)
        raw = calibration.raw(split)
        values["calibration slope"] = raw.get("slope")
        values["calibration intercept"] = raw.get("intercept")
        values["share of achievable"] = metrics.share(split).get("value")
        found[split] = {
            name: float(value)
            for name, value in values.items()
            if value is not None and math.isfinite(float(value))
        }
    return found


def baseline_differences(metrics: dict) -> dict[str, float]:
    """The image model minus each baseline on the run's held-out patients (AUC difference of
    the paired DeLong test, or C-index difference)."""
    metrics = Metrics(metrics)
    held_out = metrics.held_out
    differences = {}
    if metrics.get("task") == "survival":
        image = metrics.model_c_index("image", held_out)
        for name in BASELINES:
            other = metrics.model_c_index(name, held_out)
            if image is not None and other is not None:
                differences[name] = float(image) - float(other)
        return differences
    for name in BASELINES:
        paired = metrics.against_baseline(name)
        if paired.get("difference") is not None:
            differences[name] = float(paired["difference"])
    return differences


def experiment_runs(artifacts: str | os.PathLike, name: str) -> list[dict]:
    """The experiment's runs, by seed: id, seed and state."""
    found = []
    for run in list_runs(artifacts):
        config = read_config(run_dir(run["run_id"], artifacts))
        if config.get("experiment") == name:
            found.append(
                {
                    "run_id": run["run_id"],
                    "seed": int(config.get("seed", 0)),
                    "state": run.get("state"),
                }
            )
    return sorted(found, key=lambda entry: (entry["seed"], entry["run_id"]))


def summarize(artifacts: str | os.PathLike, name: str) -> dict:
    """The experiment's summary from its runs' files (the finished ones count)."""
    members = experiment_runs(artifacts, name)
    by_split: dict[str, dict[str, dict[str, float]]] = {}
    by_baseline: dict[str, dict[str, float]] = {}
    listed, task = [], None
    for member in members:
        folder = run_dir(member["run_id"], artifacts)
        config = read_config(folder)
        task = task or config.get("task", "classification")
        resolved = config.get("resolved") or {}
        entry = member | {
            "versions": resolved.get("versions"),
            "device": resolved.get("device"),
            "threads": resolved.get("threads"),
            "deterministic": bool(config.get("deterministic")),
        }
        listed.append(entry)
        if member["state"] != "finished":
            continue
        metrics = read_metrics(folder)
        if not metrics.splits:
            continue
        seed = str(member["seed"])
        for split, values in run_values(metrics, read_calibration(folder)).items():
            for metric, value in values.items():
                by_split.setdefault(split, {}).setdefault(metric, {})[seed] = value
        for baseline, difference in baseline_differences(metrics).items():
            by_baseline.setdefault(baseline, {})[seed] = difference
    return {
        "experiment": name,
        "task": task,
        "runs": listed,
        "n_finished": sum(entry["state"] == "finished" for entry in listed),
        "splits": {
            split: {
                metric: {"values": values} | interval(list(values.values()))
                for metric, values in metrics.items()
            }
            for split, metrics in by_split.items()
        },
        "against_baselines": {
            baseline: {"differences": values, "wins": sum(v > 0 for v in values.values())}
            | interval(list(values.values()))
            for baseline, values in by_baseline.items()
        },
    }


def summary_path(artifacts: str | os.PathLike, name: str) -> Path:
    return Path(artifacts) / EXPERIMENTS_DIR / f"{check_name(name)}.json"


def write_summary(artifacts: str | os.PathLike, name: str) -> dict:
    """Summarise the experiment and write ``<artifacts>/experiments/<name>.json`` atomically."""
    summary = summarize(artifacts, name)
    write_json(summary_path(artifacts, name), summary)
    return summary


def read_summary(artifacts: str | os.PathLike, name: str) -> dict | None:
    return read_json(summary_path(artifacts, name))


def experiment_names(artifacts: str | os.PathLike) -> list[str]:
    """The experiments with a summary, by name."""
    folder = Path(artifacts) / EXPERIMENTS_DIR
    return sorted(path.stem for path in folder.glob("*.json")) if folder.is_dir() else []


def spread_text(entry: dict, digits: int = 3) -> str:
    """``mean ± SD (95% CI low-high over n seeds)`` of an :func:`interval` entry."""
    if not entry or not entry.get("n"):
        return ""
    text = f"{entry['mean']:.{digits}f}"
    if entry["n"] > 1:
        text += (
            f" ± {entry['sd']:.{digits}f} (95% CI {entry['ci_low']:.{digits}f}-"
            f"{entry['ci_high']:.{digits}f} over {entry['n']} seeds)"
        )
    return text


def summary_lines(summary: dict) -> list[str]:
    """The summary in a few lines: the headline metric per split, then the image model
    against each baseline on the held-out patients."""
    spec = spec_of(summary)
    key, shown = spec.metric_key, spec.metric_name
    lines = [f"experiment {summary['experiment']}: {summary['n_finished']} finished runs"]
    for split in ("train", "validation", "test", "external"):
        entry = summary["splits"].get(split, {}).get(key)
        if entry:
            lines.append(f"  {split} {shown}: {spread_text(entry)}")
    for baseline, entry in summary["against_baselines"].items():
        lines.append(
            f"  image - {baseline}: {spread_text(entry)}; the image model wins "
            f"{entry['wins']} of {entry['n']} seeds"
        )
    return lines
