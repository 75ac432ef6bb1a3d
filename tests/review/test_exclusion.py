"""A reviewer's "exclude from cohort" note reaches the next cohort build's cleaning report,
and withdrawing it takes the patient back."""

import json

import pandas as pd

from nsclc_engine.cohort.build import load_cleaning_report, load_cohort
from nsclc_engine.dashboard.dataset import review_exclusion_state
from nsclc_engine.review import store
from nsclc_engine.train.config import TrainConfig
from nsclc_engine.train.prepare import prepare_data


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

    reviewed = prepare_data(config, artifacts, show_progress=False)
    assert reviewed.cohort_dir != first.cohort_dir  # a new build; the first one is kept
    assert patient not in reviewed.labels and set(reviewed.labels) == set(first.labels) - {patient}
    report = load_cleaning_report(reviewed.cohort_dir)
    rows = [row for row in report["exclusions"] if row["reason"] == "review_excluded"]
    assert [row["patient_id"] for row in rows] == [patient]
    assert "by ana" in rows[0]["detail"] and "contour on the heart" in rows[0]["detail"]
    assert report["summary"]["excluded_by_reason"]["review_excluded"] == 1
    assert patient not in set(load_cohort(reviewed.cohort_dir).patient_id)
    frame = pd.DataFrame(report["exclusions"])
    assert review_exclusion_state(store.exclusions(url, source), frame)["applied"] == [patient]

    store.withdraw_note(url, note, "ben")
    assert review_exclusion_state({}, frame)["lifted"] == [patient]
    back = prepare_data(config, artifacts, show_progress=False)
    assert back.cohort_dir == first.cohort_dir and patient in back.labels
    actions = store.audit_log(url).action.tolist()
    assert actions == ["withdraw_exclusion", "exclude_patient"]
    assert json.loads(store.audit_log(url).detail.iloc[0]) == {"note": note}
    store.dispose(url)
