"""The run folder: ids, creation, status (read only, a dead process reads as failed), listing,
splits, checkpoint names and history, on folders written by hand."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from nsclc_engine.cohort.splits import SplitConfig, save_splits
from nsclc_engine.runs import (
    RUN_ID,
    RunBusy,
    best_checkpoint,
    checkpoint_paths,
    create_run,
    list_runs,
    load_splits,
    lock_held,
    process_started,
    read_config,
    read_history,
    read_survival_baselines,
    run_dir,
    run_lock,
    runs_dir,
    status,
    update_status,
    validate_run_id,
    write_history,
    write_survival_baselines,
)


def dead_pid() -> int:
    """The id of a process that has ended (and been reaped)."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@pytest.mark.parametrize("bad", ["../x", "a/b", "/abs", "", ".hidden", "-x", "a b", "x" * 65])
def test_run_ids_that_are_paths_or_odd_are_rejected(bad, tmp_path):
    with pytest.raises(ValueError, match=r"run id .*no paths"):
        validate_run_id(bad)
    with pytest.raises(ValueError, match="run id"):
        run_dir(bad, tmp_path)


@pytest.mark.parametrize("good", ["demo", "a", "20240101-120000-abc123", "run_1.v2", "x" * 64])
def test_plain_run_ids_are_accepted(good, tmp_path):
    assert validate_run_id(good) == good
    assert run_dir(good, tmp_path) == tmp_path / "runs" / good


def test_create_run_writes_config_and_a_queued_status_once(tmp_path):
    config = {"label": "os_2y", "epochs": 2}
    assert create_run(config, tmp_path, "demo") == "demo"
    folder = tmp_path / "runs" / "demo"
    assert json.loads((folder / "config.json").read_text()) == config
    assert read_config(folder) == config
    saved = json.loads((folder / "status.json").read_text())
    assert {k: saved[k] for k in ("state", "progress", "run_id")} == {
        "state": "queued",
        "progress": 0.0,
        "run_id": "demo",
    }
    assert saved["created"] <= saved["updated"]
    with pytest.raises(ValueError, match=r"run 'demo' already exists .* --resume demo"):
        create_run({"label": "other"}, tmp_path, "demo")
    assert read_config(folder) == config  # the first run's config is untouched
    generated = create_run(config, tmp_path)
    assert RUN_ID.match(generated) and generated != "demo"


def test_a_run_killed_before_its_config_landed_never_started_and_is_started_again(tmp_path, capsys):
    from nsclc_engine.train.__main__ import main

    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    folder = tmp_path / "runs" / "r"
    folder.mkdir(parents=True)  # killed at the first temporary file of the run
    (folder / f".config.json.{ended.stdout.strip()}.1.abcd1234.tmp").write_text("{")
    assert list_runs(tmp_path) == []  # no run
    assert main(["--resume", "r", "--artifacts", str(tmp_path)]) == 2
    assert "never started" in capsys.readouterr().err
    assert create_run({"label": "os_2y"}, tmp_path, "r") == "r"  # the same --run-id again
    assert not list(folder.glob("*.tmp")) and read_config(folder) == {"label": "os_2y"}
    assert [run["run_id"] for run in list_runs(tmp_path)] == ["r"]
    other = tmp_path / "runs" / "kept"
    other.mkdir()
    (other / "notes.txt").write_text("not a temporary")  # something else there: not reused
    with pytest.raises(ValueError, match="already exists"):
        create_run({"label": "os_2y"}, tmp_path, "kept")


def test_read_config_of_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(ValueError, match=r"no config\.json; this is not a run folder"):
        read_config(tmp_path)


def test_update_status_merges_into_the_file(tmp_path):
    folder = runs_dir(tmp_path) / create_run({}, tmp_path, "merge")
    update_status(folder, state="running", pid=os.getpid())
    returned = update_status(folder, progress=0.5)
    saved = json.loads((folder / "status.json").read_text())
    assert returned == saved
    assert (saved["state"], saved["pid"], saved["progress"], saved["run_id"]) == (
        "running",
        os.getpid(),
        0.5,
        "merge",
    )


def test_a_running_run_whose_trainer_lock_is_free_reads_as_failed_without_a_write(tmp_path):
    folder = runs_dir(tmp_path) / create_run({}, tmp_path, "orphan")
    # the pid is alive (this process) but nobody holds the run lock: the trainer is gone
    update_status(folder, state="running", pid=os.getpid())
    before = (folder / "status.json").read_bytes()
    current = status(folder)
    assert current["state"] == "failed"
    assert current["error"] == "the training process ended without a final status"
    assert (folder / "status.json").read_bytes() == before  # reading changed nothing on disk
    assert json.loads(before)["state"] == "running"


def test_a_queued_run_whose_runner_died_reads_as_failed(tmp_path):
    folder = runs_dir(tmp_path) / create_run({}, tmp_path, "queued")
    update_status(folder, runner_pid=dead_pid())
    assert status(folder)["state"] == "failed"


def test_a_queued_run_whose_pid_now_names_another_process_reads_as_failed(tmp_path):
    folder = runs_dir(tmp_path) / create_run({}, tmp_path, "reused")
    # this process is alive, but it is not the one that started at that time: a reused pid
    update_status(folder, runner_pid=os.getpid(), runner_started="1")
    assert status(folder)["state"] == "failed"
    update_status(folder, runner_started=process_started(os.getpid()))
    assert status(folder)["state"] == "queued"


def test_the_run_lock_refuses_a_second_trainer_and_marks_the_run_running(tmp_path):
    folder = runs_dir(tmp_path) / create_run({}, tmp_path, "busy")
    update_status(folder, state="running", pid=os.getpid())
    assert not lock_held(folder)
    with run_lock(folder):
        assert lock_held(folder)
        assert status(folder)["state"] == "running"
        with pytest.raises(RunBusy, match=f"run 'busy' is being trained by process {os.getpid()}"):
            with run_lock(folder):
                pass
    assert not lock_held(folder)
    with run_lock(folder):  # free again once released
        pass


def test_runs_created_in_the_same_second_keep_their_order(tmp_path):
    names = ["zeta", "alpha", "mu", "beta"]
    for name in names:
        create_run({}, tmp_path, name)
        update_status(runs_dir(tmp_path) / name, created="2024-01-01T00:00:00")
    assert [run["run_id"] for run in list_runs(tmp_path)] == names
    assert [run["sequence"] for run in list_runs(tmp_path)] == [1, 2, 3, 4]


@pytest.mark.parametrize(
    ("state", "pid_key", "alive", "reads_as"),
    [
        ("queued", "runner_pid", True, "queued"),
        ("finished", "pid", False, "finished"),  # an ended run's process is meant to be gone
        ("cancelled", "runner_pid", False, "cancelled"),
    ],
)
def test_live_or_ended_runs_read_as_saved(state, pid_key, alive, reads_as, tmp_path):
    folder = runs_dir(tmp_path) / create_run({}, tmp_path, "run")
    update_status(folder, state=state, **{pid_key: os.getpid() if alive else dead_pid()})
    assert status(folder)["state"] == reads_as


def test_status_of_a_missing_run(tmp_path):
    with pytest.raises(ValueError, match="no run 'ghost'"):
        status(runs_dir(tmp_path) / "ghost")


def test_list_runs_is_oldest_first_then_by_sequence(tmp_path):
    assert list_runs(tmp_path) == []  # no runs folder yet
    for run_id, created in [
        ("b", "2024-01-02T00:00:00"),
        ("c", "2024-01-01T00:00:00"),
        ("a", "2024-01-03T00:00:00"),
        ("d", "2024-01-01T00:00:00"),
    ]:
        update_status(runs_dir(tmp_path) / create_run({}, tmp_path, run_id), created=created)
    (runs_dir(tmp_path) / "not-a-run").mkdir()  # a folder without status.json is left out
    runs = list_runs(tmp_path)
    assert [run["run_id"] for run in runs] == ["c", "d", "b", "a"]  # c was created before d
    assert {run["state"] for run in runs} == {"queued"}


def write_splits(folder, splits):
    """A ``splits.json`` as training writes it (:func:`nsclc_engine.cohort.splits.save_splits`)."""
    save_splits(
        folder / "splits.json",
        splits,
        SplitConfig(folds=len(splits) if len(splits) > 1 else 0),
        "os_2y",
        "h",
    )


def test_load_splits_returns_disjoint_splits(tmp_path):
    splits = [
        {"train": ["p1", "p2"], "validation": ["p3"], "test": ["p4"]},
        {"train": ["p3", "p4"], "validation": ["p1"], "test": ["p2"]},
    ]
    write_splits(tmp_path, splits)
    assert load_splits(tmp_path) == splits


def test_load_splits_rejects_a_patient_in_two_parts(tmp_path):
    write_splits(tmp_path, [{"train": ["p1", "p2"], "validation": ["p3"], "test": ["p2"]}])
    with pytest.raises(ValueError, match="patient p2 is in both 'train' and 'test'"):
        load_splits(tmp_path)


def test_load_splits_of_a_run_that_has_not_started(tmp_path):
    with pytest.raises(ValueError, match=r"no splits\.json; the run has not started training"):
        load_splits(tmp_path)


def test_checkpoint_names(tmp_path):
    assert checkpoint_paths(tmp_path, 0, 0) == (
        tmp_path / "checkpoint_last.pt",
        tmp_path / "checkpoint_best.pt",
    )
    assert checkpoint_paths(tmp_path, 2, 5) == (
        tmp_path / "checkpoint_last_fold2.pt",
        tmp_path / "checkpoint_best_fold2.pt",
    )


def test_best_checkpoint_prefers_the_folds_own_and_says_what_it_looked_for(tmp_path):
    folder = tmp_path / "run-x"
    folder.mkdir()
    message = (
        "run-x: no best checkpoint for fold 1 (looked for checkpoint_best_fold1.pt, "
        "checkpoint_best.pt); the run has not finished an epoch"
    )
    with pytest.raises(FileNotFoundError) as raised:
        best_checkpoint(folder, 1)
    assert str(raised.value) == message
    (folder / "checkpoint_best.pt").write_bytes(b"one split")
    assert best_checkpoint(folder) == folder / "checkpoint_best.pt"
    (folder / "checkpoint_best_fold1.pt").write_bytes(b"fold 1")
    assert best_checkpoint(folder, 1) == folder / "checkpoint_best_fold1.pt"


def test_history_round_trip_in_fold_order(tmp_path):
    assert read_history(tmp_path) == []  # no history.jsonl yet
    history = {
        1: [{"fold": 1, "epoch": 1, "val_auc": np.float32(0.5)}],
        0: [{"fold": 0, "epoch": 1, "train_loss": 0.7}, {"fold": 0, "epoch": np.int64(2)}],
    }
    write_history(tmp_path, history)
    assert read_history(tmp_path) == [
        {"fold": 0, "epoch": 1, "train_loss": 0.7},
        {"fold": 0, "epoch": 2},
        {"fold": 1, "epoch": 1, "val_auc": 0.5},
    ]
    assert len((tmp_path / "history.jsonl").read_text().splitlines()) == 3


def test_survival_baselines_round_trip_and_read_as_empty_where_absent(tmp_path):
    assert read_survival_baselines(tmp_path) == []  # evaluated before baselines existed
    folds = [
        {"fold": 0, "raw": {"times": [10.0], "slope": np.float64(1.0)}, "recalibrated_note": "x"}
    ]
    write_survival_baselines(tmp_path, folds, fitted_on="validation")
    assert read_survival_baselines(tmp_path) == [
        {"fold": 0, "raw": {"times": [10.0], "slope": 1.0}, "recalibrated_note": "x"}
    ]
    # an external run of a k-fold source: its models' baselines aside, no fold entry applies
    write_survival_baselines(tmp_path, [], "validation of run cv (frozen)", fold_models=folds)
    written = json.loads((tmp_path / "survival_baseline.json").read_text())
    assert written["fitted_on"] == "validation of run cv (frozen)" and written["fold_models"]
    assert read_survival_baselines(tmp_path) == []


KILLED_WITH_WORKERS = """
import os, signal, sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from nsclc_engine.runs import run_lock
with run_lock(Path(sys.argv[1])):
    pool = ProcessPoolExecutor(2)  # forked while the lock is held, as the cohort build does
    list(pool.map(abs, [1, 2, 3]))
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_trainer_killed_while_its_workers_live_frees_the_run_lock(tmp_path):
    """Forked workers outlive a SIGKILLed parent; they must not keep its run lock."""
    import signal

    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_WITH_WORKERS, str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its orphaned workers stay in its process group
    )
    try:
        assert process.wait(timeout=60) == -signal.SIGKILL
        assert not lock_held(tmp_path)
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # the orphaned workers
        except ProcessLookupError:
            pass


def test_cancelling_a_queued_run_never_overwrites_one_that_started_meanwhile(tmp_path):
    from nsclc_engine.runs import cancel_if_queued

    folder = runs_dir(tmp_path) / create_run({}, tmp_path, "race")
    update_status(folder, state="running")  # its runner started between read and cancel
    assert cancel_if_queued(folder)["state"] == "running"
    update_status(folder, state="queued")
    assert cancel_if_queued(folder)["state"] == "cancelled"


def test_a_run_folder_written_and_read_through_its_one_reader_and_writer_per_file(tmp_path):
    import pandas as pd

    from nsclc_engine.runs import (
        Run,
        update_threshold,
        write_calibration,
        write_config,
        write_history,
        write_metrics,
        write_predictions,
    )

    folder = tmp_path / "runs" / "hand"
    folder.mkdir(parents=True)
    write_config(folder, {"task": "survival", "label": "deadstatus_event"})
    frame = pd.DataFrame(
        {"patient_id": ["001", "010"], "split": ["test"] * 2, "fold": [0, 0], "risk": [0.1, 0.2]}
    )
    write_predictions(folder, frame)
    write_metrics(folder, {"task": "survival", "splits": {}})
    update_threshold(folder, lambda saved: saved | {"threshold": 0.5})
    write_calibration(folder, {"method": "none"})
    write_history(folder, {0: [{"fold": 0, "epoch": 1, "val_c_index": 0.6}]})
    run = Run.of("hand", tmp_path)
    assert run.run_id == "hand" and run.spec.metric_key == "c_index"
    assert run.predictions.patient_id.tolist() == ["001", "010"]  # ids stay text
    assert run.metrics["task"] == "survival" and run.threshold == {"threshold": 0.5}
    assert run.calibration == {"method": "none"} and run.history[0]["val_c_index"] == 0.6
    with pytest.raises(ValueError, match=r"no splits\.json"):
        assert run.splits


def test_an_old_trained_runs_config_is_brought_to_todays_fields_in_one_place(tmp_path):
    from nsclc_engine.runs import Run, migrated, read_saved_config, write_config
    from nsclc_engine.train.config import load_run_config

    folder = tmp_path / "runs" / "old"
    folder.mkdir(parents=True)
    write_config(folder, {"label": "os_2y", "epochs": 3})  # before protocols and networks
    today = load_run_config(folder)
    assert (today.protocol, today.monitor, today.cox_bank, today.model) == (
        "report",
        "loss",
        0,
        "resnet18",
    )
    assert Run(folder).config["protocol"] == read_saved_config(folder)["protocol"] == "report"
    assert migrated({"kind": "imported", "task": "survival"}) == {
        "kind": "imported",
        "task": "survival",
    }
    assert read_saved_config(tmp_path / "runs" / "absent") == {}
