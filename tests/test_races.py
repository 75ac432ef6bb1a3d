"""Thread and process races on the files several writers share: a run's status and threshold,
the volume cache, and readers listing runs meanwhile. Streamlit sessions are threads of one
process; trainers and evaluations are other processes. No error and no lost update, 1,000
rounds each."""

import json
import multiprocessing
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from nsclc_engine.atomic import update_json
from nsclc_engine.evaluate.run import write_threshold_file
from nsclc_engine.preprocess.cache import VolumeCache
from nsclc_engine.runs import create_run, list_runs, runs_dir, status, update_status

ROUNDS = 1000


def together(*jobs):
    """Run the callables at the same moment, one thread each; returns their results."""
    start = threading.Barrier(len(jobs))

    def call(job):
        start.wait()
        return job()

    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(call, jobs))


def test_an_evaluation_and_a_dashboard_save_never_lose_each_others_threshold(tmp_path):
    for round_ in range(ROUNDS):
        folder = tmp_path / str(round_ % 10)
        fitted = {"thresholds": [{"fold": 0, "threshold": round_ / ROUNDS}]}
        saved = {"threshold": 1 - round_ / ROUNDS, "source": "dashboard"}
        together(
            lambda: write_threshold_file(folder, fitted=fitted),  # noqa: B023
            lambda: write_threshold_file(folder, operating_point=saved),  # noqa: B023
        )
        on_disk = json.loads((folder / "threshold.json").read_text())
        assert on_disk["fitted"] == fitted and on_disk["operating_point"] == saved
        assert on_disk["threshold"] == saved["threshold"]  # the saved point is in force


def test_status_updates_from_threads_keep_every_key_while_sessions_list_runs(tmp_path):
    folder = runs_dir(tmp_path) / create_run({}, tmp_path, "busy")
    listed = []
    for round_ in range(ROUNDS):
        together(
            lambda: update_status(folder, progress=round_),  # noqa: B023
            lambda: update_status(folder, stage=f"stage {round_}"),  # noqa: B023
            lambda: listed.append(list_runs(tmp_path)[0]["state"]),
            lambda: listed.append(status(folder)["state"]),
        )
        current = json.loads((folder / "status.json").read_text())
        assert (current["progress"], current["stage"]) == (round_, f"stage {round_}")
    assert set(listed) == {"queued"}


def _count(path, times):
    for _ in range(times):
        update_json(path, lambda current: {"n": current.get("n", 0) + 1})


def test_processes_incrementing_one_file_lose_no_update(tmp_path):
    path = tmp_path / "counter.json"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_count, args=(path, ROUNDS // 2)) for _ in range(2)]
    for worker in workers:
        worker.start()
    _count(path, ROUNDS // 2)  # and this process at the same time
    for worker in workers:
        worker.join()
        assert worker.exitcode == 0
    assert json.loads(path.read_text()) == {"n": 3 * (ROUNDS // 2)}


def test_two_sessions_writing_one_cache_key_never_fail_and_read_a_whole_entry(tmp_path):
    image = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    mask = image > 60
    with VolumeCache(tmp_path / "cache") as cache:
        for round_ in range(ROUNDS):
            key = f"key-{round_ % 20}"
            entries = together(
                lambda: cache.put(key, "LUNG1-001", image, mask, {"round": 0}),  # noqa: B023
                lambda: cache.put(key, "LUNG1-001", image, mask, {"round": 0}),  # noqa: B023
            )
            assert len(entries) == 2
            loaded_image, loaded_mask = cache.get(key).load()
            np.testing.assert_array_equal(loaded_image, image)
            np.testing.assert_array_equal(loaded_mask, mask)
