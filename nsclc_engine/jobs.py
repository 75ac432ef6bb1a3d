"""Training jobs for the dashboard: launch, queue, status, cancel, list.

:func:`launch` writes a run folder (``status.json`` = queued) and starts a detached runner,
``python -m nsclc_engine.jobs run RUN_ID``, from an argument list (never a shell string) in its
own session, so the job outlives the dashboard. Runners take turns on the device: each holds
an exclusive lock on ``runs/.device.lock`` while it trains and only starts when it is the
oldest queued run, so jobs run one at a time, in order.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from nsclc_engine.paths import artifacts_dir
from nsclc_engine.train import (
    Cancelled,
    TrainConfig,
    create_run,
    run_training,
    runs_dir,
    update_status,
    validate_run_id,
)

POLL_SECONDS = 0.5


def _artifacts(artifacts: str | os.PathLike | None) -> Path:
    return Path(artifacts or artifacts_dir())


def launch(
    config: TrainConfig, artifacts: str | os.PathLike | None = None, run_id: str = ""
) -> str:
    """Queue a training run and start its detached runner; returns the run id."""
    root = _artifacts(artifacts)
    run_id = create_run(config, root, run_id)
    run_dir = runs_dir(root) / run_id
    with open(run_dir / "job.out", "ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "nsclc_engine.jobs", "run", run_id, "--artifacts", str(root)],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives the dashboard and its signals
            cwd=Path(__file__).resolve().parent.parent,
        )
    update_status(run_dir, runner_pid=process.pid)
    return run_id


def status(run_id: str, artifacts: str | os.PathLike | None = None) -> dict:
    """``status.json`` of a run; a run whose process died without saying so reads as failed."""
    run_dir = runs_dir(_artifacts(artifacts)) / validate_run_id(run_id)
    path = run_dir / "status.json"
    if not path.exists():
        raise ValueError(f"no run {run_id!r} in {run_dir.parent}")
    current = json.loads(path.read_text())
    pid = current.get("pid") if current.get("state") == "running" else current.get("runner_pid")
    if current.get("state") in ("queued", "running") and pid and not _alive(pid):
        current = update_status(
            run_dir, state="failed", error="the training process ended without a final status"
        )
    return current


def cancel(run_id: str, artifacts: str | os.PathLike | None = None) -> dict:
    """Stop a queued or running job; a running one ends as cancelled with its checkpoint kept."""
    run_dir = runs_dir(_artifacts(artifacts)) / validate_run_id(run_id)
    current = status(run_id, artifacts)
    if current["state"] not in ("queued", "running"):
        return current
    (run_dir / "cancel_requested").write_text("cancel\n")
    if current["state"] == "queued":
        return update_status(run_dir, state="cancelled", finished=time.strftime("%FT%T"))
    pid = current.get("pid")
    if pid and _alive(pid):
        os.kill(pid, signal.SIGTERM)
    return current


def list_runs(artifacts: str | os.PathLike | None = None) -> list[dict]:
    """Status of every run, oldest first."""
    root = runs_dir(_artifacts(artifacts))
    if not root.exists():
        return []
    runs = []
    for run_dir in sorted(root.iterdir()):
        if (run_dir / "status.json").exists():
            runs.append({"run_id": run_dir.name, **status(run_dir.name, _artifacts(artifacts))})
    return sorted(runs, key=lambda run: (run.get("created", ""), run["run_id"]))


def _alive(pid: int) -> bool:
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


@contextmanager
def _device_lock(root: Path):
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".device.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _oldest_queued(artifacts: Path) -> str | None:
    queued = [run for run in list_runs(artifacts) if run.get("state") == "queued"]
    return queued[0]["run_id"] if queued else None


def run_job(run_id: str, artifacts: str | os.PathLike | None = None) -> int:
    """The runner: wait for this run's turn on the device, then train it."""
    root = _artifacts(artifacts)
    run_dir = runs_dir(root) / validate_run_id(run_id)
    while True:
        with _device_lock(runs_dir(root)):
            current = json.loads((run_dir / "status.json").read_text())
            if current.get("state") != "queued":
                return 0  # cancelled while waiting
            if _oldest_queued(root) == run_id:
                try:
                    run_training(run_id, root, show_progress=False)
                    return 0
                except Cancelled:
                    return 3
                except Exception:
                    return 1
        time.sleep(POLL_SECONDS)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m nsclc_engine.jobs")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="runner for one queued run (started by launch)")
    run.add_argument("run_id")
    run.add_argument("--artifacts")
    commands.add_parser("list", help="print the runs")
    args = parser.parse_args(argv)
    if args.command == "run":
        return run_job(args.run_id, args.artifacts)
    for run in list_runs():
        print(f"{run['run_id']}: {run.get('state')} {run.get('progress', 0):.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
