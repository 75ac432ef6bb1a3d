"""Bad input to every command-line interface: one line on stderr naming the input, exit code
2, before any run or cohort folder is made. No traceback."""

import json

import pytest

from nsclc_engine.cohort.build import main as cohort_main
from nsclc_engine.evaluate.__main__ import main as evaluate_main
from nsclc_engine.preprocess.volumes import main as preprocess_main
from nsclc_engine.synth.generate import main as synth_main
from nsclc_engine.train.__main__ import main as train_main
from nsclc_engine.train.jobs import main as jobs_main


@pytest.fixture()
def place(tmp_path, monkeypatch):
    """A folder of bad inputs, the working directory of the command."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NSCLC_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "notes.txt").write_text("not a DICOM file\n")
    (tmp_path / "bad.json").write_text("{bad")
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "latin1.csv").write_bytes(b"PatientID,caf\xe9\nLUNG1-001,1\n")
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "clinical.csv").write_text("PatientID\nLUNG1-001\n")
    (tmp_path / "weights.pt").write_text("not a checkpoint")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "thesis.docx").write_text("a user's own file")
    existing = tmp_path / "artifacts" / "runs" / "taken"
    existing.mkdir(parents=True)
    (existing / "status.json").write_text(json.dumps({"state": "finished"}))
    return tmp_path


TRAIN = [
    (["--config", "missing.json"], "missing.json: No such file or directory"),
    (["--config", "bad.json"], "bad.json: not valid JSON"),
    (["--config", "list.json"], "list.json: expected a JSON object"),
    (["--set", "lr=-1"], "lr=-1.0: must be a finite number > 0"),
    (["--set", "lr=nan"], "lr=nan: must be a finite number > 0"),
    (["--set", "folds=1"], "folds=1: must be 0 (one split) or 2 or more"),
    (["--set", "lr_factor=2"], "lr_factor=2.0: must be between 0 and 1"),
    (["--set", "epochs=0"], "epochs=0: must be 1 or more"),
    (["--set", "nokey=1"], "unknown TrainConfig key(s) ['nokey']"),
    (["--set", "lr=fast"], "lr='fast': expected a float"),
    (["--run-id", "taken"], "run 'taken' already exists"),
    (["--run-id", "../x"], "run id '../x': use 1-64 letters"),
    (["--resume", "unknown"], "no run 'unknown' in"),
    (["--dicom", "missing", "--clinical", "clinical.csv"], "dicom 'missing': no such folder"),
    (["--dicom", "empty", "--clinical", "empty"], "clinical 'empty': no such file"),
    (["--dicom", "empty", "--clinical", "clinical.csv"], "--dicom empty: no DICOM files found"),
    (["--dicom", "text", "--clinical", "clinical.csv"], "--dicom text: no DICOM files found"),
    (["--set", "pretrained=missing.pt"], "pretrained 'missing.pt': no such file"),
    (["--set", "pretrained=weights.pt"], "weights.pt: not a PyTorch weights file"),
]
COHORT = [
    (["--dicom", "text", "--clinical", "empty", "--out", "c"], "empty: is a folder"),
    (["--dicom", "text", "--clinical", "latin1.csv", "--out", "c"], "latin1.csv: not UTF-8"),
    (["--dicom", "text", "--clinical", "empty.csv", "--out", "c"], "empty.csv: the file is empty"),
    (["--dicom", "text", "--clinical", "missing.csv", "--out", "c"], "missing.csv: does not"),
    (["--dicom", "missing", "--clinical", "clinical.csv", "--out", "c"], "--dicom missing: does"),
    (["--dicom", "text", "--clinical", "clinical.csv", "--out", "out"], "holds other files"),
    (["--dicom", "text", "--clinical", "x", "--out", "c", "--workers", "-1"], "workers=-1"),
    (["--dicom", "text", "--clinical", "clinical.csv", "--out", "c"], "not a Lung1 v3 clinical"),
]
IMPORT = ["--import", "empty.csv", "--name", "new", "--patient-column", "id", "--score-column", "p"]
READABLE = ["--import", "clinical.csv", "--name", "new", "--patient-column", "PatientID"]
READABLE += ["--score-column", "PatientID"]
OTHERS = [
    (evaluate_main, ["unknown"], "no run 'unknown' in"),
    (evaluate_main, ["../x"], "run id '../x'"),
    (evaluate_main, ["taken", "--config", "missing.json"], "missing.json: No such file"),
    (evaluate_main, ["taken", "--set", "threshold_target=2"], "threshold_target=2.0: must be"),
    (
        evaluate_main,
        ["--import", "empty.csv"],
        "--import needs --name, --clinical, --patient-column",
    ),
    (
        evaluate_main,
        [*IMPORT, "--clinical", "clinical.csv", "--threshold", "2"],
        "threshold=2.0: must be between 0 and 1",
    ),
    (evaluate_main, [*IMPORT, "--clinical", "clinical.csv"], "empty.csv: the file is empty"),
    (
        evaluate_main,
        ["--import", "clinical.csv", *IMPORT[2:], "--clinical", "x"],
        "clinical.csv: no column 'id'",
    ),
    (evaluate_main, [*READABLE, "--clinical", "empty"], "empty: is a folder"),
    (evaluate_main, [*IMPORT, "--clinical", "x.csv", "--label", "alive"], "label 'alive': choose"),
    (jobs_main, ["run", "../x"], "run id '../x'"),
    (jobs_main, ["run", "unknown"], "no run 'unknown' in"),
    (preprocess_main, ["--cohort", "missing"], "missing/cohort.csv: No such file"),
    (synth_main, ["--out", "s", "--patients", "0"], "need at least 1 patient"),
]
CASES = [(train_main, *case) for case in TRAIN] + [(cohort_main, *case) for case in COHORT]
CASES += OTHERS


@pytest.mark.parametrize(
    ("main", "argv", "message"), CASES, ids=[" ".join(argv) for _, argv, _ in CASES]
)
def test_bad_input_gets_one_line_naming_it_and_exit_code_2(place, capsys, main, argv, message):
    runs_before = sorted((place / "artifacts" / "runs").iterdir())
    assert main(argv) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], errors
    assert "Traceback" not in errors[0]
    assert sorted((place / "artifacts" / "runs").iterdir()) == runs_before  # no run was made
    assert not (place / "c").exists()  # nor a cohort
