import multiprocessing
import os
from dataclasses import replace

import numpy as np
import pytest

from nsclc_engine.preprocess.cache import VolumeCache
from nsclc_engine.preprocess.volumes import (
    PRESETS,
    cache_key,
    cohort_sources,
    main,
    preprocess_cohort,
)
from tests.helpers import build_synthetic

TINY_PRESET = replace(PRESETS["demo"], out_depth=8, out_height=16, out_width=16)


@pytest.fixture()
def tiny_cohort(tmp_path):
    build_synthetic(tmp_path, n_patients=3)
    return tmp_path / "cohort"


def test_put_get_round_trip_memory_mapped(tmp_path):
    image = np.random.default_rng(0).random((4, 5, 6), dtype=np.float32)
    mask = image > 0.5
    with VolumeCache(tmp_path) as cache:
        cache.put("k" * 64, "LUNG1/001", image, mask, {"note": 1})
        entry = cache.get("k" * 64)
        loaded_image, loaded_mask = entry.load()
        assert isinstance(loaded_image, np.memmap)
        np.testing.assert_array_equal(loaded_image, image)
        np.testing.assert_array_equal(loaded_mask, mask)
        assert entry.metadata == {"note": 1}
        assert entry.image_path.name.startswith("LUNG1_001__")  # patient-level, safe file name
        assert cache.get("x" * 64) is None


def statuses(table):
    return table.status.value_counts().to_dict()


def test_second_run_hits_and_changes_miss(tiny_cohort, tmp_path):
    cache_dir = tmp_path / "cache"
    first = preprocess_cohort(tiny_cohort, TINY_PRESET, cache_dir, workers=1, show_progress=False)
    assert statuses(first) == {"miss": 3}
    again = preprocess_cohort(tiny_cohort, TINY_PRESET, cache_dir, workers=1, show_progress=False)
    assert statuses(again) == {"hit": 3} and again.key.tolist() == first.key.tolist()
    other = replace(TINY_PRESET, crop_mode="fixed_fov")
    assert statuses(preprocess_cohort(tiny_cohort, other, cache_dir, 1, False)) == {"miss": 3}
    # touching one source file (a new mtime) is a miss for that patient only
    source = cohort_sources(tiny_cohort)[1]
    path = source.ct_headers[0].path
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10**9))
    touched = preprocess_cohort(tiny_cohort, TINY_PRESET, cache_dir, 1, False)
    assert touched.set_index("patient_id").status.to_dict() == {
        "DEMO-001": "hit",
        "DEMO-002": "miss",
        "DEMO-003": "hit",
    }


def test_corrupt_entry_is_detected_and_rebuilt(tiny_cohort, tmp_path, caplog):
    cache_dir = tmp_path / "cache"
    preprocess_cohort(tiny_cohort, TINY_PRESET, cache_dir, workers=1, show_progress=False)
    source = cohort_sources(tiny_cohort)[0]
    with VolumeCache(cache_dir) as cache:
        entry = cache.get(cache_key(source, TINY_PRESET))
        original = np.load(entry.image_path)
        data = bytearray(entry.image_path.read_bytes())
        data[-5] ^= 0xFF  # one flipped byte in the array
        entry.image_path.write_bytes(bytes(data))
        assert cache.get(entry.key) is None
    assert "fails its CRC32 check" in caplog.text
    rebuilt = preprocess_cohort(tiny_cohort, TINY_PRESET, cache_dir, workers=1, show_progress=False)
    assert statuses(rebuilt) == {"miss": 1, "hit": 2}
    np.testing.assert_array_equal(np.load(entry.image_path), original)


def test_a_writer_killed_between_files_leaves_no_entry(tmp_path, monkeypatch):
    image = np.zeros((2, 3, 4), dtype=np.float32)
    real_replace = os.replace
    calls = []

    def dies_on_second_file(source, target):
        calls.append(target)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as if killed after the image, before the mask
        real_replace(source, target)

    with VolumeCache(tmp_path) as cache:
        monkeypatch.setattr("nsclc_engine.atomic.os.replace", dies_on_second_file)
        with pytest.raises(KeyboardInterrupt):
            cache.put("a" * 64, "P", image, image > 0, {})
        monkeypatch.undo()
        assert cache.get("a" * 64) is None and len(cache) == 0
        cache.put("a" * 64, "P", image, image > 0, {})  # the next writer succeeds
        assert cache.get("a" * 64) is not None


def _fill(args):
    cohort, cache_dir = args
    table = preprocess_cohort(cohort, TINY_PRESET, cache_dir, workers=1, show_progress=False)
    return sorted(table.status)


@pytest.mark.slow
def test_concurrent_writers_and_readers_agree(tiny_cohort, tmp_path):
    cache_dir = tmp_path / "cache"
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        results = pool.map(_fill, [(tiny_cohort, cache_dir)] * 2)
    assert all(status in ("hit", "miss") for result in results for status in result)
    final = preprocess_cohort(tiny_cohort, TINY_PRESET, cache_dir, workers=1, show_progress=False)
    assert statuses(final) == {"hit": 3}


def test_cli_uses_the_cache_dir_from_the_environment(tiny_cohort, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NSCLC_CACHE_DIR", str(tmp_path / "env_cache"))
    args = ["--cohort", str(tiny_cohort), "--preset", "demo", "--set", "out_depth=8", "--quiet"]
    assert main([*args, "--workers", "1"]) == 0
    assert "0 cache hits, 3 preprocessed" in capsys.readouterr().out
    assert main([*args, "--workers", "1"]) == 0
    assert "3 cache hits, 0 preprocessed" in capsys.readouterr().out
    assert len(list((tmp_path / "env_cache" / "volumes").glob("*.image.npy"))) == 3
    assert main([*args, "--set", "colour=red"]) == 2
    assert "unknown PreprocessConfig key" in capsys.readouterr().err


def test_dataset_paths_come_from_checked_cache_entries(tiny_cohort, tmp_path):
    from nsclc_engine.preprocess.dataset import items_from_cache

    cache_dir = tmp_path / "cache"
    table = preprocess_cohort(tiny_cohort, TINY_PRESET, cache_dir, workers=1, show_progress=False)
    keys = dict(zip(table.patient_id, table.key, strict=True))
    labels = {pid: 1 for pid in keys}
    paths = items_from_cache(cache_dir, keys, labels, TINY_PRESET)
    assert sorted(paths) == sorted(keys) and all(p.is_file() for p in paths.values())
    with pytest.raises(ValueError, match="another config"):
        items_from_cache(cache_dir, keys, labels, replace(TINY_PRESET, fov_mm=99.0))
    with pytest.raises(ValueError, match="DEMO-001: no valid cache entry"):
        items_from_cache(cache_dir, {}, labels, TINY_PRESET)
