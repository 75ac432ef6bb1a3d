"""A study fixes its split once: the reviewers' exclusions in force at its creation, the
patients and the seed are recorded in the study, every trial trains, validates and is tested
on exactly that split whatever is flagged meanwhile, and the study's own settings (its cohort,
outcome, split and controls) cannot be searched."""

import json

import optuna
import pytest

from nsclc_engine.cohort.splits import load_splits
from nsclc_engine.review import store
from nsclc_engine.tune.space import load_space
from nsclc_engine.tune.study import TuneConfig, open_study, run_worker
from tests.tune.test_tune import tiny_study

# each changes what every trial is scored on: the cohort, the outcome and objective (AUC or
# C-index), the split (and the k-fold guard), the negative control, the study's tags
STUDY_SETTINGS = {
    "folds": [0, 3],
    "task": ["classification", "survival"],
    "demo_patients": [60, 120],
    "shuffle_labels": [False, True],
    "label": ["os_2y", "deadstatus_event"],
    "seed": [0, 1],
    "dicom": ["/a", "/b"],
    "clinical": ["/a.csv", "/b.csv"],
    "preset": ["smoke", "demo"],
    "monitor": ["metric", "loss"],
    "hold_out_test": [True, False],
    "bootstrap_resamples": [200, 2000],
    "study": ["a", "b"],
    "trial": [1, 2],
}


@pytest.mark.parametrize("name", sorted(STUDY_SETTINGS))
def test_a_study_setting_in_a_space_is_refused_by_name(name, tmp_path):
    path = tmp_path / "space.json"
    space = {
        "lr": {"low": 1e-4, "high": 1e-3, "log": True},
        name: {"choices": STUDY_SETTINGS[name]},
    }
    path.write_text(json.dumps(space))
    with pytest.raises(ValueError, match=rf"space: '{name}' is a study setting"):
        load_space(path)


def test_a_study_records_the_exclusions_in_force_at_its_creation(tmp_path):
    url = store.review_url(tmp_path)
    store.add_note(url, "r0", "DEMO-007", "demo", "exclude", "", "ana")
    config = TuneConfig(trials=0, study="record", preset="tiny")
    study = open_study(config, tmp_path)
    assert list(study.user_attrs["review_exclusions"]) == ["DEMO-007"]
    store.add_note(url, "r0", "DEMO-008", "demo", "exclude", "", "ana")  # flagged meanwhile
    study = open_study(config, tmp_path)  # a later worker of the same study
    assert list(study.user_attrs["review_exclusions"]) == ["DEMO-007"]
    store.dispose(url)


def test_every_trial_uses_the_study_s_split_whatever_is_flagged_meanwhile(
    tiny_source, tmp_path, monkeypatch
):
    """Trial 0 runs; a reviewer then excludes one of its test patients. Trial 1 (another
    worker, later) is given the same patients and the same split: the test part cannot move.
    Training itself is not what is tested: each trial is pruned as its first fold starts."""
    from nsclc_engine.train import runner
    from nsclc_engine.train.loop import Pruned

    given = {}

    def first_fold(run_dir, config, split, fold, data, labels, *args, **kwargs):
        given[run_dir.name] = (split, sorted(labels))
        raise Pruned(fold, 0)

    monkeypatch.setattr(runner, "train_fold", first_fold)
    artifacts = tmp_path / "artifacts"
    config = tiny_study(tiny_source, tmp_path, name="fixed", trials=1, evaluate_best=False)
    run_worker(config, artifacts)
    storage = f"sqlite:///{artifacts}/studies/optuna.db"
    recorded = optuna.load_study(study_name="fixed", storage=storage).user_attrs
    first_split, patients = given["fixed-t0000"]
    assert recorded["review_exclusions"] == {}
    assert (recorded["split"]["seed"], recorded["split"]["folds"]) == (0, 0)
    assert recorded["split"]["splits"] == [first_split]
    assert recorded["split"]["patients"] == patients
    assert len(patients) >= 30  # the tiny cohort's usable patients

    flagged = first_split["test"][0]
    url = store.review_url(artifacts)
    source = store.source_of({"dicom": config.dicom})
    store.add_note(url, "fixed-t0000", flagged, source, "exclude", "mislabelled contour", "ana")
    assert list(store.exclusions(url, source)) == [flagged]
    run_worker(config, artifacts)  # the next trial, after the flag
    store.dispose(url)

    assert given["fixed-t0001"] == (first_split, patients)
    second = artifacts / "runs" / "fixed-t0001"
    assert load_splits(second / "splits.json")[0] == [first_split]
    assert json.loads((second / "review_exclusions.json").read_text()) == {}
    study = optuna.load_study(study_name="fixed", storage=storage)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.PRUNED] * 2
    assert study.user_attrs["split"] == recorded["split"]
    report = json.loads((artifacts / "studies" / "fixed.json").read_text())
    assert report["split"]["patients"] == len(patients)
    assert report["split"]["test_patients"] == [len(first_split["test"])]

    # a trial whose cohort lacks a patient of the study's split fails, naming the patient
    split = study.user_attrs["split"]
    split["splits"][0]["train"] = sorted([*split["splits"][0]["train"], "GHOST-001"])
    study.set_user_attr("split", split)
    run_worker(config, artifacts)
    trial = optuna.load_study(study_name="fixed", storage=storage).trials[2]
    assert trial.state == optuna.trial.TrialState.FAIL and "fixed-t0002" not in given
    assert "missing from the cohort: GHOST-001" in trial.user_attrs["error"]
