"""The training cohort's cache key follows the sources' contents, not only their names."""

import os

import pytest

from nsclc_engine.train.prepare import source_key


def test_the_cohort_key_changes_when_a_source_file_is_added_changed_or_removed(tmp_path):
    dicom, clinical = tmp_path / "dicom", tmp_path / "clinical.csv"
    dicom.mkdir()
    clinical.write_text("PatientID\n")
    empty = source_key(dicom, clinical)
    assert source_key(dicom, clinical) == empty  # stable
    (dicom / "ct1.dcm").write_bytes(b"x" * 10)
    one = source_key(dicom, clinical)
    assert one != empty  # the data copied in after a run against the empty folder
    (dicom / "ct1.dcm").write_bytes(b"y" * 11)
    assert source_key(dicom, clinical) not in (empty, one)
    stamp = (dicom / "ct1.dcm").stat().st_mtime_ns
    os.utime(dicom / "ct1.dcm", ns=(stamp, stamp + 10**9))
    changed = source_key(dicom, clinical)
    os.utime(clinical, ns=(stamp, stamp + 10**9))
    assert source_key(dicom, clinical) != changed  # the clinical file counts too
    (dicom / "ct1.dcm").unlink()
    assert source_key(dicom, clinical) != one
    with pytest.raises(ValueError, match="must be a folder"):
        source_key(clinical, clinical)


def test_a_search_worker_checks_its_data_once_and_each_trial_gets_its_own_copy(
    tiny_source, tmp_path, monkeypatch
):
    from nsclc_engine.preprocess import volumes
    from nsclc_engine.train.config import TrainConfig
    from nsclc_engine.train.prepare import prepare_data, reuse_prepared_data

    checked = []
    real = volumes.preprocess_cohort
    monkeypatch.setattr(
        volumes, "preprocess_cohort", lambda *a, **k: checked.append(1) or real(*a, **k)
    )
    source = {"dicom": str(tiny_source / "dicom"), "clinical": str(tiny_source / "clinical.csv")}
    config = TrainConfig(preset="smoke", **source)
    with reuse_prepared_data():
        first = prepare_data(config, tmp_path, False)
        first.labels.clear()  # a trial changing its copy changes no other trial's
        second = prepare_data(config, tmp_path, False)
        other = prepare_data(
            TrainConfig(preset="smoke", label="deadstatus_event", **source), tmp_path, False
        )
    assert len(checked) == 2  # once per data setting, not once per trial
    assert len(second.labels) == 40 and second.image_paths and other.labels != second.labels
    prepare_data(config, tmp_path, False)  # outside a worker: checked every time
    assert len(checked) == 3
