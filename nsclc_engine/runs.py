"""The run folder: its id, layout, status, config, splits, checkpoints and history.

Training writes run folders, evaluation reads and completes them, jobs and the dashboard list
and show them; this module is the one place that knows the layout, so none of those needs the
others. It depends only on the shared modules and the splits below it::

    <artifacts>/runs/<run_id>/
        config.json        the TrainConfig as run (+ "resolved": cohort, cache, preprocessing)
        splits.json        patient-level splits (reloaded, never re-drawn)
        status.json        queued / running / finished / failed / cancelled, progress, times
        history.jsonl      one line per epoch
        checkpoint_last[_fold<k>].pt, checkpoint_best[_fold<k>].pt
        predictions.csv, metrics.json, threshold.json, calibration.json, report.html
        train.log, job.out
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from nsclc_engine.atomic import json_line, write_json, write_text_atomic
from nsclc_engine.cohort.splits import Split
from nsclc_engine.cohort.splits import load_splits as read_splits
from nsclc_engine.paths import PROJECT_ROOT, artifacts_dir

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
ACTIVE = ("queued", "running")


def validate_run_id(run_id: str) -> str:
    if not RUN_ID.match(run_id or ""):
        raise ValueError(
            f"run id {run_id!r}: use 1-64 letters, digits, '_', '-' or '.', starting with a "
            "letter or digit (no paths)"
        )
    return run_id


def now() -> str:
    """The time stamp of every run file: local time, ISO 8601, to the second."""
    return dt.datetime.now().isoformat(timespec="seconds")


def new_run_id() -> str:
    return dt.datetime.now().strftime("%Y%m%d-%H%M%S-") + os.urandom(3).hex()


def runs_dir(artifacts: str | os.PathLike | None = None) -> Path:
    return Path(artifacts or artifacts_dir()) / "runs"


def run_dir(run_id: str, artifacts: str | os.PathLike | None = None) -> Path:
    """``<artifacts>/runs/<run_id>`` for a valid id (the folder need not exist)."""
    return runs_dir(artifacts) / validate_run_id(run_id)


def read_json(path: Path) -> dict | None:
    """The JSON object at ``path``, or None where the file does not exist."""
    return json.loads(path.read_text()) if path.exists() else None


def create_run(config: dict, artifacts: str | os.PathLike | None, run_id: str = "") -> str:
    """A new run folder with ``config.json`` and a queued ``status.json``; returns its id."""
    run_id = validate_run_id(run_id or new_run_id())
    folder = runs_dir(artifacts) / run_id
    folder.mkdir(parents=True, exist_ok=False)
    write_json(folder / "config.json", config)
    update_status(folder, state="queued", progress=0.0, created=now(), run_id=run_id)
    return run_id


def read_config(folder: Path) -> dict:
    """``config.json`` of a run, as saved."""
    config = read_json(folder / "config.json")
    if config is None:
        raise ValueError(f"{folder}: no config.json; this is not a run folder")
    return config


def resolved_cohort(config: dict) -> Path | None:
    """The cohort folder a run's ``config.json`` (:func:`read_config`) says it trained on,
    where it still holds its ``cohort.csv``."""
    cohort = config.get("resolved", {}).get("cohort_dir")
    return Path(cohort) if cohort and (Path(cohort) / "cohort.csv").exists() else None


def load_splits(folder: Path) -> list[Split]:
    """The run's splits from ``splits.json``, each checked to have disjoint parts."""
    path = folder / "splits.json"
    if not path.exists():
        raise ValueError(f"{folder.name}: no splits.json; the run has not started training")
    return read_splits(path)[0]


def update_status(folder: Path, **changes) -> dict:
    """Merge ``changes`` into ``status.json`` (stamped ``updated``) and return it."""
    path = folder / "status.json"
    status = read_json(path) or {}
    status.update(changes, updated=now())
    write_json(path, status)
    return status


def status(folder: Path) -> dict:
    """``status.json`` as it stands, read only; a queued or running run whose process has
    ended without saying so reads as failed."""
    current = read_json(folder / "status.json")
    if current is None:
        raise ValueError(f"no run {folder.name!r} in {folder.parent}")
    pid = current.get("pid") if current.get("state") == "running" else current.get("runner_pid")
    if current.get("state") in ACTIVE and pid and not process_alive(pid):
        current |= {"state": "failed", "error": "the training process ended without a final status"}
    return current


def list_runs(artifacts: str | os.PathLike | None = None) -> list[dict]:
    """``{"run_id", **status}`` of every run, oldest first."""
    root = runs_dir(artifacts)
    if not root.exists():
        return []
    runs = [
        {"run_id": folder.name, **status(folder)}
        for folder in sorted(root.iterdir())
        if (folder / "status.json").exists()
    ]
    return sorted(runs, key=lambda run: (run.get("created", ""), run["run_id"]))


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of this process counts as ended
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)
        return finished == 0
    except ChildProcessError:
        return True


def checkpoint_paths(folder: Path, fold: int, folds: int) -> tuple[Path, Path]:
    """``(checkpoint_last, checkpoint_best)`` of ``fold`` (no suffix for a one-split run)."""
    suffix = f"_fold{fold}" if folds else ""
    return folder / f"checkpoint_last{suffix}.pt", folder / f"checkpoint_best{suffix}.pt"


def best_checkpoint(folder: Path, fold: int = 0) -> Path:
    """The best checkpoint of ``fold`` (``checkpoint_best.pt`` for a one-split run)."""
    candidates = [folder / f"checkpoint_best_fold{int(fold)}.pt", folder / "checkpoint_best.pt"]
    for path in candidates:
        if path.exists():
            return path
    raise FileNotFoundError(
        f"{folder.name}: no best checkpoint for fold {fold} (looked for "
        f"{', '.join(p.name for p in candidates)}); the run has not finished an epoch"
    )


def read_history(folder: Path) -> list[dict]:
    path = folder / "history.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_history(folder: Path, history: dict[int, list]) -> None:
    """``history.jsonl`` from each fold's epoch lines, in fold order."""
    lines = [line for fold in sorted(history) for line in history[fold]]
    write_text_atomic(folder / "history.jsonl", "".join(json_line(line) for line in lines))


def provenance() -> dict:
    """What a result was computed with: package versions and the git commit."""
    import monai
    import numpy as np
    import pandas as pd
    import torch

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    versions = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "monai": monai.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
    }
    return {"versions": versions, "git_commit": commit}
