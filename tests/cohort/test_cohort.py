import hashlib
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.uid import generate_uid

from nsclc_engine.cohort import build as cohort_module
from nsclc_engine.cohort.build import CohortConfig, Reason, main, run_cohort
from nsclc_engine.cohort.contours import fill_polygon
from nsclc_engine.synth.outcome import DEFECTS, simulate_patient
from nsclc_engine.synth.phantom import render_patient
from tests.helpers import TINY, TINY_SET_ARGS, build_synthetic

PATH_COLUMNS = ["ct_folder", "rtstruct_path"]


def cohort_level(report: pd.DataFrame) -> list[tuple[str, str]]:
    removed = report[report.scope == "cohort"]
    return sorted(zip(removed.patient_id, removed.reason, strict=True))


def test_clean_cohort_keeps_everyone(clean_tiny):
    _, _, result = clean_tiny
    assert result.cohort.patient_id.tolist() == ["DEMO-001", "DEMO-002", "DEMO-003"]
    assert cohort_level(result.report) == []
    assert (result.cohort.roi_names == "GTV-1").all()
    assert (result.cohort.ct_matched_by == "referenced_series").all()


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_each_defect_excludes_exactly_that_patient_for_its_reason(defect, tmp_path, clean_tiny):
    _, metadata, result = build_synthetic(tmp_path, defects=f"2:{defect}")
    assert metadata["expected_exclusions"] == {"DEMO-002": DEFECTS[defect].value}
    assert cohort_level(result.report) == [("DEMO-002", DEFECTS[defect].value)]
    detail = result.report.loc[result.report.patient_id == "DEMO-002", "detail"].item()
    assert detail  # a human-readable explanation
    # the other patients are untouched
    clean = clean_tiny[2].cohort
    expected = clean[clean.patient_id != "DEMO-002"].drop(columns=PATH_COLUMNS)
    pd.testing.assert_frame_equal(
        result.cohort.drop(columns=PATH_COLUMNS).reset_index(drop=True),
        expected.reset_index(drop=True),
    )


def test_gtv_mask_is_the_drawn_tumour(clean_tiny):
    config, _, result = clean_tiny
    for row in result.cohort.itertuples():
        truth = simulate_patient(config, int(row.patient_id[-3:]))
        rendered = render_patient(config, truth)
        voxels = sum(
            fill_polygon(rendered.grid.to_pixel(p[:, 0], p[:, 1]), (config.rows, config.rows)).sum()
            for p in rendered.rois["GTV-1"].values()
        )
        assert row.gtv_voxels == voxels > 0
        assert row.gtv_volume_cm3 == pytest.approx(voxels * 8 * 8 * 12 / 1000)
        slices = sorted(rendered.rois["GTV-1"])
        assert (row.gtv_bbox_z0, row.gtv_bbox_z1) == (slices[0], slices[-1] + 1)


def rebuild(root: Path, out: str = "again", clinical: Path | None = None, **config):
    """Build the cohort again from the synthetic source under ``root`` (serially, quietly)."""
    source = root / "source"
    return run_cohort(
        source / "dicom",
        clinical or source / "clinical.csv",
        root / out,
        CohortConfig(workers=1, **config),
        show_progress=False,
    )


def cli_args(root: Path, out: Path, *extra: str) -> list[str]:
    """Command-line arguments for the synthetic source under ``root``."""
    source = root / "source"
    return [
        "--dicom",
        str(source / "dicom"),
        "--clinical",
        str(source / "clinical.csv"),
        "--out",
        str(out),
        *extra,
    ]


def sha(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def test_input_files_are_only_read(tmp_path):
    source = tmp_path / "source"
    build_synthetic(tmp_path, defects="1:truncated_slice,2:duplicate_slice")
    before = {path: sha(path) for path in source.rglob("*") if path.is_file()}
    rebuild(tmp_path)
    after = {path: sha(path) for path in source.rglob("*") if path.is_file()}
    assert after == before


def copy_series_with_new_uids(folder: Path, target: Path, hu_shift: int) -> str:
    series_uid = generate_uid()
    target.mkdir(parents=True)
    for path in sorted(folder.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.PixelData = (ds.pixel_array + hu_shift).astype(np.int16).tobytes()
        ds.save_as(target / path.name)
    return series_uid


def test_the_ct_series_the_rtstruct_references_is_chosen_not_the_first(tmp_path):
    _, _, first = build_synthetic(tmp_path / "a", n_patients=1)
    row = first.cohort.iloc[0]
    # a second reconstruction of the same scan, same frame of reference, sorting first by path
    study = Path(row.ct_folder).parent
    copy_series_with_new_uids(Path(row.ct_folder), study / "0.000000-AAA-first", hu_shift=300)
    again = rebuild(tmp_path / "a").cohort.iloc[0]
    assert again.ct_series_uid == row.ct_series_uid
    assert again.ct_matched_by == "referenced_series"
    assert again.gtv_mean_hu == pytest.approx(row.gtv_mean_hu)


def test_frame_of_reference_is_the_fallback_when_the_referenced_series_is_absent(tmp_path):
    _, _, first = build_synthetic(tmp_path, n_patients=1)
    row = first.cohort.iloc[0]
    ds = pydicom.dcmread(row.rtstruct_path)
    study = ds.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0]
    study.RTReferencedSeriesSequence[0].SeriesInstanceUID = generate_uid()
    edited = tmp_path / "edited"
    edited.mkdir()
    ds.save_as(edited / "rtstruct.dcm")
    Path(row.rtstruct_path).unlink()  # a test-owned copy: replace it by the edited one
    (edited / "rtstruct.dcm").rename(row.rtstruct_path)
    result = rebuild(tmp_path)
    assert result.cohort.iloc[0].ct_matched_by == "frame_of_reference"
    assert result.cohort.iloc[0].gtv_voxels == row.gtv_voxels


def seed_with_gtv2() -> int:
    return next(
        seed for seed in range(200) if simulate_patient(replace(TINY, seed=seed), 1).has_gtv2
    )


def test_union_of_all_gtvs(tmp_path):
    _, _, single = build_synthetic(tmp_path / "s", n_patients=1, seed=seed_with_gtv2())
    root = tmp_path / "s"
    first_only = rebuild(root, "first", roi_pattern=r"GTV-\d+").cohort.iloc[0]
    union = rebuild(root, "union", roi_pattern=r"GTV-\d+", union_matching_rois=True).cohort.iloc[0]
    gtv1 = single.cohort.iloc[0]
    assert first_only.roi_names == "GTV-1" and first_only.gtv_voxels == gtv1.gtv_voxels
    assert union.roi_names == "GTV-1+GTV-2"
    assert union.gtv_voxels > gtv1.gtv_voxels


def test_censored_before_two_years_stays_in_with_an_empty_os_2y(tmp_path):
    build_synthetic(tmp_path, n_patients=2)
    clinical = pd.read_csv(tmp_path / "source" / "clinical.csv", dtype=str, keep_default_na=False)
    clinical.loc[0, ["Survival.time", "deadstatus.event"]] = ["300", "0"]
    edited = tmp_path / "edited.csv"
    clinical.to_csv(edited, index=False)
    result = rebuild(tmp_path, clinical=edited)
    assert result.cohort.patient_id.tolist() == ["DEMO-001", "DEMO-002"]
    assert pd.isna(result.cohort.os_2y.iloc[0])
    label_rows = result.report[result.report.scope == "os_2y"]
    assert label_rows.patient_id.tolist() == ["DEMO-001"]
    assert label_rows.reason.item() == Reason.LABEL_UNDEFINED.value
    assert "censored at 300 d" in label_rows.detail.item()


def test_cli_writes_every_output_and_a_summary(tmp_path, clean_tiny, capsys):
    build_synthetic(tmp_path / "s")
    out = tmp_path / "out"
    code = main(cli_args(tmp_path / "s", out, "--quiet", "--set", "min_gtv_voxels=2"))
    assert code == 0
    assert "Included 3 patients; excluded 0." in capsys.readouterr().out
    for name in (
        "cohort.csv",
        "cleaning_report.csv",
        "cleaning_report.json",
        "dicom_index.csv",
        "skipped_files.csv",
        "cohort_config.json",
    ):
        assert (out / name).is_file(), name
    assert json.loads((out / "cohort_config.json").read_text())["min_gtv_voxels"] == 2
    loaded = cohort_module.load_cohort(out)
    assert loaded.patient_id.tolist() == clean_tiny[2].cohort.patient_id.tolist()
    assert len(pd.read_csv(out / "dicom_index.csv")) == 3 * 17


def test_a_rebuild_that_dies_midway_leaves_the_previous_build_whole(tmp_path, monkeypatch):
    build_synthetic(tmp_path / "s")
    out = tmp_path / "out"
    assert main(cli_args(tmp_path / "s", out, "--quiet")) == 0
    before = {path.name: path.read_bytes() for path in out.iterdir()}

    def dies_after_the_report(result, config, folder):
        (folder).mkdir(parents=True)
        (folder / "cleaning_report.csv").write_text("")  # the new, empty report of the issue
        raise KeyboardInterrupt  # killed mid-build

    monkeypatch.setattr(cohort_module, "_write_files", dies_after_the_report)
    with pytest.raises(KeyboardInterrupt):
        main(cli_args(tmp_path / "s", out, "--quiet", "--set", "min_gtv_voxels=2"))
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "s"]  # no half build beside it
    monkeypatch.undo()
    dead = tmp_path / ".out.building-999999999-0a1b2c3d"  # a build whose process was killed
    dead.mkdir()
    assert main(cli_args(tmp_path / "s", out, "--quiet", "--set", "min_gtv_voxels=2")) == 0
    assert not dead.exists()
    assert json.loads((out / "cohort_config.json").read_text())["min_gtv_voxels"] == 2


def test_cli_with_no_usable_patient_fails_clearly(tmp_path, capsys):
    build_synthetic(tmp_path, n_patients=2, defects="1:no_rtstruct,2:no_gtv")
    code = main(cli_args(tmp_path, tmp_path / "out", "--quiet"))
    assert code == 1
    assert "no usable patient" in capsys.readouterr().err
    report = pd.read_csv(tmp_path / "out" / "cleaning_report.csv")
    assert sorted(report.reason) == ["no_matching_roi", "no_rtstruct"]


def test_cli_reports_missing_clinical_columns(tmp_path, capsys):
    (tmp_path / "c.csv").write_text("PatientID\n")
    (tmp_path / "dicom").mkdir()
    args = ["--dicom", str(tmp_path / "dicom"), "--clinical", str(tmp_path / "c.csv")]
    assert main([*args, "--out", str(tmp_path / "out")]) == 2
    assert "missing columns" in capsys.readouterr().err


def test_cli_reports_a_missing_dicom_folder(tmp_path, capsys):
    build_synthetic(tmp_path, n_patients=1)
    clinical = str(tmp_path / "source" / "clinical.csv")
    assert main(["--dicom", str(tmp_path / "nope"), "--clinical", clinical, "--out", "x"]) == 2
    assert "nope: does not exist" in capsys.readouterr().err


def test_invalid_roi_pattern_is_a_setup_error(tmp_path, capsys):
    with pytest.raises(ValueError, match="not a valid regex"):
        CohortConfig(roi_pattern="GTV-(1")
    build_synthetic(tmp_path, n_patients=1)
    code = main(cli_args(tmp_path, tmp_path / "out", "--roi-pattern", "GTV-(1"))
    assert code == 2 and "not a valid regex" in capsys.readouterr().err


def end_slices(folder: Path) -> list[Path]:
    """CT files ordered by z (instance numbers run head to feet in the synthetic writer)."""
    return sorted(
        folder.glob("*.dcm"), key=lambda p: float(pydicom.dcmread(p).ImagePositionPatient[2])
    )


@pytest.mark.parametrize("damage", ["empty", "deleted"])
def test_a_bad_slice_at_either_end_of_the_series_is_not_silently_dropped(tmp_path, damage):
    _, _, first = build_synthetic(tmp_path, n_patients=1)
    lowest = end_slices(Path(first.cohort.iloc[0].ct_folder))[0]
    if damage == "empty":
        lowest.write_bytes(b"")
    else:
        lowest.unlink()
    result = rebuild(tmp_path)
    assert result.cohort.empty
    reason, detail = result.report[["reason", "detail"]].iloc[0]
    if damage == "empty":
        assert reason == Reason.UNREADABLE_FILE.value and lowest.name in detail
    else:
        assert reason == Reason.BAD_GEOMETRY.value and "lists are missing" in detail


def test_contours_beyond_the_ct_exclude_the_patient(tmp_path):
    _, _, first = build_synthetic(tmp_path, n_patients=1)
    path = first.cohort.iloc[0].rtstruct_path
    ds = pydicom.dcmread(path)
    gtv = next(roi for roi in ds.ROIContourSequence if roi.ReferencedROINumber == 4)
    points = np.asarray(gtv.ContourSequence[0].ContourData, dtype=float).reshape(-1, 3)
    points[:, 2] += 500.0  # far above the scan
    gtv.ContourSequence[0].ContourData = [f"{v:.3f}" for v in points.ravel()]
    ds.save_as(path)
    result = rebuild(tmp_path)
    assert cohort_level(result.report) == [("DEMO-001", Reason.BAD_GEOMETRY.value)]
    assert "beyond the ends" in result.report.detail.item()


def test_of_two_rtstructs_the_one_with_a_contoured_gtv_is_used(tmp_path):
    _, _, first = build_synthetic(tmp_path, n_patients=1)
    row = first.cohort.iloc[0]
    ds = pydicom.dcmread(row.rtstruct_path)
    gtv = next(roi for roi in ds.ROIContourSequence if roi.ReferencedROINumber == 4)
    del gtv.ContourSequence  # an empty GTV-1 in a second structure set that sorts first
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    target = Path(row.rtstruct_path).parent.parent / "0.000000-AAA-empty-rtstruct"
    target.mkdir()
    ds.save_as(target / "1-1.dcm")
    again = rebuild(tmp_path).cohort.iloc[0]
    assert again.rtstruct_sop_uid == row.rtstruct_sop_uid and again.n_rtstructs == 2
    assert again.gtv_voxels == row.gtv_voxels


def test_a_flipped_orientation_gives_the_same_gtv_in_patient_space(tmp_path):
    """Rows right-to-left and columns bottom-to-top: the same anatomy, stored mirrored."""
    _, _, first = build_synthetic(tmp_path, n_patients=1)
    row = first.cohort.iloc[0]
    for path in Path(row.ct_folder).glob("*.dcm"):
        ds = pydicom.dcmread(path)
        x0, y0, z = (float(v) for v in ds.ImagePositionPatient)
        spacing = float(ds.PixelSpacing[0])
        ds.ImageOrientationPatient = [-1, 0, 0, 0, -1, 0]
        ds.ImagePositionPatient = [x0 + (ds.Columns - 1) * spacing, y0 + (ds.Rows - 1) * spacing, z]
        ds.PixelData = np.ascontiguousarray(ds.pixel_array[::-1, ::-1]).tobytes()
        ds.save_as(path)
    again = rebuild(tmp_path).cohort.iloc[0]
    assert again.gtv_voxels == row.gtv_voxels
    assert again.gtv_mean_hu == pytest.approx(row.gtv_mean_hu)
    for axis in "xyz":
        column = f"gtv_centroid_{axis}_mm"
        assert again[column] == pytest.approx(row[column], abs=1e-6)


@pytest.mark.slow
def test_synth_then_cohort_cli_excludes_every_broken_patient_for_its_reason(tmp_path):
    """The 'done when' of the ingestion issue, through the two command lines."""
    out = tmp_path / "demo"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "nsclc_engine.synth",
            "--out",
            str(out),
            "--patients",
            "48",
            "--seed",
            "3",
            "--quiet",
            *TINY_SET_ARGS,
        ],
        check=True,
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "nsclc_engine.cohort",
            "--dicom",
            str(out / "dicom"),
            "--clinical",
            str(out / "clinical.csv"),
            "--out",
            str(out / "cohort"),
            "--quiet",
        ],
        check=True,
    )
    metadata = json.loads((out / "synth_metadata.json").read_text())
    assert len(metadata["expected_exclusions"]) == len(DEFECTS)
    report = pd.read_csv(out / "cohort" / "cleaning_report.csv")
    assert dict(cohort_level(report)) == metadata["expected_exclusions"]
    assert len(pd.read_csv(out / "cohort" / "cohort.csv")) == 48 - len(DEFECTS)


@pytest.mark.slow
def test_parallel_cohort_equals_serial(clean_tiny, tmp_path, monkeypatch):
    _, _, serial = clean_tiny
    monkeypatch.setattr(cohort_module, "PARALLEL_MIN_PATIENTS", 1)
    source = Path(serial.cohort.ct_folder.iloc[0].split("/dicom/")[0])
    parallel = run_cohort(
        source / "dicom",
        source / "clinical.csv",
        tmp_path,
        CohortConfig(workers=2),
        show_progress=False,
    )
    pd.testing.assert_frame_equal(parallel.cohort, serial.cohort)
