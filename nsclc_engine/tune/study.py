"""An Optuna study over the training config: one worker's loop of trials.

Each trial is an ordinary run folder (``<study>-t<number>``, its config tagged with the study
and trial number) trained with the test part held out (``hold_out_test``): the objective is the
validation AUC (C-index for survival) of the best checkpoint, the mean over folds for a k-fold
study; pruning follows each epoch's validation metric. The split is the study's, fixed once:
the reviewers' exclusions in force when the study is created, then (before its first trial)
the patients and their splits with the study's seed, are kept in the study's storage, and
every trial trains, validates and tests on exactly them. Any number of workers, on any number
of machines, run the same command against one storage: an embedded SQLite file under
``artifacts/studies/`` by default, or a PostgreSQL URL. When a worker finds no trial left
running, it scores the best trial's test part once (if that run is in its artifacts folder)
and writes the study's report.

A worker can be lost outright (SIGKILL, out of memory, a node gone). Each running trial records
a heartbeat in the storage every ``heartbeat`` seconds; any worker, on starting, between trials
and before reporting, fails the trials silent for twice that and queues each one's parameters
again once (Optuna's ``RetryHeartbeatStaleTrialCallback``, the original number kept in the
retry's ``failed_trial``), and runs the retries left waiting after its own trials. Scoring the
best trial's test part holds a lease in the same storage (:mod:`nsclc_engine.tune.lease`) and
finishes what a lost scorer began, so test is still looked at once.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from nsclc_engine import runs
from nsclc_engine.atomic import write_json
from nsclc_engine.config import shown_error
from nsclc_engine.paths import database_url, shown_url
from nsclc_engine.runs import Run
from nsclc_engine.task_spec import task_spec
from nsclc_engine.train.prepare import exclusions_now, reuse_prepared_data
from nsclc_engine.train.runner import FixedSplit, fix_split
from nsclc_engine.tune.heartbeat import (
    ask_and_tell_heartbeats,
    beat_every,
    recover_lost_trials,
    stale_trials,
    trial_heartbeat,
    waiting_retries,
    worker_name,
)
from nsclc_engine.tune.lease import holder_of, lease
from nsclc_engine.tune.space import distributions, load_space

log = logging.getLogger(__name__)

# the training settings a study starts from; the space's values go on top
STUDY_PRESETS: dict[str, dict] = {
    # the tests' and a first try's: small inputs (16x32x32), two epochs, light bootstraps
    "tiny": {"preset": "smoke", "epochs": 2, "bootstrap_resamples": 200},
    "demo": {"preset": "demo"},
    "paper": {"preset": "paper"},
}
PRUNERS = ("median", "hyperband", "none")
FIXED = ("preset", "task", "label", "seed", "folds", "dicom", "clinical", "space", "pruner")
STEPS_PER_FOLD = 1000  # a report's step: fold * STEPS_PER_FOLD + epoch, whatever the epochs


@dataclass(frozen=True)
class TuneConfig:
    """One worker of a study; the study's own settings (``FIXED``) must match its creator's."""

    trials: int = 10  # trials this worker runs (0: only score the best and report)
    study: str = "tune"
    storage: str = ""  # empty: sqlite:///<artifacts>/studies/optuna.db; or postgresql://...
    space: str = ""  # a JSON space file; empty: tune.space.DEFAULT_SPACE
    preset: str = "demo"  # tiny | demo | paper (STUDY_PRESETS)
    pruner: str = "median"
    task: str = "classification"
    label: str = ""
    seed: int = 0  # the splits' and the sampler's
    folds: int = 0
    dicom: str = ""
    clinical: str = ""
    device: str = "auto"
    nproc_per_trial: int = 0  # 2 or more: each trial under torchrun with that many processes
    queue: bool = True  # trials wait their turn on the device (False: a worker per GPU)
    evaluate_best: bool = True
    resume: bool = False  # start trials again in a study stopped from the Studies page
    confirm_seeds: int = 0  # then re-run the best over this many new seeds (tune.confirm)
    heartbeat: int = 60  # seconds between a running trial's heartbeats; stale after twice that
    threads: int = 0  # CPU threads of this worker (and its trials' processes); 0: torch's default

    def __post_init__(self) -> None:
        if self.preset not in STUDY_PRESETS:
            raise ValueError(f"preset {self.preset!r}: choose one of {', '.join(STUDY_PRESETS)}")
        if self.pruner not in PRUNERS:
            raise ValueError(f"pruner {self.pruner!r}: choose one of {', '.join(PRUNERS)}")
        if self.trials < 0:
            raise ValueError(f"trials={self.trials}: must be 0 (only report) or more")
        if self.folds >= 2 and self.evaluate_best:
            raise ValueError(
                "folds: k-fold trials put every patient in some fold's validation part, so the "
                "search sees every label and leaves no test part to score the chosen settings "
                "honestly; run a k-fold study with --no-test and confirm its best on another "
                "cohort (python -m nsclc_engine.validate), or search on one split"
            )
        if self.nproc_per_trial == 1 or self.nproc_per_trial < 0:
            raise ValueError("nproc_per_trial: 0 (in this process) or 2 or more (torchrun)")
        if self.heartbeat < 1:
            raise ValueError(f"heartbeat={self.heartbeat}: a whole number of seconds, 1 or more")
        if self.threads < 0:
            raise ValueError(f"threads={self.threads}: 0 (torch's default) or more")
        if not self.study or not all(c.isalnum() or c in "-_" for c in self.study):
            raise ValueError(f"study {self.study!r}: letters, digits, - and _ only")


def storage_url(config: TuneConfig, artifacts: Path) -> str:
    """The study's storage: ``config.storage`` (a bare ``postgresql://`` given our driver),
    else the embedded SQLite file under ``artifacts/studies/``."""
    if config.storage:
        return database_url(config.storage)
    folder = artifacts / "studies"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder.resolve() / 'optuna.db'}"


def connect(url: str, heartbeat: int | None = None, attempts: int = 6):
    """Optuna's storage for ``url``; with ``heartbeat``, running trials silent for twice that
    many seconds are stale, and failing one queues its parameters again once. Workers started
    together on a new database race to create its tables, and the losers' CREATE fails: they
    try again once the winner's are there (a growing pause, at most ``attempts`` tries)."""
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    def storage():
        if heartbeat is None:
            return optuna.storages.RDBStorage(url)
        with ask_and_tell_heartbeats():
            return optuna.storages.RDBStorage(
                url,
                heartbeat_interval=heartbeat,
                grace_period=2 * heartbeat,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                    max_retry=1
                ),
            )

    for attempt in range(attempts - 1):
        try:
            return storage()
        except SQLAlchemyError:
            time.sleep(0.2 * 2**attempt)
    return storage()


def make_pruner(name: str):
    """The study's pruner. Median: after 3 complete trials, from the second epoch on (the
    first epoch's validation metric is the noisiest)."""
    import optuna

    return {
        "median": optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2),
        "hyperband": optuna.pruners.HyperbandPruner(min_resource=2),
        "none": optuna.pruners.NopPruner(),
    }[name]


def worker_seed(seed: int) -> int:
    """The sampler's seed: ``seed`` and this worker (host and process), so workers started
    together never propose the same first trials, and one worker is repeatable."""
    return seed + zlib.crc32(f"{socket.gethostname()}:{os.getpid()}".encode()) % 10**6


def settings_of(config: TuneConfig) -> dict:
    settings = {key: getattr(config, key) for key in FIXED}
    settings["space"] = load_space(config.space or None)
    return json.loads(json.dumps(settings))


def settings_mismatch(saved: dict | None, config: TuneConfig) -> str:
    """Empty when ``config`` describes the study saved with ``saved`` (or a new one), else a
    message naming the settings that differ."""
    settings = settings_of(config)
    if saved is None or saved == settings:
        return ""
    differ = sorted(key for key in settings if saved.get(key) != settings[key])
    return (
        f"study {config.study!r} was created with other settings ({', '.join(differ)}); "
        "start this worker with the same ones, or name another study"
    )


def open_study(config: TuneConfig, artifacts: Path):
    """The study (created on first use), checked to be the one these settings describe, on a
    storage with the study's heartbeat (its first worker's)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = connect(storage_url(config, artifacts), config.heartbeat)
    study = optuna.create_study(
        storage=storage,
        study_name=config.study,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=worker_seed(config.seed)),
        pruner=make_pruner(config.pruner),
        load_if_exists=True,
    )
    saved = study.user_attrs.get("settings")
    mismatch = settings_mismatch(saved, config)
    if mismatch:
        raise ValueError(mismatch)
    if saved is None:
        study.set_user_attr("settings", settings_of(config))
    heartbeat = study.user_attrs.get("heartbeat")
    if heartbeat is None:
        study.set_user_attr("heartbeat", config.heartbeat)
    elif heartbeat != config.heartbeat:  # every worker must judge staleness alike
        log.warning(
            "study %s beats every %d s (its first worker's --heartbeat); this worker too",
            config.study,
            heartbeat,
        )
        beat_every(storage, heartbeat)
    if "review_exclusions" not in study.user_attrs:  # a flag raised later never reaches it
        excluded = exclusions_now(trial_config(config, {}, -1), artifacts)
        study.set_user_attr("review_exclusions", excluded)
    return study


def study_split(study, config: TuneConfig, artifacts: Path) -> FixedSplit:
    """The study's split: drawn by the first worker to run a trial, on the cohort built
    without the exclusions recorded at the study's creation, with the study's seed, and kept
    in the study (user attribute ``split``); every later trial, on any machine, reads it back.
    Workers drawing it together draw the same split (the same data, exclusions and seed)."""
    excluded = study.user_attrs["review_exclusions"]
    if "split" not in study.user_attrs:
        fixed = fix_split(trial_config(config, {}, -1), artifacts, excluded)
        study.set_user_attr("split", {k: v for k, v in asdict(fixed).items() if k != "excluded"})
    return FixedSplit(excluded=excluded, **study.user_attrs["split"])


def trial_config(config: TuneConfig, params: dict, number: int):
    """The training config of trial ``number``: the study preset, the study's fixed settings,
    the trial's parameters, tagged, test held out, best epoch by validation metric."""
    from nsclc_engine.train.config import TrainConfig

    base = {"task": config.task, "seed": config.seed, "folds": config.folds}
    base |= {"dicom": config.dicom, "clinical": config.clinical, "device": config.device}
    if config.label:
        base["label"] = config.label
    tags = {"study": config.study, "trial": number, "hold_out_test": True, "monitor": "metric"}
    # the study's settings go over the trial's (a space cannot hold them: tune.space)
    return TrainConfig(**(STUDY_PRESETS[config.preset] | params | base | tags))


def validation_score(run_dir: Path, task: str) -> float:
    """The trial's objective: the validation AUC (C-index for survival) of each fold's best
    checkpoint, averaged over folds; NaN where a fold's is undefined."""
    from nsclc_engine.stats.metrics import auc_score
    from nsclc_engine.stats.survival import harrell_c_index

    predictions = Run(run_dir).predictions
    scores = []
    for _, fold in predictions[predictions.split == "validation"].groupby("fold"):
        try:
            if task == "survival":
                scores.append(harrell_c_index(fold.time_days, fold.event, fold.risk))
            else:
                scores.append(auc_score(fold.y_true, fold.y_prob))
        except ValueError:  # no comparable pair, or one class
            scores.append(float("nan"))
    return float(np.mean(scores)) if scores else float("nan")


def run_worker(config: TuneConfig, artifacts: str | os.PathLike) -> dict:
    """Run ``config.trials`` trials of the study, then the retries of lost trials left
    waiting, then (when none is left running) score its best trial's test part once and
    write the report; returns the report."""
    artifacts = Path(artifacts)
    if config.threads:
        pin_threads(config.threads)
    study = open_study(config, artifacts)
    if config.resume:
        study.set_user_attr("stop_requested", False)
    space = load_space(config.space or None)
    with reuse_prepared_data():  # one cohort and cache check for all of this worker's trials
        for _ in range(config.trials):
            if _stop_requested(study, config):
                break
            recover_lost_trials(study)
            _one_trial(study, config, space, artifacts)
        recover_lost_trials(study)
        while waiting_retries(study) and not _stop_requested(study, config):
            _one_trial(study, config, space, artifacts)
            recover_lost_trials(study)
        return finish(config, artifacts)


def pin_threads(threads: int) -> None:
    """This worker's CPU threads: torch's intra-op pool here, and the OpenMP and MKL pools of
    the processes it starts (torchrun trials)."""
    import torch

    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)
    torch.set_num_threads(threads)


def _stop_requested(study, config: TuneConfig) -> bool:
    if study.user_attrs.get("stop_requested"):
        log.warning(
            "study %s was stopped from the Studies page: no new trial (--resume starts trials "
            "again)",
            config.study,
        )
        return True
    return False


def _one_trial(study, config: TuneConfig, space: dict, artifacts: Path) -> None:
    """Ask the study for a trial (a waiting retry first), run it with its heartbeat, tell."""
    from optuna.trial import TrialState

    from nsclc_engine.train.model import check_network

    fixed = study_split(study, config, artifacts)
    with ask_and_tell_heartbeats():
        trial = study.ask(distributions(space))
    with trial_heartbeat(study, trial, study.user_attrs.get("heartbeat", config.heartbeat)):
        trial.set_user_attr("worker", worker_name())
        try:  # whatever happens, the trial is told: a trial left running blocks the scoring
            train_config = trial_config(config, trial.params, trial.number)
            check_network(train_config.model, train_config.norm, train_config.preset)
        except ValueError as error:  # a combination the network cannot take: not a result
            trial.set_user_attr("error", str(error))
            study.tell(trial, state=TrialState.FAIL)
            return
        except BaseException:
            study.tell(trial, state=TrialState.FAIL)
            raise
        try:
            state, value = _run_trial(config, trial, train_config, artifacts, fixed)
        except BaseException:  # interrupted: the trial failed, the worker stops
            study.tell(trial, state=TrialState.FAIL)
            raise
        if state == TrialState.COMPLETE and np.isfinite(value):
            study.tell(trial, value)
        else:
            study.tell(trial, state=state if state != TrialState.COMPLETE else TrialState.FAIL)


def _run_trial(config: TuneConfig, trial, train_config, artifacts: Path, fixed: FixedSplit):
    from optuna.trial import TrialState

    from nsclc_engine.train.jobs import train_in_turn
    from nsclc_engine.train.loop import Pruned
    from nsclc_engine.train.runner import create_run, run_training

    run_id = f"{config.study}-t{trial.number:04d}"
    started = time.perf_counter()
    try:
        if runs.run_dir(run_id, artifacts).exists():  # another study of that name used it
            run_id = f"{run_id}-{zlib.crc32(f'{socket.gethostname()}{os.getpid()}'.encode())}"
        create_run(train_config, artifacts, run_id, fixed)  # the study's split, not its own
        trial.set_user_attr("run_id", run_id)
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("artifacts", str(artifacts.resolve()))
        if config.nproc_per_trial >= 2:
            state = _run_under_torchrun(config, trial, run_id, artifacts)
        elif config.queue:  # in its turn on the device, behind the dashboard's jobs and trials
            train_in_turn(run_id, artifacts, False, epoch_hook(trial))
            state = TrialState.COMPLETE
        else:
            run_training(run_id, artifacts, False, epoch_hook(trial))
            state = TrialState.COMPLETE
    except Pruned:
        state = TrialState.PRUNED
    except Exception as error:  # one failed trial never stops the study
        log.warning("trial %d (%s) failed: %s", trial.number, run_id, error)
        trial.set_user_attr("error", f"{type(error).__name__}: {error}")
        state = TrialState.FAIL
    run_dir = runs.run_dir(run_id, artifacts)
    history = runs.read_history(run_dir) if run_dir.is_dir() else []
    in_epochs = float(sum(line.get("seconds", 0.0) for line in history))
    trial.set_user_attr("seconds", round(time.perf_counter() - started, 2))
    trial.set_user_attr("seconds_in_epochs", round(in_epochs, 2))
    trial.set_user_attr("epochs", len(history))
    value, started = float("nan"), time.perf_counter()
    if state == TrialState.COMPLETE:
        value = validation_score(run_dir, train_config.task)
    # where a trial's time goes besides its epochs (benchmarks/bench_tune.py reads these)
    done = runs.status(run_dir) if run_dir.is_dir() else {}
    trial.set_user_attr("seconds_data", done.get("seconds_data"))
    trial.set_user_attr("seconds_final_predictions", done.get("seconds_final_predictions"))
    trial.set_user_attr("seconds_scoring", round(time.perf_counter() - started, 3))
    return state, value


def epoch_hook(trial):
    """Report each epoch's validation metric to the trial (step ``fold * STEPS_PER_FOLD +
    epoch``, the same in every trial); prune when its pruner says so."""

    def hook(fold: int, epoch: int, value: float) -> bool:
        if value is None or not np.isfinite(value):
            return False
        trial.report(float(value), fold * STEPS_PER_FOLD + epoch)
        return trial.should_prune()

    return hook


def _run_under_torchrun(config: TuneConfig, trial, run_id: str, artifacts: Path):
    """The trial under ``torchrun`` (DDP, ``nproc_per_trial`` processes); its rank 0 reports
    to the study through the same storage (``nsclc_engine.tune.trial``)."""
    from optuna.trial import TrialState

    environment = os.environ | {
        "NSCLC_TUNE_STORAGE": storage_url(config, artifacts),
        "NSCLC_TUNE_STUDY": config.study,
        "NSCLC_TUNE_TRIAL": str(trial._trial_id),
        "NSCLC_TUNE_PRUNER": config.pruner,
    }
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += [f"--nproc_per_node={config.nproc_per_trial}", "-m", "nsclc_engine.tune.trial"]
    command += [run_id, "--artifacts", str(artifacts)]
    subprocess.run(command, env=environment, check=False)
    # torchrun's own exit status does not carry its ranks': the run's state does
    state = runs.status(runs.run_dir(run_id, artifacts)).get("state")
    return {"finished": TrialState.COMPLETE, "pruned": TrialState.PRUNED}.get(
        state, TrialState.FAIL
    )


def finish(config: TuneConfig, artifacts: Path) -> dict:
    """When no trial of the study is running (lost ones failed first): score the best trial's
    test part once (where its run is in this artifacts folder), holding the study's scoring
    lease, and write ``studies/<study>.json``."""
    from optuna.trial import TrialState

    study = open_study(config, artifacts)
    recover_lost_trials(study)
    trials = study.get_trials(deepcopy=False)
    counts = {state.name.lower(): 0 for state in TrialState}
    for trial in trials:
        counts[trial.state.name.lower()] += 1
    report = {
        "study": config.study,
        "storage": shown_url(storage_url(config, artifacts)),
        "trials": counts,
        "settings": study.user_attrs.get("settings"),
    }
    split = study.user_attrs.get("split")
    if split is not None:
        report["split"] = {
            "seed": split["seed"],
            "patients": len(split["patients"]),
            "test_patients": [len(fold["test"]) for fold in split["splits"]],
            "review_excluded": sorted(study.user_attrs.get("review_exclusions") or {}),
            "note": "fixed before the first trial; every trial trains, validates and tests on it",
        }
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        report["best"] = None
        write_json(artifacts / "studies" / f"{config.study}.json", report)
        return report
    best = study.best_trial
    run_id = best.user_attrs.get("run_id", "")
    report["best"] = {
        "trial": best.number,
        "validation": best.value,
        "params": best.params,
        "run_id": run_id,
        "host": best.user_attrs.get("host"),
    }
    report["selection_note"] = (
        f"the best of {len(complete)} completed trials by validation score: choosing the "
        "maximum of many noisy estimates inflates it, so its validation score is optimistic; "
        "its test score, measured once, is the estimate to report"
    )
    running = counts["running"] + counts["waiting"]
    run_dir = runs.run_dir(run_id, artifacts)
    test = study.user_attrs.get("best_test")
    if test is not None and test.get("run_id") != run_id:
        # the study looks at test once: a later, better trial is not scored as well
        report["test_note"] = (
            f"the test part was scored once, for run {test['run_id']}, the best when no trial "
            f"was running; run {run_id} has since done better on validation and is not scored "
            "(a second look at test would be a choice made on test)"
        )
    elif test is None and config.evaluate_best and not running and run_dir.is_dir():
        test, waiting = _score_under_lease(study, config, run_id, artifacts)
        if waiting:
            report["waiting"] = waiting
    elif test is None and running:
        report["waiting"] = f"{running} trial(s) still running: the best is scored when they end"
    elif test is None and config.evaluate_best:
        report["waiting"] = (
            f"the best trial's run {run_id} is on {best.user_attrs.get('host')}; run this "
            "command there with --trials 0 to score its test part"
        )
    report["test"] = test
    write_json(artifacts / "studies" / f"{config.study}.json", report)
    return report


def scoring_lease_name(study_name: str) -> str:
    return f"study {study_name}: scoring the best trial's test part"


def _score_under_lease(study, config: TuneConfig, run_id: str, artifacts: Path):
    """``(test, waiting)``: the best trial's test score, taken by this worker while it holds
    the study's scoring lease (a lost scorer's lease is taken over after the grace period and
    its work finished), or None and what it waits for when another worker holds the lease."""
    import sqlalchemy as sa

    engine = sa.create_engine(storage_url(config, artifacts))
    name = scoring_lease_name(config.study)
    try:
        with lease(engine, name, worker_name(), study.user_attrs["heartbeat"]) as held:
            if not held:
                return None, f"{holder_of(engine, name)} is scoring the best trial's test part"
            try:
                return _score_best_once(study, run_id, artifacts, config.task), None
            except runs.RunBusy:  # a process on this machine holds the run: it scores it
                return None, "another worker is scoring the best trial's test part"
    finally:
        engine.dispose()


def _score_best_once(study, run_id: str, artifacts: Path, task: str) -> dict:
    """Score the best trial's test part under its run lock, unless it has been already (a
    lost scorer's predictions are evaluated, not predicted again)."""
    from nsclc_engine.train.runner import evaluate_test

    run_dir = runs.run_dir(run_id, artifacts)
    with runs.run_lock(run_dir):
        if study.user_attrs.get("best_test") is not None:
            return study.user_attrs["best_test"]
        try:
            metrics = evaluate_test(run_id, artifacts)
            key = task_spec(task).metric_key
            test = {"run_id": run_id, key: metrics["splits"]["test"][key]}
        except Exception as error:  # predicted but not evaluated: the look at test is spent
            test = {"run_id": run_id, "error": shown_error(error)}
            log.exception("scoring run %s's test part failed", run_id)
        study.set_user_attr("best_test", test)
        return test


def load_study(url: str, name: str):
    """Study ``name`` in ``url``, on a storage that knows the study's heartbeat (so that its
    stale trials can be told from running ones)."""
    import optuna

    storage = connect(url)
    study = optuna.load_study(study_name=name, storage=storage)
    if study.user_attrs.get("heartbeat"):
        beat_every(storage, study.user_attrs["heartbeat"])
    return study


def study_table(study) -> pd.DataFrame:
    """One row per trial: number, state (``stale``: running but its worker silent), validation
    score, the epoch it stopped at, its worker, the trial it retries or the one retrying it,
    its parameters and run."""
    stale = stale_trials(study)
    trials = study.get_trials(deepcopy=False)
    retried_as = {
        t.system_attrs["retry_history"][-1]: t.number
        for t in trials
        if t.system_attrs.get("retry_history")
    }
    rows = []
    for trial in trials:
        steps = sorted(trial.intermediate_values)
        retry_of = trial.system_attrs.get("retry_history") or [None]
        rows.append(
            {
                "trial": trial.number,
                "state": "stale" if trial.number in stale else trial.state.name.lower(),
                "validation": trial.value,
                "pruned at step": steps[-1] if trial.state.name == "PRUNED" and steps else None,
                "epochs": trial.user_attrs.get("epochs"),
                "seconds": trial.user_attrs.get("seconds"),
                "worker": trial.user_attrs.get("worker"),
                "retry of": retry_of[-1],
                "retried as": retried_as.get(trial.number),
                "run_id": trial.user_attrs.get("run_id"),
                **{f"param {k}": v for k, v in trial.params.items()},
            }
        )
    return pd.DataFrame(rows)
