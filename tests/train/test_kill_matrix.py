"""Kill -9 anywhere, resume, and get the run an uninterrupted one gets, bit for bit.

A small deterministic run (smoke preset, the small ViT, three epochs, CPU) is killed with
SIGKILL at each point of the write sequence (the ViT's 3.5 M parameters make each checkpoint
a tenth of a ResNet-18's; the protocol is the same), forced by the ``NSCLC_FAULT`` hook
(:func:`nsclc_engine.atomic.fault_point`) rather than by timing: inside each checkpoint
write, between the best and the last checkpoint, before the pending best is renamed in,
between the checkpoint and the history, and inside each file of the evaluation. The kills
are chained on one run, each one resumed by the next launch, which is itself killed at the
next point, so every point is met with the state the earlier kills left.
"""

import json
import os
import subprocess
import sys

import pytest

from nsclc_engine.runs import lock_held, run_lock
from nsclc_engine.train.__main__ import main
from tests.helpers import PROJECT

# (point, occurrence within the launch): the n-th time this process reaches it
KILL_POINTS = [
    ("written", "checkpoint_best.pending.pt", 1),  # epoch 1: the pending best half written
    ("replaced", "checkpoint_best.pending.pt", 1),  # the pending best written, no last yet
    ("written", "checkpoint_last.pt", 1),  # epoch 1's commit half written
    ("promoting", "checkpoint_best.pt", 1),  # epoch 1 committed, its best not renamed in
    ("replaced", "checkpoint_last.pt", 1),  # epoch 2 committed, its history not written
    ("written", "history.jsonl", 2),  # epoch 3 committed, the history half written
    ("written", "predictions.csv", 1),  # every epoch done, predictions half written
    ("written", "metrics.json", 1),  # inside the evaluation
    ("replaced", "threshold.json", 1),
]


def command(source, artifacts, *args):
    return [sys.executable, "-m", "nsclc_engine.train", "--artifacts", str(artifacts), *args]


def new_run(source, run_id):
    return [
        *("--dicom", str(source / "dicom"), "--clinical", str(source / "clinical.csv")),
        *("--label", "os_2y", "--preset", "smoke", "--epochs", "3", "--quiet"),
        *("--set", "bootstrap_resamples=100", "--set", "model=vit", "--run-id", run_id),
    ]


def environment(fault=None) -> dict:
    # one thread: with two, oneDNN's parallel reductions made epoch 1's loss of two fresh
    # processes differ at 1e-6 in 1 of 3 CI runs, so "bit for bit" needs serial kernels
    env = {**os.environ, "PYTHONPATH": str(PROJECT), "OMP_NUM_THREADS": "1"}
    env.pop("NSCLC_FAULT", None)
    if fault:
        env["NSCLC_FAULT"] = ":".join(map(str, fault))
    return env


def launch(args, fault=None):
    return subprocess.run(
        args, cwd=PROJECT, env=environment(fault), capture_output=True, text=True, timeout=300
    )


def history_without_times(run):
    lines = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    return [{key: value for key, value in line.items() if key != "seconds"} for line in lines]


def without_stamps(value):
    """A JSON value without its ``written`` time stamps (the runs ended at other times)."""
    if isinstance(value, dict):
        return {key: without_stamps(item) for key, item in value.items() if key != "written"}
    return [without_stamps(item) for item in value] if isinstance(value, list) else value


@pytest.mark.slow
def test_a_run_killed_at_every_write_resumes_to_the_uninterrupted_result(tiny_source, tmp_path):
    # the uninterrupted run trains beside the chain of kills (one thread each), in its own
    # artifacts folder: nothing of one can reach the other
    untouched = tmp_path / "untouched"
    reference = subprocess.Popen(
        command(tiny_source, untouched, *new_run(tiny_source, "reference")),
        cwd=PROJECT,
        env=environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        fresh = command(tiny_source, tmp_path, *new_run(tiny_source, "killed"))
        first = launch(fresh, KILL_POINTS[0])
        assert first.returncode == -9, f"not killed at {KILL_POINTS[0]}: {first.stderr[-2000:]}"
        for point in KILL_POINTS[1:]:
            resumed = launch(command(tiny_source, tmp_path, "--resume", "killed", "--quiet"), point)
            assert resumed.returncode == -9, f"not killed at {point}: {resumed.stderr[-2000:]}"
        finished = launch(command(tiny_source, tmp_path, "--resume", "killed", "--quiet"))
        assert finished.returncode == 0, finished.stderr[-2000:]
        _, errors = reference.communicate(timeout=300)
    finally:
        reference.kill()  # a no-op once it has ended
    assert reference.returncode == 0, errors[-2000:]

    ref, run = untouched / "runs" / "reference", tmp_path / "runs" / "killed"
    assert (run / "predictions.csv").read_bytes() == (ref / "predictions.csv").read_bytes()
    assert history_without_times(run) == history_without_times(ref)
    assert [line["epoch"] for line in history_without_times(run)] == [1, 2, 3]
    for name in ("threshold.json", "calibration.json"):
        assert without_stamps(json.loads((run / name).read_text())) == without_stamps(
            json.loads((ref / name).read_text())
        )
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
    # nothing half-written is left behind: no temporaries, no pending best
    assert not list(run.glob(".*.tmp")) and not list(run.glob("*.pending.pt"))


def test_a_second_trainer_of_a_running_run_refuses_in_one_line(tiny_source, tmp_path, capsys):
    folder = tmp_path / "runs" / "busy"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"preset": "smoke"}))
    (folder / "status.json").write_text(json.dumps({"state": "running", "pid": os.getpid()}))
    with run_lock(folder):  # as a trainer holds it
        assert main(["--resume", "busy", "--artifacts", str(tmp_path), "--quiet"]) == 2
    error = capsys.readouterr().err.strip()
    assert error == f"error: run 'busy' is being trained by process {os.getpid()}; not resuming it"
    assert not lock_held(folder)
