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
