import hashlib
import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pydicom
import pytest

from nsclc_engine.cohort.clinical import add_labels, read_clinical_csv
from nsclc_engine.synth.generate import main, oracle_metrics, write_cohort
from nsclc_engine.synth.outcome import DEFECTS, SynthConfig, parse_defects, simulate_patient
from tests.helpers import LUNG1_CLINICAL, TINY, TINY_SET_ARGS, build_synthetic, require_shared

REQUIRED_CT_TAGS = (
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "PixelRepresentation",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "PixelData",
    "ImagePositionPatient",
    "PixelSpacing",
    "RescaleIntercept",
    "RescaleSlope",
    "ImageOrientationPatient",
    "SeriesInstanceUID",
    "SOPClassUID",
    "SOPInstanceUID",
    "Modality",
    "SliceThickness",
    "InstanceNumber",
    "FrameOfReferenceUID",
    "PatientID",
    "StudyInstanceUID",
)


def digest(root):
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_same_seed_writes_identical_files(tmp_path):
    config = replace(TINY, n_patients=2)
    write_cohort(config, tmp_path / "a", show_progress=False)
    write_cohort(config, tmp_path / "b", show_progress=False)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    write_cohort(replace(config, seed=8), tmp_path / "c", show_progress=False)
    assert digest(tmp_path / "c")["clinical.csv"] != digest(tmp_path / "a")["clinical.csv"]


def test_refuses_to_overwrite_a_cohort(tmp_path):
    write_cohort(replace(TINY, n_patients=1), tmp_path, show_progress=False)
    with pytest.raises(FileExistsError, match="not empty"):
        write_cohort(replace(TINY, n_patients=1), tmp_path, show_progress=False)


def test_outcomes_look_like_lung1():
    truths = [simulate_patient(SynthConfig(seed=1), number) for number in range(1, 1001)]
    event = np.array([t.deadstatus_event for t in truths])
    time = np.array([t.survival_time_days for t in truths])
    assert 0.85 <= event.mean() <= 0.92  # Lung1: 88.4 % deceased
    known = (event == 1) | (time > 730)
    died_2y = ((event == 1) & (time <= 730))[known].mean()
    assert 0.54 <= died_2y <= 0.66  # Lung1: 251 / 420
    assert 400 <= np.median(time) <= 650  # Lung1: 545.5 d


def synthetic_clinical_csv(result) -> str:
    return result.index.headers[0].path.split("/dicom/")[0] + "/clinical.csv"


def test_clinical_csv_has_the_real_v3_columns_and_vocabulary(clean_tiny):
    real = pd.read_csv(require_shared(LUNG1_CLINICAL), dtype=str, keep_default_na=False)
    raw = pd.read_csv(synthetic_clinical_csv(clean_tiny[2]), dtype=str, keep_default_na=False)
    assert list(raw.columns) == list(real.columns)
    for column in ("Overall.Stage", "Histology", "gender", "Clinical.M.Stage"):
        assert set(raw[column]) <= set(real[column]), column


def test_clinical_labels_agree_with_the_drawn_outcome(clean_tiny):
    config, _, result = clean_tiny
    table, _ = add_labels(read_clinical_csv(synthetic_clinical_csv(result)))
    for row in table.itertuples():
        truth = simulate_patient(config, int(row.patient_id[-3:]))
        assert row.deadstatus_event == truth.deadstatus_event
        assert row.survival_time_days == truth.survival_time_days
        dead_by_2y = truth.event_time_days <= min(730, truth.censoring_time_days)
        if truth.survival_time_days > 730 or truth.deadstatus_event:
            assert row.os_2y == int(dead_by_2y)


def test_oracle_is_null_where_a_metric_is_undefined():
    scores = {"eta": np.array([0.1, 0.2, 0.3])}
    everyone_alive = oracle_metrics(scores, np.array([800.0, 900.0, 1000.0]), np.zeros(3, int))
    assert everyone_alive["eta"] == {
        "c_index_harrell": None,
        "auc_os_2y": None,
        "auc_deadstatus_event": None,
    }


def test_metadata_states_the_model_and_the_best_achievable_metrics(clean_tiny):
    _, metadata, _ = clean_tiny
    assert metadata["generating_model"]["coefficients"]["z_log_volume"] == 0.6
    population = metadata["oracle"]["population"]
    assert 0.62 <= population["eta"]["c_index_harrell"] <= 0.72
    assert population["eta_image"]["auc_os_2y"] > population["eta_clinical"]["auc_os_2y"] + 0.1


def test_ct_and_rtstruct_carry_what_readers_need(clean_tiny):
    _, _, result = clean_tiny
    row = result.cohort.iloc[0]
    ct_headers = [h for h in result.index.headers if h.series_uid == row.ct_series_uid]
    ds = pydicom.dcmread(ct_headers[0].path)
    missing = [tag for tag in REQUIRED_CT_TAGS if tag not in ds]
    assert missing == []
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2" and ds.pixel_array.dtype == np.int16
    rtstruct = pydicom.dcmread(row.rtstruct_path)
    series = rtstruct.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0]
    referenced = series.RTReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == row.ct_series_uid
    assert {ref.ReferencedSOPInstanceUID for ref in referenced.ContourImageSequence} == {
        h.sop_uid for h in ct_headers
    }
    names = [roi.ROIName for roi in rtstruct.StructureSetROISequence]
    assert "GTV-1" in names and names[0] != "GTV-1"  # distractors first


def test_demo_resolution_gtv_volume_matches_the_drawn_volume(tmp_path):
    config, _, result = build_synthetic(
        tmp_path, n_patients=2, rows=128, pixel_spacing_mm=3.0, n_slices=48, slice_thickness_mm=4.0
    )
    for row in result.cohort.itertuples():
        truth = simulate_patient(config, int(row.patient_id[-3:]))
        assert row.gtv_volume_cm3 == pytest.approx(truth.volume_cm3, rel=0.15)
        assert 0 <= row.gtv_mean_hu <= 60  # soft tissue with a darker core


def test_auto_defects_spread_every_kind_once():
    defects = parse_defects(SynthConfig(n_patients=100))
    assert sorted(defects.values()) == sorted(DEFECTS) and len(set(defects)) == len(DEFECTS)
    assert parse_defects(SynthConfig(n_patients=20)) == {}
    assert parse_defects(SynthConfig(n_patients=5, defects="2:no_ct, 5:empty_gtv")) == {
        2: "no_ct",
        5: "empty_gtv",
    }


@pytest.mark.parametrize(
    ("defects", "message"), [("2:melted", "KIND one of"), ("9:no_ct", "outside 1..3")]
)
def test_cli_rejects_bad_defects(tmp_path, capsys, defects, message):
    assert main(["--out", str(tmp_path), "--patients", "3", "--defects", defects]) == 2
    assert message in capsys.readouterr().err


def test_cli_prints_the_oracle_and_the_next_command(tmp_path, capsys):
    args = [
        "--out",
        str(tmp_path),
        "--patients",
        "4",
        "--quiet",
        *TINY_SET_ARGS,
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "Best achievable" in printed and "python -m nsclc_engine.cohort" in printed
    saved = json.loads((tmp_path / "synth_config.json").read_text())
    assert saved["n_patients"] == 4 and saved["rows"] == 48
