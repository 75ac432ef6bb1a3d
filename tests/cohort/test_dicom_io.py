import logging
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest

from nsclc_engine.cohort import dicom_io
from nsclc_engine.synth.outcome import simulate_patient
from nsclc_engine.synth.phantom import render_patient


def header(z_mm, instance, path=None, **changes):
    base = dicom_io.DicomHeader(
        path=path or f"/data/{instance}.dcm",
        size_bytes=1,
        mtime_ns=0,
        modality="CT",
        patient_id="P",
        study_uid="1.2",
        series_uid="1.2.3",
        sop_uid=f"1.2.3.{instance}",
        sop_class_uid=dicom_io.CT_IMAGE_STORAGE,
        instance_number=instance,
        image_position_mm=(-100.0, -50.0, z_mm),
        image_orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
        pixel_spacing_mm=(0.5, 0.75),
        rows=4,
        columns=6,
    )
    return replace(base, **changes)


def test_slices_are_ordered_by_position_along_the_normal_not_by_number():
    # instance numbers and file names run against the positions
    headers = [header(z, instance) for instance, z in enumerate([6.0, 0.0, 3.0, 9.0])]
    geometry = dicom_io.ct_series_geometry(headers)
    assert [path.split("/")[-1] for path in geometry.paths] == ["1.dcm", "2.dcm", "0.dcm", "3.dcm"]
    assert geometry.shape_zyx == (4, 4, 6)
    assert geometry.spacing_mm == (3.0, 0.5, 0.75)  # z; rows (y) then columns (x)
    assert geometry.origin_mm == (-100.0, -50.0, 0.0)


def test_coronal_stack_is_ordered_along_its_own_normal():
    orientation = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)  # normal = row x column = (0, 1, 0)
    headers = [
        header(0.0, i, image_orientation=orientation, image_position_mm=(0.0, y, 0.0))
        for i, y in enumerate([4.0, 2.0, 0.0])
    ]
    geometry = dicom_io.ct_series_geometry(headers)
    assert geometry.paths == ("/data/2.dcm", "/data/1.dcm", "/data/0.dcm")
    assert geometry.direction[2] == (0.0, 1.0, 0.0)
    assert geometry.spacing_mm[0] == 2.0


def test_voxel_patient_round_trip():
    geometry = dicom_io.ct_series_geometry([header(z, i) for i, z in enumerate([0.0, 3.0, 6.0])])
    index_xyz = np.array([[2.0, 1.0, 2.0], [0.25, 3.5, 0.0]])
    patient = geometry.voxel_to_patient(index_xyz)
    np.testing.assert_allclose(patient[0], [-100.0 + 2 * 0.75, -50.0 + 1 * 0.5, 6.0])
    np.testing.assert_allclose(geometry.patient_to_voxel(patient), index_xyz)


@pytest.mark.parametrize(
    ("positions", "changes", "message"),
    [
        ([0.0, 3.0, 3.0, 6.0], {}, "same position"),
        ([0.0, 3.0, 9.0, 12.0], {}, "uneven slice spacing"),
        (
            [0.0, 3.0, 6.0],
            {"image_orientation": (1.0, 0.0, 0.0, 0.0, 0.98, 0.199)},
            "ImageOrientation",
        ),
        ([0.0, 3.0, 6.0], {"pixel_spacing_mm": (0.6, 0.75)}, "PixelSpacing"),
        ([0.0, 3.0, 6.0], {"image_position_mm": None}, "no ImagePositionPatient"),
        ([0.0, 3.0, 6.0], {"image_position_mm": (-90.0, -50.0, 3.0)}, "drift in-plane"),
        ([0.0], {}, "single slice"),
    ],
)
def test_broken_geometry_is_refused_with_the_reason(positions, changes, message):
    headers = [header(z, i) for i, z in enumerate(positions)]
    headers[len(headers) // 2] = replace(headers[len(headers) // 2], **changes)
    with pytest.raises(dicom_io.SeriesGeometryError, match=message):
        dicom_io.ct_series_geometry(headers)


def test_ct_round_trip_in_hounsfield_units(clean_tiny):
    """What the synthetic writer drew is what the reader returns, voxel for voxel."""
    config, _, result = clean_tiny
    row = result.cohort.iloc[0]
    truth = simulate_patient(config, 1)
    assert row.patient_id == truth.patient_id
    headers = [h for h in result.index.headers if h.series_uid == row.ct_series_uid]
    geometry = dicom_io.ct_series_geometry(headers)
    volume = dicom_io.read_ct_volume(geometry)
    np.testing.assert_array_equal(volume.hu, render_patient(config, truth).hu.astype(np.float32))
    assert volume.hu.min() >= -1024 and volume.hu.max() > 500  # rescale applied (air, bone)
    np.testing.assert_array_equal(dicom_io.read_ct_volume_sitk(geometry), volume.hu)


def test_truncated_file_is_named(clean_tiny, tmp_path):
    _, _, result = clean_tiny
    row = result.cohort.iloc[0]
    headers = [h for h in result.index.headers if h.series_uid == row.ct_series_uid]
    broken = tmp_path / "broken.dcm"
    shutil.copy(headers[3].path, broken)
    with open(broken, "r+b") as handle:
        handle.truncate(broken.stat().st_size - 500)
    headers[3] = replace(headers[3], path=str(broken))
    geometry = dicom_io.ct_series_geometry(headers)
    with pytest.raises(dicom_io.DicomReadError, match=r"broken\.dcm"):
        dicom_io.read_ct_volume(geometry)


@pytest.mark.filterwarnings("ignore:End of file reached:UserWarning")
def test_index_skips_junk_with_a_warning_naming_each_file(clean_tiny, tmp_path, caplog):
    _, _, result = clean_tiny
    tree = tmp_path / "tree"
    shutil.copytree(result.cohort.iloc[0].ct_folder, tree / "a" / "b")
    (tree / "empty.dcm").write_bytes(b"")
    (tree / "notes.txt").write_text("not dicom")
    (tree / "garbage.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\xff" * 40)
    with caplog.at_level(logging.WARNING):
        index = dicom_io.index_dicom_tree(tree, workers=1, show_progress=False)
    skipped = {s.path.split("/")[-1]: s.reason for s in index.skipped}
    assert set(skipped) == {"empty.dcm", "notes.txt", "garbage.dcm"}
    assert "empty file" in skipped["empty.dcm"] and "not a DICOM" in skipped["notes.txt"]
    for name in skipped:
        assert name in caplog.text
    assert len(index.headers) == 16


def test_a_link_out_of_the_indexed_folder_is_skipped_naming_the_link_only(
    clean_tiny, tmp_path, caplog
):
    """A data root holds against links: a link inside it to another patient's DICOM file
    outside it is not indexed (its patient is not read); a link within the root is."""
    _, _, result = clean_tiny
    first, second = result.cohort.iloc[0], result.cohort.iloc[1]
    root = tmp_path / "root"
    shutil.copytree(first.ct_folder, root / "ct")
    outside = sorted(Path(second.ct_folder).iterdir())[0]
    (root / "ct" / "escape.dcm").symlink_to(outside)
    (root / "ct" / "again.dcm").symlink_to(sorted((root / "ct").iterdir())[0])
    (root / "linked").symlink_to(Path(second.ct_folder))  # a folder link is never walked
    with caplog.at_level(logging.WARNING):
        index = dicom_io.index_dicom_tree(root, workers=1, show_progress=False)
    assert {h.patient_id for h in index.headers} == {first.patient_id}
    assert len(index.headers) == 17  # the 16 slices and the link within the root
    assert f"{root / 'ct' / 'escape.dcm'}: a link out of the folder" in caplog.text
    assert str(outside.parent) not in caplog.text


@pytest.mark.slow
def test_parallel_index_equals_serial(clean_tiny, monkeypatch):
    _, _, result = clean_tiny
    root = result.cohort.iloc[0].ct_folder.split("/DEMO-")[0]
    serial = dicom_io.index_dicom_tree(root, workers=1, show_progress=False)
    monkeypatch.setattr(dicom_io, "PARALLEL_MIN_FILES", 1)
    parallel = dicom_io.index_dicom_tree(root, workers=2, show_progress=False)
    assert parallel.headers == serial.headers and len(serial.headers) == 3 * 17


def test_rtstruct_roi_pattern_is_a_full_case_insensitive_match(clean_tiny):
    _, _, result = clean_tiny
    path = result.cohort.iloc[0].rtstruct_path
    rois, names = dicom_io.read_rtstruct_rois(path, r"gtv-1")
    assert [roi.name for roi in rois] == ["GTV-1"]
    assert names[:3] == ["PTV-1", "Lung R", "Lung L"]
    assert dicom_io.read_rtstruct_rois(path, "GTV")[0] == []  # no partial matches
    assert [roi.name for roi in dicom_io.read_rtstruct_rois(path, "Lung.*")[0]] == [
        "Lung R",
        "Lung L",
    ]


def test_slow_drift_in_slice_positions_is_refused():
    # each step is within 10 % of the mean, but the stack ends several slices off a regular grid
    positions = np.concatenate([np.arange(60) * 2.8, 59 * 2.8 + np.arange(1, 74) * 3.0])
    headers = [header(float(z), i) for i, z in enumerate(positions)]
    with pytest.raises(dicom_io.SeriesGeometryError, match="not evenly spaced"):
        dicom_io.ct_series_geometry(headers)


def corrupt_vr(source, target, tag_bytes: bytes) -> None:
    """Copy a DICOM file with the VR of one element replaced by an unknown one."""
    data = source.read_bytes()
    at = data.index(tag_bytes)
    target.write_bytes(data[: at + 4] + b"QQ" + data[at + 6 :])


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_damaged_header_elements_are_skipped_not_fatal(clean_tiny, tmp_path, caplog):
    _, _, result = clean_tiny
    slices = sorted(Path(result.cohort.iloc[0].ct_folder).glob("*.dcm"))
    corrupt_vr(slices[0], tmp_path / "bad_series_uid.dcm", b"\x20\x00\x0e\x00UI")
    ds = pydicom.dcmread(slices[1])
    del ds.PatientID
    ds.save_as(tmp_path / "no_patient_id.dcm")
    with caplog.at_level(logging.WARNING):
        index = dicom_io.index_dicom_tree(tmp_path, workers=1, show_progress=False)
    reasons = {Path(s.path).name: s.reason for s in index.skipped}
    assert set(reasons) == {"bad_series_uid.dcm", "no_patient_id.dcm"}
    assert "unreadable DICOM header" in reasons["bad_series_uid.dcm"]
    assert "without PatientID" in reasons["no_patient_id.dcm"]
    assert "bad_series_uid.dcm" in caplog.text and index.headers == []
