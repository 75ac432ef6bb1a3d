import json
import subprocess

import pytest

from nsclc_engine.runs import list_runs, process_alive, runs_dir, update_status
from nsclc_engine.train.config import TrainConfig
from nsclc_engine.train.jobs import cancel, launch, status
from nsclc_engine.train.runner import create_run
from tests.helpers import wait_until


def tiny_config(source, epochs=1):
    return TrainConfig(
        dicom=str(source / "dicom"),
        clinical=str(source / "clinical.csv"),
        label="os_2y",
        preset="smoke",
        epochs=epochs,
        model="vit",  # the queue is tested, not the network: the fastest one
    )


def test_run_ids_are_validated(tmp_path):
    for bad in ("../etc", "a/b", "", ".hidden", "x" * 65):
        with pytest.raises(ValueError, match="run id"):
            status(bad, tmp_path)
    with pytest.raises(ValueError, match="no run"):
        status("missing", tmp_path)


def test_a_run_whose_process_died_reads_as_failed(tiny_source, tmp_path):
    run_id = create_run(tiny_config(tiny_source), tmp_path, "orphan")
    dead = subprocess.Popen(["true"])
    dead.wait()
    update_status(runs_dir(tmp_path) / run_id, state="running", pid=dead.pid)
    assert status(run_id, tmp_path)["state"] == "failed"


@pytest.mark.slow
def test_jobs_run_one_at_a_time_in_order_and_can_be_cancelled(tiny_source, tmp_path):
    first = launch(tiny_config(tiny_source), tmp_path, "job-a")
    second = launch(tiny_config(tiny_source), tmp_path, "job-b")
    third = launch(tiny_config(tiny_source), tmp_path, "job-c")
    assert cancel(third, tmp_path)["state"] == "cancelled"
    wait_until(
        lambda: status(second, tmp_path)["state"] in ("finished", "failed"), 240, "job-b to end"
    )
    a, b = status(first, tmp_path), status(second, tmp_path)
    assert a["state"] == b["state"] == "finished", (a, b)
    assert b["started"] >= a["finished"]  # one at a time, in the order launched
    # the cancelled job's runner has looked at its status and gone without training it
    runner = status(third, tmp_path)["runner_pid"]
    wait_until(lambda: not process_alive(runner), 60, "the cancelled job's runner to exit")
    assert status(third, tmp_path)["state"] == "cancelled"
    assert not (runs_dir(tmp_path) / third / "history.jsonl").exists()
    assert [run["run_id"] for run in list_runs(tmp_path)] == [first, second, third]


@pytest.mark.slow
def test_cancelling_a_running_job_keeps_its_last_checkpoint(tiny_source, tmp_path):
    run_id = launch(tiny_config(tiny_source, epochs=50), tmp_path, "long")
    history = runs_dir(tmp_path) / run_id / "history.jsonl"
    wait_until(lambda: history.exists() and history.read_text().strip() != "", 240, "a first epoch")
    cancel(run_id, tmp_path)
    wait_until(lambda: status(run_id, tmp_path)["state"] != "running", 60, "the run to stop")
    final = json.loads((runs_dir(tmp_path) / run_id / "status.json").read_text())
    assert final["state"] == "cancelled"
    assert (runs_dir(tmp_path) / run_id / "checkpoint_last.pt").is_file()


def test_cancel_never_signals_a_process_that_only_shares_the_recorded_pid(tmp_path):
    """The recorded trainer died and its pid now belongs to an unrelated process."""
    from nsclc_engine.runs import process_started, run_lock

    bystander = subprocess.Popen(["sleep", "60"])
    try:
        folder = runs_dir(tmp_path) / create_run(TrainConfig(), tmp_path, "reused")
        update_status(folder, state="running", pid=bystander.pid)
        cancel("reused", tmp_path)  # nobody holds the run lock: the trainer is gone
        with run_lock(folder):  # a trainer holds it, but the pid names another process
            update_status(folder, state="running", pid=bystander.pid, pid_started="1")
            cancel("reused", tmp_path)
        assert bystander.poll() is None, "cancel signalled an unrelated process"
        with run_lock(folder):  # pid, start time and lock agree: that process is signalled
            update_status(folder, pid_started=process_started(bystander.pid))
            cancel("reused", tmp_path)
        assert bystander.wait(timeout=10) == -15  # SIGTERM
    finally:
        bystander.kill()
        bystander.wait()
