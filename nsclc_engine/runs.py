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
        survival_baseline.json
                           a survival run's Breslow baselines per fold, fitted on validation
                           (an external run: its source's, frozen)
        train.log, job.out
        .train.lock        held (flock) by the one process training the run

Concurrency: ``status.json`` and ``threshold.json`` change only through locked
read-modify-writes (:func:`nsclc_engine.atomic.update_json`); reads never write. A trainer
holds :func:`run_lock` for as long as it trains, so a second one refuses, and :func:`status`
and cancelling ask the lock, not a pid that may since belong to another process. Every run
gets a sequence number when created and a queue number each time it is queued, both from one
locked counter, so runs created in the same second keep their order.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from nsclc_engine.atomic import (
    dead_temporary,
    hold_lock_descriptor,
    json_line,
    process_exists,
    release_lock_descriptor,
    remove_stale_temporaries,
    update_json,
    write_json,
    write_text_atomic,
)
from nsclc_engine.cohort.splits import Split
from nsclc_engine.cohort.splits import load_splits as read_splits
from nsclc_engine.paths import PROJECT_ROOT, artifacts_dir
from nsclc_engine.run_records import Calibration, Metrics, Threshold
from nsclc_engine.task_spec import DEFAULT_NETWORK, TaskSpec, spec_of

if TYPE_CHECKING:
    import pandas as pd

# the run folder's files: only this module spells their names (tests/test_layering.py)
CONFIG = "config.json"
SPLITS = "splits.json"
STATUS = "status.json"
HISTORY = "history.jsonl"
PREDICTIONS = "predictions.csv"
METRICS = "metrics.json"
THRESHOLD = "threshold.json"
CALIBRATION = "calibration.json"

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
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        folder.mkdir()
    except FileExistsError:
        if not never_started(folder):
            raise ValueError(
                f"run {run_id!r} already exists in {folder.parent}; choose another --run-id, "
                f"or continue it with --resume {run_id}"
            ) from None
        remove_stale_temporaries(folder)  # a run killed before its config.json landed
    write_json(folder / CONFIG, config)
    number = next_number(folder.parent)
    update_status(
        folder,
        **this_process_as_runner(),  # until a launched runner takes over
        state="queued",
        progress=0.0,
        created=now(),
        run_id=run_id,
        sequence=number,
        queue=number,
    )
    return run_id


def never_started(folder: Path) -> bool:
    """A run folder killed before its ``config.json`` landed: nothing in it but dead writers'
    temporaries. It is no run (listings skip it), and creating the run again reuses it."""
    return all(dead_temporary(path) for path in folder.iterdir())


def next_number(root: Path) -> int:
    """The next number of the runs folder's counter (``.sequence``): strictly increasing
    across threads and processes."""
    counter = update_json(root / ".sequence", lambda c: {"next": int(c.get("next", 0)) + 1})
    return counter["next"]


def queue(folder: Path) -> dict:
    """Mark a run queued again (a resume) by this process, behind every run queued so far."""
    number = next_number(folder.parent)
    return update_status(folder, state="queued", queue=number, **this_process_as_runner())


def this_process_as_runner() -> dict:
    """The status fields naming this process as the run's waiting runner (pid and start
    time), so a queued run whose runner died reads as failed."""
    return {"runner_pid": os.getpid(), "runner_started": process_started(os.getpid())}


def read_config(folder: Path) -> dict:
    """``config.json`` of a run, as saved."""
    config = read_json(folder / CONFIG)
    if config is None:
        raise ValueError(f"{folder}: no config.json; this is not a run folder")
    return config


def resolved_cohort(config: dict) -> Path | None:
    """The cohort folder a run's ``config.json`` (:func:`read_config`) says it trained on,
    where it still holds its ``cohort.csv``."""
    cohort = config.get("resolved", {}).get("cohort_dir")
    return Path(cohort) if cohort and (Path(cohort) / "cohort.csv").exists() else None


SURVIVAL_BASELINES = "survival_baseline.json"


def read_survival_baselines(folder: Path) -> list[dict]:
    """The fold entries of a survival run's ``survival_baseline.json``: per fold ``{"fold",
    "raw", "recalibrated"}`` (each a ``Baseline.to_dict``, or ``{kind}_note`` where that kind
    could not be fitted); ``[]`` where the run has none (evaluated before baselines were
    saved, imported, or an external run of a k-fold source)."""
    saved = read_json(folder / SURVIVAL_BASELINES)
    return saved["folds"] if saved else []


def write_survival_baselines(folder: Path, folds: list[dict], fitted_on: str, **extra) -> None:
    """Write ``survival_baseline.json`` atomically: ``fitted_on`` (the patients the baselines
    were fitted on), ``folds`` (the entries :func:`read_survival_baselines` returns) and any
    ``extra`` fields (an external run's ``source_run``, ``fold_models``, ``note``)."""
    write_json(folder / SURVIVAL_BASELINES, {"fitted_on": fitted_on, "folds": folds, **extra})


def load_splits(folder: Path) -> list[Split]:
    """The run's splits from ``splits.json``, each checked to have disjoint parts."""
    path = folder / SPLITS
    if not path.exists():
        raise ValueError(f"{folder.name}: no splits.json; the run has not started training")
    return read_splits(path)[0]


def update_status(folder: Path, **changes) -> dict:
    """Merge ``changes`` into ``status.json`` (stamped ``updated``) under its lock; returns
    the new status."""
    return update_json(folder / STATUS, lambda current: current | changes | {"updated": now()})


def status(folder: Path) -> dict:
    """``status.json`` as it stands, read only. A running run whose trainer no longer holds
    the run lock, or a queued run whose waiting process has ended, reads as failed."""
    current = read_json(folder / STATUS)
    if current is None:
        raise ValueError(f"no run {folder.name!r} in {folder.parent}")
    state = current.get("state")
    if state == "running" and not lock_held(folder):
        ended = True
    elif state == "queued" and current.get("runner_pid"):
        ended = not process_alive(current["runner_pid"], current.get("runner_started"))
    else:
        ended = False
    if ended:
        current |= {"state": "failed", "error": "the training process ended without a final status"}
    return current


def list_runs(artifacts: str | os.PathLike | None = None) -> list[dict]:
    """``{"run_id", **status}`` of every run, oldest first (creation time to the second, then
    the sequence number, which orders runs created in the same second)."""
    root = runs_dir(artifacts)
    if not root.exists():
        return []
    runs = [
        {"run_id": folder.name, **status(folder)}
        for folder in sorted(root.iterdir())
        if (folder / STATUS).exists()
    ]
    return sorted(
        runs, key=lambda run: (run.get("created", ""), run.get("sequence", 0), run["run_id"])
    )


class CancelledWhileQueued(Exception):
    """The run was cancelled before its trainer started."""


def start_running(folder: Path, **changes) -> dict:
    """Mark the run running, in one locked step that refuses a run cancelled meanwhile (the
    dashboard's Cancel on a queued run races with its runner's start)."""

    def begin(current: dict) -> dict:
        if current.get("state") == "cancelled" and (folder / "cancel_requested").exists():
            raise CancelledWhileQueued(folder.name)
        return current | changes | {"state": "running", "updated": now()}

    return update_json(folder / STATUS, begin)


def cancel_if_queued(folder: Path) -> dict:
    """Mark a queued run cancelled in one locked step; a run that started meanwhile is left
    running (the caller then signals its trainer). Returns the status after."""

    def cancel(current: dict) -> dict:
        if current.get("state") != "queued":
            return current
        return current | {"state": "cancelled", "finished": now(), "updated": now()}

    return update_json(folder / STATUS, cancel)


class RunBusy(ValueError):
    """Another process is training this run."""


@contextmanager
def run_lock(folder: Path) -> Iterator[None]:
    """Hold the run's trainer lock (``.train.lock``) or raise :class:`RunBusy` at once. The
    kernel releases it when the process ends, however it ends."""
    descriptor = os.open(folder / ".train.lock", os.O_RDWR | os.O_CREAT, 0o644)
    hold_lock_descriptor(descriptor)
    if not _try_exclusive(descriptor):
        release_lock_descriptor(descriptor)
        holder = read_raw_status(folder).get("pid", "?")
        raise RunBusy(
            f"run {folder.name!r} is being trained by process {holder}; wait for it to end or "
            "cancel it first"
        ) from None
    try:
        yield
    finally:
        release_lock_descriptor(descriptor)


def _try_exclusive(descriptor: int, attempts: int = 20) -> bool:
    """Take the lock, allowing for readers' probes (:func:`lock_held` holds it shared for
    microseconds); a trainer holds it for the whole run."""
    for attempt in range(attempts):
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if attempt + 1 < attempts:
                time.sleep(0.05)
    return False


def lock_held(folder: Path) -> bool:
    """Whether a live process holds the run's trainer lock (asks the lock; writes nothing)."""
    try:
        descriptor = os.open(folder / ".train.lock", os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)


def process_started(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from ``/proc``), or ``None``
    where unknown: with the pid, it names one process, whereas a pid alone can be reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def process_alive(pid: int, started: str | None = None) -> bool:
    """Whether process ``pid`` runs, and is the one that started at ``started`` if given."""
    if not process_exists(pid):
        return False
    # a zombie child of this process counts as ended
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)
        if finished != 0:
            return False
    except ChildProcessError:
        pass
    return started is None or process_started(pid) in (None, started)


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
    path = folder / HISTORY
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_history(folder: Path, history: dict[int, list]) -> None:
    """``history.jsonl`` from each fold's epoch lines, in fold order."""
    lines = [line for fold in sorted(history) for line in history[fold]]
    write_text_atomic(folder / HISTORY, "".join(json_line(line) for line in lines))


def has_config(folder: Path) -> bool:
    return (folder / CONFIG).exists()


# what a trained run did before each of these fields existed (its config.json lacks them)
BEFORE_FIELDS = {
    "task": "classification",
    "model": DEFAULT_NETWORK,
    "protocol": "report",
    "monitor": "loss",
    "context_mm": None,
    "cox_bank": 0,
    "encoder_lr_scale": 1.0,  # a pretrained encoder learned at the head's rate
}


def migrated(config: dict) -> dict:
    """An old trained run's config (its ``config.json``, or the copy in its checkpoints)
    brought to today's fields, each field it lacks set to what such a run did before the
    field existed; the one place old runs are read as new ones.
    Imported, external and frozen-feature runs (``kind``) have their own configs, returned
    as they are."""
    if config.get("kind"):
        return dict(config)
    return BEFORE_FIELDS | config


def read_saved_config(folder: Path) -> dict:
    """``config.json`` brought to today's fields (:func:`migrated`), {} where absent (a
    listing of folders, some not yet runs)."""
    config = read_json(folder / CONFIG)
    return migrated(config) if config else {}


def read_saved_splits(folder: Path) -> list[dict]:
    """``splits.json``'s parts as saved, unchecked ([] before the run split its patients): the
    Dataset page reports overlapping parts rather than failing (:func:`load_splits` checks)."""
    saved = read_json(folder / SPLITS)
    return saved["splits"] if saved else []


def stamp(folder: Path) -> tuple[int, ...]:
    """Changes whenever the run writes a file the pages show (a cache key)."""
    names = (STATUS, PREDICTIONS, METRICS, THRESHOLD, HISTORY)
    return tuple((folder / n).stat().st_mtime_ns if (folder / n).exists() else 0 for n in names)


def write_config(folder: Path, config: dict) -> None:
    """``config.json``, atomically (a run's resolved config, an imported run's)."""
    write_json(folder / CONFIG, config)


def splits_path(folder: Path) -> Path:
    """Where the run's patient-level splits are kept (``cohort.splits.splits_for`` draws them
    there once and reloads them after)."""
    return folder / SPLITS


def has_splits(folder: Path) -> bool:
    return (folder / SPLITS).exists()


def read_raw_status(folder: Path) -> dict:
    """``status.json`` exactly as written ({} where absent), without :func:`status`'s check
    of a live trainer (a runner waiting on its own queued run reads it so)."""
    return read_json(folder / STATUS) or {}


def has_predictions(folder: Path) -> bool:
    return (folder / PREDICTIONS).exists()


def read_predictions(folder: Path) -> pd.DataFrame:
    """``predictions.csv``, patient ids kept as text (``001`` is not ``1``)."""
    import pandas as pd

    return pd.read_csv(folder / PREDICTIONS, dtype={"patient_id": str})


def write_predictions(folder: Path, predictions: pd.DataFrame) -> None:
    write_text_atomic(folder / PREDICTIONS, predictions.to_csv(index=False))


def read_metrics(folder: Path) -> Metrics:
    """``metrics.json`` (empty: not evaluated yet)."""
    return Metrics(read_json(folder / METRICS) or {})


def write_metrics(folder: Path, metrics: dict) -> None:
    write_json(folder / METRICS, metrics)


def read_threshold(folder: Path) -> Threshold:
    """``threshold.json``: the threshold chosen on validation, and any saved by a reviewer
    (empty before the run was evaluated)."""
    return Threshold(read_json(folder / THRESHOLD) or {})


def update_threshold(folder: Path, change: Callable[[dict], dict]) -> dict:
    """A locked read-modify-write of ``threshold.json``; returns the new content."""
    return update_json(folder / THRESHOLD, change)


def read_calibration(folder: Path) -> Calibration:
    return Calibration(read_json(folder / CALIBRATION) or {})


def write_calibration(folder: Path, calibration: dict) -> None:
    write_json(folder / CALIBRATION, calibration)


@dataclass(frozen=True)
class Run:
    """A typed view of one run folder: each file read through this module's one reader for
    it, on first use; ``config`` carries the task's spec (:mod:`nsclc_engine.task_spec`)."""

    folder: Path

    @classmethod
    def of(cls, run_id: str, artifacts: str | os.PathLike | None = None) -> Run:
        return cls(run_dir(run_id, artifacts))

    @property
    def run_id(self) -> str:
        return self.folder.name

    @cached_property
    def config(self) -> dict:
        """``config.json`` brought to today's fields (:func:`migrated`)."""
        return migrated(read_config(self.folder))

    @property
    def spec(self) -> TaskSpec:
        return spec_of(self.config)

    @property
    def status(self) -> dict:
        return status(self.folder)

    @cached_property
    def splits(self) -> list[Split]:
        return load_splits(self.folder)

    @cached_property
    def predictions(self) -> pd.DataFrame:
        return read_predictions(self.folder)

    @cached_property
    def metrics(self) -> Metrics:
        return read_metrics(self.folder)

    @cached_property
    def threshold(self) -> Threshold:
        return read_threshold(self.folder)

    @cached_property
    def calibration(self) -> Calibration:
        return read_calibration(self.folder)

    @cached_property
    def history(self) -> list[dict]:
        return read_history(self.folder)


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
