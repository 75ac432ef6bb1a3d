"""The one atomic writer: a reader sees the old file or the new one, never half of one, and a
failed writer leaves the old file and no temporary behind; JSON-ready copies of NumPy values."""

import json
import math
import threading
from pathlib import Path

import numpy as np
import pytest

from nsclc_engine.atomic import (
    atomic_path,
    json_line,
    remove_stale_temporaries,
    swap_folder,
    to_jsonable,
    update_json,
    write_json,
    write_text_atomic,
)


def test_atomic_path_replaces_the_target_only_when_the_block_ends(tmp_path):
    target = tmp_path / "deep" / "er" / "out.txt"  # missing parents are made
    with atomic_path(target) as temporary:
        assert temporary.parent == target.parent and temporary != target
        temporary.write_text("new")
        assert not target.exists()  # nothing is visible before the block ends
    assert target.read_text() == "new"
    assert [path.name for path in target.parent.iterdir()] == ["out.txt"]


def test_a_raising_writer_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "status.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="killed"), atomic_path(target) as temporary:
        temporary.write_text("half of the new")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert [path.name for path in tmp_path.iterdir()] == ["status.json"]


def test_a_writer_that_fails_before_writing_creates_nothing(tmp_path):
    target = tmp_path / "never.txt"
    with pytest.raises(OSError), atomic_path(target):
        raise OSError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_to_jsonable_converts_numpy_paths_and_tuples():
    value = {
        "loss": np.float32(0.5),
        "epoch": np.int64(3),
        "best": np.bool_(True),
        "grid": np.arange(4).reshape(2, 2),
        "folder": Path("runs") / "demo",
        "shape": (1, np.int32(2)),
        "nested": [{"auc": np.float64(0.75)}],
        "missing": float("nan"),
    }
    result = to_jsonable(value)
    assert result == {
        "loss": 0.5,
        "epoch": 3,
        "best": True,
        "grid": [[0, 1], [2, 3]],
        "folder": "runs/demo",
        "shape": [1, 2],
        "nested": [{"auc": 0.75}],
        "missing": result["missing"],
    }
    assert math.isnan(result["missing"])  # non-finite floats are kept, not dropped
    assert type(result["loss"]) is float and type(result["epoch"]) is int
    assert type(result["best"]) is bool and type(result["grid"][0][0]) is int
    assert type(result["shape"][1]) is int and type(result["nested"][0]["auc"]) is float


def test_write_json_round_trip(tmp_path):
    payload = {"auc": np.float64(0.8125), "counts": np.array([3, 1]), "ids": ("p1", "p2")}
    path = tmp_path / "metrics.json"
    write_json(path, payload)
    text = path.read_text()
    assert text.endswith("}\n") and '\n  "auc": 0.8125' in text  # indented, one final newline
    assert json.loads(text) == {"auc": 0.8125, "counts": [3, 1], "ids": ["p1", "p2"]}
    write_text_atomic(path, "replaced")
    assert path.read_text() == "replaced"


def test_json_line_is_one_line():
    line = json_line({"epoch": np.int64(2), "val_auc": np.float32(0.5), "note": "a\nb"})
    assert line.endswith("\n") and line.count("\n") == 1
    assert json.loads(line) == {"epoch": 2, "val_auc": 0.5, "note": "a\nb"}


def test_two_writers_never_leave_a_torn_or_missing_file_for_a_reader(tmp_path):
    path = tmp_path / "status.json"
    # large enough that a torn write would show: 2 000 digits of the writer's id
    payloads = {writer: {"writer": writer, "digits": [writer] * 2_000} for writer in (1, 2)}
    write_json(path, payloads[1])
    failures: list[str] = []

    def write(writer: int) -> None:
        try:
            for _ in range(50):
                write_json(path, payloads[writer])
        except Exception as error:  # a failure in a thread must reach the test
            failures.append(repr(error))

    writers = [threading.Thread(target=write, args=(writer,)) for writer in (1, 2)]
    for thread in writers:
        thread.start()
    reads = 0
    while any(thread.is_alive() for thread in writers):
        payload = json.loads(path.read_text())  # raises on a missing or torn file
        assert payload == payloads[payload["writer"]]
        reads += 1
    for thread in writers:
        thread.join()
    assert failures == [] and reads > 1
    assert json.loads(path.read_text()) in payloads.values()
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]  # no temporary left behind


def test_temporaries_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    import os
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], **CAPTURE)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".checkpoint_last.pt.{dead_pid}.1.ab12cd34.tmp"
    live = tmp_path / f".status.json.{os.getpid()}.1.ab12cd34.tmp"
    for path in (stale, live, tmp_path / "checkpoint_last.pt"):
        path.write_text("x")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "checkpoint_last.pt"])


CAPTURE = {"capture_output": True, "text": True, "check": True}


def test_swap_folder_puts_the_new_build_in_place_whole(tmp_path):
    old, new = tmp_path / "cohort", tmp_path / ".cohort.building"
    old.mkdir()
    (old / "cohort.csv").write_text("old build")
    (old / "cleaning_report.csv").write_text("old report")
    new.mkdir()
    (new / "cohort.csv").write_text("new build")
    swap_folder(new, old)
    assert [p.name for p in old.iterdir()] == ["cohort.csv"]  # nothing of the old build mixed in
    assert (old / "cohort.csv").read_text() == "new build"
    assert (
        new / "cohort.csv"
    ).read_text() == "old build"  # the old build, for the caller to remove
    fresh = tmp_path / ".fresh"
    fresh.mkdir()
    swap_folder(fresh, tmp_path / "first")  # no previous build: a plain rename
    assert (tmp_path / "first").is_dir() and not fresh.exists()


def test_update_json_applies_the_change_to_what_is_on_disk(tmp_path):
    path = tmp_path / "status.json"
    assert update_json(path, lambda current: current | {"a": 1}) == {"a": 1}
    assert update_json(path, lambda current: current | {"b": 2}) == {"a": 1, "b": 2}
    assert json.loads(path.read_text()) == {"a": 1, "b": 2}
