"""An Optuna study over the training config: one worker's loop of trials.

Each trial is an ordinary run folder (``<study>-t<number>``, its config tagged with the study
and trial number) trained with the test part held out (``hold_out_test``): the objective is the
validation AUC (C-index for survival) of the best checkpoint, the mean over folds for a k-fold
study; pruning follows each epoch's validation metric. Any number of workers, on any number
of machines, run the same command against one storage: an embedded SQLite file under
``artifacts/studies/`` by default, or a PostgreSQL URL. When a worker finds no trial left
running, it scores the best trial's test part once (if that run is in its artifacts folder)
and writes the study's report.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from nsclc_engine import runs
from nsclc_engine.atomic import write_json
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
FIXED = ("preset", "task", "label", "seed", "folds", "dicom", "clinical", "space")


@dataclass(frozen=True)
class TuneConfig:
    """One worker of a study; the study's own settings (``FIXED``) must match its creator's."""

    trials: int = 10  # trials this worker runs
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

    def __post_init__(self) -> None:
        if self.preset not in STUDY_PRESETS:
            raise ValueError(f"preset {self.preset!r}: choose one of {', '.join(STUDY_PRESETS)}")
        if self.pruner not in PRUNERS:
            raise ValueError(f"pruner {self.pruner!r}: choose one of {', '.join(PRUNERS)}")
        if self.trials < 1:
            raise ValueError(f"trials={self.trials}: must be 1 or more")
        if self.nproc_per_trial == 1 or self.nproc_per_trial < 0:
            raise ValueError("nproc_per_trial: 0 (in this process) or 2 or more (torchrun)")
        if not self.study or not all(c.isalnum() or c in "-_" for c in self.study):
            raise ValueError(f"study {self.study!r}: letters, digits, - and _ only")


def storage_url(config: TuneConfig, artifacts: Path) -> str:
    if config.storage:
        return config.storage
    folder = artifacts / "studies"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder.resolve() / 'optuna.db'}"


def connect(url: str, attempts: int = 6):
    """Optuna's storage for ``url``. Workers started together on a new database race to
    create its tables, and the losers' CREATE fails: they try again once the winner's are
    there (a growing pause, at most ``attempts`` tries)."""
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    for attempt in range(attempts - 1):
        try:
            return optuna.storages.RDBStorage(url)
        except SQLAlchemyError:
            time.sleep(0.2 * 2**attempt)
    return optuna.storages.RDBStorage(url)


def shown_url(url: str) -> str:
    """The storage URL without its password, for reports and logs."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def open_study(config: TuneConfig, artifacts: Path):
    """The study (created on first use), checked to be the one these settings describe."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = {
        "median": optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
        "hyperband": optuna.pruners.HyperbandPruner(min_resource=1),
        "none": optuna.pruners.NopPruner(),
    }[config.pruner]
    url = connect(storage_url(config, artifacts))
    # a lone worker of a new study draws from --seed (repeatable); one that joins a study in
    # progress draws from its own seed, so two workers never propose the same first trials
    existing = optuna.study.get_all_study_names(url)
    joining = config.study in existing and optuna.load_study(
        study_name=config.study, storage=url
    ).get_trials(deepcopy=False)
    seed = config.seed + (hash((socket.gethostname(), os.getpid())) % 10**6 if joining else 0)
    study = optuna.create_study(
        storage=url,
        study_name=config.study,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=pruner,
        load_if_exists=True,
    )
    settings = {key: getattr(config, key) for key in FIXED}
    settings["space"] = load_space(config.space or None)
    saved = study.user_attrs.get("settings")
    if saved is None:
        study.set_user_attr("settings", settings)
    elif saved != json.loads(json.dumps(settings)):
        differ = sorted(k for k in settings if saved.get(k) != json.loads(json.dumps(settings[k])))
        raise ValueError(
            f"study {config.study!r} was created with other settings ({', '.join(differ)}); "
            "start this worker with the same ones, or name another --study"
        )
    return study


def trial_config(config: TuneConfig, params: dict, number: int):
    """The training config of trial ``number``: the study preset, the study's fixed settings,
    the trial's parameters, tagged, test held out, best epoch by validation metric."""
    from nsclc_engine.train.config import TrainConfig

    base = {"task": config.task, "seed": config.seed, "folds": config.folds}
    base |= {"dicom": config.dicom, "clinical": config.clinical, "device": config.device}
    if config.label:
        base["label"] = config.label
    tags = {"study": config.study, "trial": number, "hold_out_test": True, "monitor": "metric"}
    return TrainConfig(**(STUDY_PRESETS[config.preset] | base | params | tags))


def validation_score(run_dir: Path, task: str) -> float:
    """The trial's objective: the validation AUC (C-index for survival) of each fold's best
    checkpoint, averaged over folds; NaN where a fold's is undefined."""
    from nsclc_engine.stats.metrics import auc_score
    from nsclc_engine.stats.survival import harrell_c_index

    predictions = pd.read_csv(run_dir / "predictions.csv", dtype={"patient_id": str})
    assert "test" not in set(predictions.split), "a trial's test part is never scored"
    scores = []
    for _, fold in predictions[predictions.split == "validation"].groupby("fold"):
        if task == "survival":
            scores.append(harrell_c_index(fold.time_days, fold.event, fold.risk))
        else:
            scores.append(auc_score(fold.y_true, fold.y_prob))
    return float(np.mean(scores)) if scores else float("nan")


def run_worker(config: TuneConfig, artifacts: str | os.PathLike) -> dict:
    """Run ``config.trials`` trials of the study, then (when none is left running) score its
    best trial's test part once and write the report; returns the report."""
    from optuna.trial import TrialState

    from nsclc_engine.train.model import check_network

    artifacts = Path(artifacts)
    study = open_study(config, artifacts)
    study.set_user_attr("stop_requested", False)  # starting a worker resumes a stopped study
    space = load_space(config.space or None)
    for _ in range(config.trials):
        if study.user_attrs.get("stop_requested"):
            log.info("study %s: stop requested; no new trial", config.study)
            break
        trial = study.ask(distributions(space))
        try:
            train_config = trial_config(config, trial.params, trial.number)
            check_network(train_config.model, train_config.norm, train_config.preset)
        except ValueError as error:  # a combination the network cannot take: not a result
            trial.set_user_attr("error", str(error))
            study.tell(trial, state=TrialState.FAIL)
            continue
        state, value = _run_trial(config, study, trial, train_config, artifacts)
        if state == TrialState.COMPLETE and np.isfinite(value):
            study.tell(trial, value)
        else:
            study.tell(trial, state=state if state != TrialState.COMPLETE else TrialState.FAIL)
    return finish(config, artifacts)


def _run_trial(config: TuneConfig, study, trial, train_config, artifacts: Path):
    from optuna.trial import TrialState

    from nsclc_engine.train.jobs import train_in_turn
    from nsclc_engine.train.loop import Pruned
    from nsclc_engine.train.runner import create_run, run_training

    run_id = f"{config.study}-t{trial.number:04d}"
    if runs.run_dir(run_id, artifacts).exists():  # another study of that name used this folder
        run_id = f"{run_id}-{socket.gethostname()}-{os.getpid()}"
    create_run(train_config, artifacts, run_id)
    trial.set_user_attr("run_id", run_id)
    trial.set_user_attr("host", socket.gethostname())
    trial.set_user_attr("artifacts", str(artifacts.resolve()))
    started = time.perf_counter()
    try:
        if config.nproc_per_trial >= 2:
            state = _run_under_torchrun(config, trial, run_id, artifacts)
        elif config.queue:  # in its turn on the device, behind the dashboard's jobs and trials
            train_in_turn(run_id, artifacts, False, epoch_hook(trial, train_config.epochs))
            state = TrialState.COMPLETE
        else:
            run_training(run_id, artifacts, False, epoch_hook(trial, train_config.epochs))
            state = TrialState.COMPLETE
    except Pruned:
        state = TrialState.PRUNED
    except Exception as error:  # one failed trial never stops the study
        log.warning("trial %d (%s) failed: %s", trial.number, run_id, error)
        trial.set_user_attr("error", f"{type(error).__name__}: {error}")
        state = TrialState.FAIL
    run_dir = runs.run_dir(run_id, artifacts)
    history = runs.read_history(run_dir)
    in_epochs = float(sum(line.get("seconds", 0.0) for line in history))
    trial.set_user_attr("seconds", round(time.perf_counter() - started, 2))
    trial.set_user_attr("seconds_in_epochs", round(in_epochs, 2))
    trial.set_user_attr("epochs", len(history))
    value = float("nan")
    if state == TrialState.COMPLETE:
        value = validation_score(run_dir, train_config.task)
    return state, value


def epoch_hook(trial, epochs: int):
    """Report each epoch's validation metric to the trial; prune when its pruner says so."""

    def hook(fold: int, epoch: int, value: float) -> bool:
        if value is None or not np.isfinite(value):
            return False
        trial.report(float(value), fold * epochs + epoch)
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
    }
    command = [sys.executable, "-m", "torch.distributed.run"]
    command += [f"--nproc_per_node={config.nproc_per_trial}", "-m", "nsclc_engine.tune.trial"]
    command += [run_id, "--artifacts", str(artifacts)]
    result = subprocess.run(command, env=environment, check=False)
    return {0: TrialState.COMPLETE, 3: TrialState.PRUNED}.get(result.returncode, TrialState.FAIL)


def finish(config: TuneConfig, artifacts: Path) -> dict:
    """When no trial of the study is running: score the best trial's test part once (where
    its run is in this artifacts folder) and write ``studies/<study>.json``."""
    import optuna
    from optuna.trial import TrialState

    study = optuna.load_study(study_name=config.study, storage=storage_url(config, artifacts))
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
    if test is None and config.evaluate_best and not running and run_dir.is_dir():
        try:
            test = _score_best_once(study, run_id, artifacts, config.task)
        except runs.RunBusy:  # another worker, finishing at the same moment, scores it
            report["waiting"] = "another worker is scoring the best trial's test part"
    elif test is None and running:
        report["waiting"] = f"{running} trial(s) still running: the best is scored when they end"
    elif test is None and not run_dir.is_dir():
        report["waiting"] = (
            f"the best trial's run {run_id} is on {best.user_attrs.get('host')}; run this "
            "command there (--trials 0 is enough) to score its test part"
        )
    report["test"] = test
    write_json(artifacts / "studies" / f"{config.study}.json", report)
    return report


def _score_best_once(study, run_id: str, artifacts: Path, task: str) -> dict:
    """Score the best trial's test part under its run lock, unless it has been already."""
    from nsclc_engine.train.runner import evaluate_test

    run_dir = runs.run_dir(run_id, artifacts)
    with runs.run_lock(run_dir):
        predictions = pd.read_csv(run_dir / "predictions.csv")
        if "test" in set(predictions.split):
            return study.user_attrs.get("best_test")
        metrics = evaluate_test(run_id, artifacts)
        key = "c_index" if task == "survival" else "auc"
        test = {"run_id": run_id, key: metrics["splits"]["test"][key]}
        study.set_user_attr("best_test", test)
        return test


def study_table(study) -> pd.DataFrame:
    """One row per trial: number, state, validation score, the epoch it stopped at, its
    parameters and run."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        steps = sorted(trial.intermediate_values)
        rows.append(
            {
                "trial": trial.number,
                "state": trial.state.name.lower(),
                "validation": trial.value,
                "pruned at step": steps[-1] if trial.state.name == "PRUNED" and steps else None,
                "epochs": trial.user_attrs.get("epochs"),
                "seconds": trial.user_attrs.get("seconds"),
                "run_id": trial.user_attrs.get("run_id"),
                **{f"param {k}": v for k, v in trial.params.items()},
            }
        )
    return pd.DataFrame(rows)
