"""A reviewer's "exclude from cohort" note reaches the next cohort build's cleaning report,
and withdrawing it takes the patient back."""

import json

import pandas as pd

from nsclc_engine.cohort.build import load_cleaning_report, load_cohort
from nsclc_engine.dashboard.dataset import review_exclusion_state
from nsclc_engine.review import store
from nsclc_engine.train.config import TrainConfig
from nsclc_engine.train.prepare import prepare_data, run_exclusions


def test_an_exclusion_reaches_the_cleaning_report_and_is_reversible(tiny_source, tmp_path):
    artifacts = tmp_path / "artifacts"
    config = TrainConfig(
        dicom=str(tiny_source / "dicom"),
        clinical=str(tiny_source / "clinical.csv"),
        label="os_2y",
        preset="smoke",
    )
    url = store.review_url(artifacts)
    first = prepare_data(config, artifacts, show_progress=False)
    patient = sorted(first.labels)[3]
    source = store.source_of({"dicom": config.dicom})
    note = store.add_note(url, "run-1", patient, source, "exclude", "contour on the heart", "ana")

    excluded = store.exclusions(url, source)
    reviewed = prepare_data(config, artifacts, show_progress=False, excluded=excluded)
    assert reviewed.cohort_dir != first.cohort_dir  # a new build; the first one is kept
    assert patient not in reviewed.labels and set(reviewed.labels) == set(first.labels) - {patient}
    report = load_cleaning_report(reviewed.cohort_dir)
    rows = [row for row in report["exclusions"] if row["reason"] == "review_excluded"]
    assert [row["patient_id"] for row in rows] == [patient]
    assert "by ana" in rows[0]["detail"] and "contour on the heart" in rows[0]["detail"]
    assert report["summary"]["excluded_by_reason"]["review_excluded"] == 1
    assert patient not in set(load_cohort(reviewed.cohort_dir).patient_id)
    frame = pd.DataFrame(report["exclusions"])
    included = set(load_cohort(reviewed.cohort_dir).patient_id)
    state = review_exclusion_state(store.exclusions(url, source), frame, included)
    assert state == {"applied": [patient], "pending": [], "lifted": []}

    store.withdraw_note(url, note, "ben")
    state = review_exclusion_state(store.exclusions(url, source), frame, included)
    assert state == {"applied": [], "pending": [], "lifted": [patient]}
    back = prepare_data(config, artifacts, False, excluded=store.exclusions(url, source))
    assert back.cohort_dir == first.cohort_dir and patient in back.labels
    actions = store.audit_log(url).action.tolist()
    assert actions == ["withdraw_exclusion", "exclude_patient"]
    assert json.loads(store.audit_log(url).detail.iloc[0]) == {"note": note}
    store.dispose(url)


def test_a_run_keeps_the_exclusions_it_started_with(tmp_path):
    """Flags added or withdrawn after a run prepared its data do not reach its resume, its
    other ranks or its later test scoring: they would change its cohort under its splits."""
    artifacts, run = tmp_path / "artifacts", tmp_path / "artifacts" / "runs" / "r1"
    run.mkdir(parents=True)
    url = store.review_url(artifacts)
    config = TrainConfig()  # the demo
    store.add_note(url, "r0", "DEMO-007", "demo", "exclude", "", "ana")
    assert list(run_exclusions(run, config, artifacts)) == ["DEMO-007"]
    store.add_note(url, "r0", "DEMO-008", "demo", "exclude", "", "ana")
    assert list(run_exclusions(run, config, artifacts)) == ["DEMO-007"]  # the snapshot
    older = tmp_path / "artifacts" / "runs" / "older"
    older.mkdir()
    (older / "splits.json").write_text("{}")  # split before reviews existed
    assert run_exclusions(older, config, artifacts) == {}
    store.dispose(url)


def test_pending_exclusions_are_only_patients_still_in_the_cohort():
    report = pd.DataFrame(
        [
            {"patient_id": "A", "reason": "review_excluded"},
            {"patient_id": "B", "reason": "no_imaging"},
        ]
    )
    state = review_exclusion_state({"A": "", "B": "", "C": ""}, report, {"C", "D"})
    assert state == {"applied": ["A"], "pending": ["C"], "lifted": []}
