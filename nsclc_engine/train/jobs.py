"""Training jobs for the dashboard: launch, queue, status, cancel, list.

:func:`launch` writes a run folder (``status.json`` = queued) and starts a detached runner,
``python -m nsclc_engine.train.jobs run RUN_ID``, from an argument list (never a shell
string) in its own session, so the job outlives the dashboard. Runners take turns on the
device: each holds an exclusive lock on ``runs/.device.lock`` while it trains and only starts
when it is the first queued run (by queue number), so jobs run one at a time, in order.
Command-line runs (``python -m nsclc_engine.train``) wait in the same queue through
:func:`train_in_turn` unless given ``--no-queue``.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from nsclc_engine import runs
from nsclc_engine.atomic import hold_lock_descriptor, release_lock_descriptor, write_text_atomic
from nsclc_engine.config import cli_error
from nsclc_engine.paths import artifacts_dir
from nsclc_engine.runs import now, read_raw_status, update_status
from nsclc_engine.train.config import TrainConfig
from nsclc_engine.train.loop import Cancelled
from nsclc_engine.train.runner import create_run, run_training

POLL_SECONDS = 0.5
log = logging.getLogger("nsclc_engine.train")


def launch(
    config: TrainConfig, artifacts: str | os.PathLike | None = None, run_id: str = ""
) -> str:
    """Queue a training run and start its detached runner; returns the run id."""
    root = Path(artifacts or artifacts_dir())
    run_id = create_run(config, root, run_id)
    run_dir = runs.run_dir(run_id, root)
    # the runner imports this very engine: it gets this process's import path
    search_path = os.pathsep.join(entry or os.getcwd() for entry in sys.path)
    with open(run_dir / "job.out", "ab") as output:
        try:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "nsclc_engine.train.jobs",
                    "run",
                    run_id,
                    "--artifacts",
                    root,
                ],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # survives the dashboard and its signals
                env={**os.environ, "PYTHONPATH": search_path},
            )
        except OSError as error:
            update_status(run_dir, state="failed", finished=now(), error=f"not started: {error}")
            raise
    update_status(run_dir, runner_pid=process.pid, runner_started=runs.process_started(process.pid))
    return run_id


def status(run_id: str, artifacts: str | os.PathLike | None = None) -> dict:
    """``status.json`` of a run (read only, :func:`nsclc_engine.runs.status`)."""
    return runs.status(runs.run_dir(run_id, artifacts))


def cancel(run_id: str, artifacts: str | os.PathLike | None = None) -> dict:
    """Stop a queued or running job; a running one ends as cancelled with its checkpoint kept.

    The trainer is signalled only while it holds the run lock and its pid still names the
    process that started training (pid and start time), never a process that reused the pid.
    """
    run_dir = runs.run_dir(run_id, artifacts)
    current = runs.status(run_dir)
    if current["state"] not in runs.ACTIVE:
        return current
    write_text_atomic(run_dir / "cancel_requested", "cancel\n")
    if current["state"] == "queued":
        current = runs.cancel_if_queued(run_dir)
        if current["state"] != "running":  # else it started meanwhile: signal its trainer
            return current
    pid = current.get("pid")
    if pid and runs.lock_held(run_dir) and runs.process_alive(pid, current.get("pid_started")):
        os.kill(pid, signal.SIGTERM)
    return current


@contextmanager
def _device_lock(root: Path):
    root.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(root / ".device.lock", os.O_RDWR | os.O_CREAT, 0o644)
    hold_lock_descriptor(descriptor)  # forked workers of the trainer do not keep it
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        release_lock_descriptor(descriptor)


def _first_queued(artifacts: Path) -> str | None:
    queued = [run for run in runs.list_runs(artifacts) if run.get("state") == "queued"]
    queued.sort(key=lambda run: run.get("queue", run.get("sequence", 0)))
    return queued[0]["run_id"] if queued else None


def train_in_turn(
    run_id: str, artifacts: Path, show_progress: bool = False, epoch_hook=None
) -> dict:
    """Wait for this queued run's turn on the device (see the module docstring), then train
    it; raises :class:`Cancelled` if it is cancelled while waiting. ``epoch_hook``: a search
    trial's pruner (:func:`~nsclc_engine.train.runner.run_training`)."""
    run_dir = runs.run_dir(run_id, artifacts)
    listed = runs.list_runs(artifacts)
    place = {run["run_id"]: run.get("queue", run.get("sequence", 0)) for run in listed}
    ahead = [  # running, or queued before this one (an experiment's later seeds wait behind)
        run["run_id"]
        for run in listed
        if run["run_id"] != run_id
        and (
            run.get("state") == "running"
            or (run.get("state") == "queued" and place[run["run_id"]] < place.get(run_id, 0))
        )
    ]
    if ahead:
        log.info(
            "run %s waits for its turn on the device behind %s (--no-queue starts at once)",
            run_id,
            ", ".join(ahead),
        )
    while True:
        with _device_lock(runs.runs_dir(artifacts)):
            if read_raw_status(run_dir).get("state") != "queued":
                raise Cancelled()
            if _first_queued(artifacts) == run_id:
                return run_training(run_id, artifacts, show_progress, epoch_hook)
        time.sleep(POLL_SECONDS)


def run_job(run_id: str, artifacts: str | os.PathLike | None = None) -> int:
    """The runner of a launched job: 0 trained, 3 cancelled, 1 failed, 2 bad run id."""
    root = Path(artifacts or artifacts_dir())
    try:
        runs.status(runs.run_dir(run_id, root))  # the run exists
    except (ValueError, OSError) as error:
        return cli_error(error)
    try:
        train_in_turn(run_id, root)
        return 0
    except Cancelled:
        return 3
    except Exception as error:  # status.json and train.log hold the details
        print(f"error: run {run_id} failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m nsclc_engine.train.jobs")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="runner for one queued run (started by launch)")
    run.add_argument("run_id")
    run.add_argument("--artifacts")
    commands.add_parser("list", help="print the runs")
    args = parser.parse_args(argv)
    if args.command == "run":
        return run_job(args.run_id, args.artifacts)
    for run in runs.list_runs():
        print(f"{run['run_id']}: {run.get('state')} {run.get('progress', 0):.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
