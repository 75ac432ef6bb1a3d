"""Verdicts and notes out of the tool (``python -m nsclc_engine.review``): the ``note`` command
records with the review page's checks, ``export`` writes one DICOM SR per reviewed patient
(read back by pydicom and highdicom, referencing the patient's CT) or one CSV table."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import pandas as pd
import pydicom
import pytest

from nsclc_engine import runs
from nsclc_engine.atomic import write_json
from nsclc_engine.cohort.build import load_cohort
from nsclc_engine.review import store
from nsclc_engine.review.__main__ import main
from nsclc_engine.review.export import sr_file_names
from tests.ui.conftest import copy_runs

RUN = "fixture"
FORMULA = '=HYPERLINK("http://example.org")'


@pytest.fixture()
def artifacts(dashboard_artifacts, tmp_path, monkeypatch) -> Path:
    """A copy of the finished runs for this test alone, as ``$NSCLC_ARTIFACTS_DIR`` (the
    review database: ``review.db`` in the copy)."""
    copy = copy_runs(dashboard_artifacts, tmp_path)
    monkeypatch.setenv("NSCLC_ARTIFACTS_DIR", str(copy))
    yield copy
    store.dispose(store.review_url(copy))


def predictions_of(artifacts: Path, run_id: str = RUN) -> pd.DataFrame:
    path = runs.run_dir(run_id, artifacts) / "predictions.csv"
    return pd.read_csv(path, dtype={"patient_id": str})


def patients_of(artifacts: Path, run_id: str = RUN) -> list[str]:
    return list(predictions_of(artifacts, run_id).patient_id.drop_duplicates())


def note(*args: str) -> int:
    return main(["note", *args])


def record_reviews(artifacts: Path) -> tuple[str, str]:
    """Two reviewed patients of the run: a verdict and a note on the first, a verdict
    without a note on the second (through the ``note`` command); returns their ids."""
    first, second = patients_of(artifacts)[:2]
    case = ["--run", RUN, "--patient"]
    text = "Tumour ≥ 3 cm, pleura touché"
    assert (
        note(*case, first, "--verdict", "disagree", "--text", text, "--author", "Ada Lovelace") == 0
    )
    assert (
        note(*case, first, "--flag", "label_doubt", "--text", FORMULA, "--author", "bo@x.org") == 0
    )
    assert note(*case, second, "--verdict", "agree", "--text", "", "--author", "Cy") == 0
    return first, second


def ct_headers(artifacts: Path, patient_id: str) -> list[pydicom.Dataset]:
    """The patient's CT headers as the run's cohort finds them (the oracle of the SR's
    references)."""
    cohort = load_cohort(runs.resolved_cohort(runs.read_config(runs.run_dir(RUN, artifacts))))
    ct = cohort.set_index("patient_id").loc[patient_id]
    files = sorted(Path(ct.ct_folder).iterdir())
    headers = [pydicom.dcmread(path, stop_before_pixels=True) for path in files]
    return [header for header in headers if header.SeriesInstanceUID == ct.ct_series_uid]


def content_items(items) -> list[pydicom.Dataset]:
    """Every content item under ``items``, depth first."""
    found = []
    for item in items:
        found.append(item)
        found += content_items(item.get("ContentSequence", []))
    return found


def review_entries_of(report: pydicom.Dataset) -> list[tuple[str, str, str, str]]:
    """(kind, code, text, author) of each verdict and note container of an SR."""
    entries = []
    for item in report.ContentSequence:
        meaning = item.ConceptNameCodeSequence[0].CodeMeaning
        if meaning not in ("Reviewer's verdict", "Review note"):
            continue
        by_name = {i.ConceptNameCodeSequence[0].CodeMeaning: i for i in item.ContentSequence}
        comment = by_name.get("Comment")
        entries.append(
            (
                "verdict" if meaning == "Reviewer's verdict" else "note",
                by_name["Verdict" if meaning == "Reviewer's verdict" else "Note flag"]
                .ConceptCodeSequence[0]
                .CodeValue,
                comment.TextValue if comment is not None else "",
                by_name["Person Observer's Login Name"].TextValue,
            )
        )
    return entries


def test_note_records_a_verdict_and_a_note(artifacts, capsys):
    patient = patients_of(artifacts)[0]
    case = ["--run", RUN, "--patient", patient, "--author", "Ada Lovelace"]
    assert note(*case, "--verdict", "agree", "--text", "margin looks right") == 0
    assert note(*case, "--flag", "teaching_case", "--text", "show the class") == 0
    assert "verdict 1 recorded" in capsys.readouterr().out

    url = store.review_url(artifacts)
    source = store.source_of(runs.read_config(runs.run_dir(RUN, artifacts)))
    verdicts, notes = store.verdicts(url, run_id=RUN), store.notes(url, run_id=RUN)
    assert verdicts[["patient_id", "verdict", "text", "author", "source"]].to_numpy().tolist() == [
        [patient, "agree", "margin looks right", "Ada Lovelace", source]
    ]
    # a verdict alone records no note: the only note is the flagged one
    assert notes[["patient_id", "flag", "text", "author"]].to_numpy().tolist() == [
        [patient, "teaching_case", "show the class", "Ada Lovelace"]
    ]


@pytest.mark.parametrize(
    "change, named",
    [
        ({"--patient": "NOBODY-1"}, "NOBODY-1"),
        ({"--run": "no-such-run"}, "no-such-run"),
        ({"--verdict": "maybe"}, "maybe"),
        ({"--flag": "nope"}, "nope"),  # with a valid verdict: neither is recorded
        ({"--verdict": None}, "--flag"),
        ({"--author": " "}, "--author"),
    ],
    ids=["unknown patient", "unknown run", "bad verdict", "bad flag", "neither", "no author"],
)
def test_note_refuses_in_one_line_and_writes_nothing(artifacts, capsys, change, named):
    options = {"--run": RUN, "--patient": patients_of(artifacts)[0], "--text": "a note"}
    options |= {"--author": "Ada", "--verdict": "agree"} | change
    args = [
        part for option, value in options.items() if value is not None for part in (option, value)
    ]
    assert note(*args) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1, captured.err
    assert named in captured.err
    assert not captured.out
    assert not (artifacts / "review.db").exists()


def test_export_dicom_sr_one_file_per_reviewed_patient(artifacts, tmp_path, capsys):
    first, second = record_reviews(artifacts)
    out = tmp_path / "sr"
    assert main(["export", "--run", RUN, "--format", "dicom-sr", "--out", str(out)]) == 0
    assert "wrote 2 DICOM SR files" in capsys.readouterr().out
    files = sorted(out.glob("*.dcm"))
    assert [path.name for path in files] == [
        f"review_{RUN}_{first}.dcm",
        f"review_{RUN}_{second}.dcm",
    ]

    predictions = predictions_of(artifacts)
    for path, patient in zip(files, (first, second), strict=True):
        report = pydicom.dcmread(path)
        assert isinstance(hd.sr.srread(path), hd.sr.ComprehensiveSR)
        assert report.PatientID == patient
        assert report.Modality == "SR" and report.Manufacturer == "nsclc_engine"

        ct = ct_headers(artifacts, patient)
        evidence = report.CurrentRequestedProcedureEvidenceSequence
        assert [item.StudyInstanceUID for item in evidence] == [ct[0].StudyInstanceUID]
        series = evidence[0].ReferencedSeriesSequence
        assert [item.SeriesInstanceUID for item in series] == [ct[0].SeriesInstanceUID]
        referenced = {item.ReferencedSOPInstanceUID for item in series[0].ReferencedSOPSequence}
        assert referenced == {header.SOPInstanceUID for header in ct}
        assert report.StudyInstanceUID == ct[0].StudyInstanceUID

        items = content_items(report.ContentSequence)
        texts = {item.TextValue for item in items if item.ValueType == "TEXT"}
        assert RUN in texts
        numbers = {
            item.ConceptNameCodeSequence[0].CodeValue: float(
                item.MeasuredValueSequence[0].NumericValue
            )
            for item in items
            if item.ValueType == "NUM"
        }
        y_prob = predictions.set_index("patient_id").y_prob[patient]
        assert numbers == {"fold": 0, "y_prob": pytest.approx(y_prob, abs=1e-12)}
        assert all(item.DateTime for item in items if item.ValueType == "DATETIME")

    first_entries = review_entries_of(pydicom.dcmread(files[0]))
    assert first_entries == [
        ("verdict", "disagree", "Tumour ≥ 3 cm, pleura touché", "Ada Lovelace"),
        ("note", "label_doubt", FORMULA, "bo@x.org"),
    ]
    names = {
        str(item.PersonName)
        for item in content_items(pydicom.dcmread(files[0]).ContentSequence)
        if item.ValueType == "PNAME"
    }
    assert names == {"Ada Lovelace^", "bo@x.org^"}
    assert review_entries_of(pydicom.dcmread(files[1])) == [("verdict", "agree", "", "Cy")]


def test_export_csv_has_the_same_rows(artifacts, tmp_path):
    first, second = record_reviews(artifacts)
    out = tmp_path / "out"
    for kind in ("csv", "dicom-sr"):
        assert main(["export", "--run", RUN, "--format", kind, "--out", str(out)]) == 0
    table = pd.read_csv(out / f"review_{RUN}.csv", dtype=str, keep_default_na=False)

    from_sr = {
        pydicom.dcmread(path).PatientID: review_entries_of(pydicom.dcmread(path))
        for path in out.glob("*.dcm")
    }
    from_csv = {
        patient: [
            (row.kind, row.code, row.text.removeprefix("'"), row.author)
            for row in rows.itertuples()
        ]
        for patient, rows in table.groupby("patient_id")
    }
    assert from_csv == from_sr
    assert set(from_csv) == {first, second}
    # a note a spreadsheet would run as a formula is quoted
    assert table.text[table.code == "label_doubt"].tolist() == [f"'{FORMULA}"]

    cohort = load_cohort(runs.resolved_cohort(runs.read_config(runs.run_dir(RUN, artifacts))))
    uids = cohort.set_index("patient_id")[["ct_study_uid", "ct_series_uid"]]
    for row in table.itertuples():
        assert (row.ct_study_uid, row.ct_series_uid) == tuple(uids.loc[row.patient_id])
    predictions = predictions_of(artifacts)
    expected = predictions.set_index("patient_id").y_prob
    assert table.y_prob.astype(float).tolist() == pytest.approx(expected[table.patient_id].tolist())


def test_export_csv_of_a_survival_run_has_its_outputs(artifacts, tmp_path):
    patient = patients_of(artifacts, "fixture-survival")[0]
    case = ["--run", "fixture-survival", "--patient", patient, "--text", "contour misses apex"]
    assert note(*case, "--author", "Ada", "--verdict", "contour_problem") == 0
    assert (
        main(["export", "--run", "fixture-survival", "--format", "csv", "--out", str(tmp_path)])
        == 0
    )
    table = pd.read_csv(tmp_path / "review_fixture-survival.csv", dtype={"patient_id": str})
    assert table[["patient_id", "kind", "code"]].to_numpy().tolist() == [
        [patient, "verdict", "contour_problem"]
    ]
    assert {"risk", "survival_365d", "survival_730d"} <= set(table.columns)
    assert "y_prob" not in table.columns


def test_export_skips_a_patient_whose_ct_is_gone(artifacts, tmp_path, capsys, caplog):
    first, second = record_reviews(artifacts)
    folder = runs.run_dir(RUN, artifacts)
    config = runs.read_config(folder)
    cohort = load_cohort(runs.resolved_cohort(config))
    cohort.loc[cohort.patient_id == second, "ct_folder"] = str(tmp_path / "gone")
    moved = tmp_path / "cohort"
    moved.mkdir()
    cohort.to_csv(moved / "cohort.csv", index=False)
    config["resolved"]["cohort_dir"] = str(moved)
    write_json(folder / "config.json", config)

    out = tmp_path / "sr"
    assert main(["export", "--run", RUN, "--format", "dicom-sr", "--out", str(out)]) == 0
    assert [path.name for path in out.glob("*.dcm")] == [f"review_{RUN}_{first}.dcm"]
    said = capsys.readouterr().out
    assert "wrote 1 DICOM SR files" in said and "skipped 1 patients" in said
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert any(second in message for message in warnings), warnings


def test_sr_file_names_are_safe_and_distinct():
    ids = ["LUNG1-001", "a/b", "a_b", "../x", "A_B", "é 1", ""]
    names = sr_file_names(ids, RUN)
    assert names["LUNG1-001"] == f"review_{RUN}_LUNG1-001.dcm"
    assert len({name.lower() for name in names.values()}) == len(ids)
    for name in names.values():
        assert name.startswith(f"review_{RUN}_") and name.endswith(".dcm")
        assert Path(name).name == name and name.isascii() and " " not in name
