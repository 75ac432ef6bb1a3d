"""Studies as jobs, for the dashboard: start a study worker detached from the page, stop a
study (no new trial, its running trials cancelled)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from nsclc_engine.tune.study import TuneConfig


def launch_study(config: TuneConfig, artifacts: str | os.PathLike) -> int:
    """Start ``python -m nsclc_engine.tune`` with ``config`` in its own session (it outlives
    the dashboard; its output goes to ``studies/<study>.log``); returns its process id. A
    study whose settings differ from ``config``'s is refused here, not in the log."""
    import optuna

    from nsclc_engine.tune.study import settings_mismatch, storage_url

    url = storage_url(config, Path(artifacts))
    if config.study in optuna.study.get_all_study_names(url):
        saved = optuna.load_study(study_name=config.study, storage=url).user_attrs
        mismatch = settings_mismatch(saved.get("settings"), config)
        if mismatch:
            raise ValueError(mismatch)
    artifacts = Path(artifacts)
    folder = artifacts / "studies"
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "nsclc_engine.tune", "--trials", str(config.trials)]
    command += ["--study", config.study, "--preset", config.preset, "--pruner", config.pruner]
    command += ["--task", config.task, "--seed", str(config.seed), "--folds", str(config.folds)]
    command += ["--artifacts", str(artifacts), "--resume"]  # Start from the page resumes a stop
    if config.space:
        command += ["--space", config.space]
    if config.heartbeat != TuneConfig.heartbeat:
        command += ["--heartbeat", str(config.heartbeat)]
    if config.threads:
        command += ["--threads", str(config.threads)]
    if config.confirm_seeds:
        command += ["--confirm-seeds", str(config.confirm_seeds)]
    if config.label:
        command += ["--label", config.label]
    if config.dicom:
        command += ["--dicom", config.dicom, "--clinical", config.clinical]
    search_path = os.pathsep.join(entry or os.getcwd() for entry in sys.path)
    with open(folder / f"{config.study}.log", "ab") as output:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # the storage URL (and its password) in the environment, out of the process list
            env=os.environ | {"PYTHONPATH": search_path, "NSCLC_TUNE_STORAGE": config.storage},
        )
    return process.pid


def stop_study(config: TuneConfig, artifacts: str | os.PathLike) -> list[str]:
    """Ask every worker of the study to start no new trial, and cancel its trials running
    from this artifacts folder; returns the runs cancelled."""
    import optuna
    from optuna.trial import TrialState

    from nsclc_engine.runs import run_dir
    from nsclc_engine.train.jobs import cancel
    from nsclc_engine.tune.study import storage_url

    artifacts = Path(artifacts)
    study = optuna.load_study(study_name=config.study, storage=storage_url(config, artifacts))
    study.set_user_attr("stop_requested", True)
    cancelled = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        run_id = trial.user_attrs.get("run_id")
        if run_id and run_dir(run_id, artifacts).is_dir():
            cancel(run_id, artifacts)
            cancelled.append(run_id)
    return cancelled
