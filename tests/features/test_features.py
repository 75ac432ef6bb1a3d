"""Frozen-feature models: the encoders' own inputs, the cached vectors, the linear model fitted
on training patients only, and the run the dashboard shows."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from nsclc_engine.cohort.build import CohortConfig, load_cohort, run_cohort
from nsclc_engine.cohort.splits import SplitConfig, make_splits
from nsclc_engine.features.__main__ import main
from nsclc_engine.features.extract import FeatureStore, extract_features
from nsclc_engine.features.fit import fit_fold
from nsclc_engine.features.recipes import recipe
from nsclc_engine.preprocess.volumes import cohort_sources, preprocess_patient
from nsclc_engine.review import store
from nsclc_engine.train.prepare import run_exclusions
from tests.helpers import SHARED, medicalnet_state, require_shared

FMCIB_SEEDS = SHARED / "data" / "lung1-fmcib-annotations" / "annotations.csv"


@pytest.fixture(scope="module")
def lung1_cohort(lung1_dir, lung1_clinical, tmp_path_factory):
    folder = tmp_path_factory.mktemp("lung1_cohort") / "cohort"
    run_cohort(lung1_dir, lung1_clinical, folder, CohortConfig(), show_progress=False)
    return folder


def cube_centre_mm(cohort_dir) -> dict[str, np.ndarray]:
    """Where the FMCIB cube's centre (between input voxels 24 and 25 on each axis) lies in
    patient coordinates (x, y, z mm), per patient."""
    config = recipe("fmcib").preprocess
    centres = {}
    for source in cohort_sources(cohort_dir):
        geometry = preprocess_patient(source, config).geometry
        assert np.allclose(geometry.scale_zyx * np.asarray(geometry.ct_spacing_mm), 1.0)  # 1 mm
        centres[source.patient_id] = geometry.input_to_patient_mm(np.array([[24.5] * 3]))[0]
    return centres


def test_the_fmcib_cube_is_centred_on_the_gtv_centroid_of_cohort_csv(tiny_cohort):
    table = load_cohort(tiny_cohort).set_index("patient_id")
    for patient_id, centre in list(cube_centre_mm(tiny_cohort).items())[:8]:
        row = table.loc[patient_id]
        centroid = [row.gtv_centroid_x_mm, row.gtv_centroid_y_mm, row.gtv_centroid_z_mm]
        np.testing.assert_allclose(centre, centroid, atol=1e-6)


def test_on_lung1_001_the_cube_sits_on_fmcibs_own_seed_point_and_features_are_extracted(
    lung1_cohort, fmcib_file, tmp_path
):
    seeds = pd.read_csv(require_shared(FMCIB_SEEDS)).set_index("PatientID")
    seed = seeds.loc["LUNG1-001", ["coordX", "coordY", "coordZ"]].to_numpy(float)
    centre = cube_centre_mm(lung1_cohort)["LUNG1-001"]
    assert np.linalg.norm(centre - seed) < 0.5  # mm; FMCIB's seed is the GTV's centre too
    row = load_cohort(lung1_cohort).iloc[0]
    np.testing.assert_allclose(
        centre, [row.gtv_centroid_x_mm, row.gtv_centroid_y_mm, row.gtv_centroid_z_mm], atol=1e-6
    )
    result = extract_features(lung1_cohort, recipe("fmcib"), fmcib_file, "fmcib", tmp_path)
    assert result.features.shape == (1, 4096) and result.failed.empty
    assert np.isfinite(result.features.to_numpy()).all()


def test_fmcib_intensities_are_its_own_window(lung1_cohort):
    """FMCIB's ScaleIntensityRanged(a_min=-1024, a_max=3072, clip=True): (HU + 1024) / 4096."""
    config = recipe("fmcib").preprocess
    low = config.window_center_hu - config.window_width_hu / 2
    high = config.window_center_hu + config.window_width_hu / 2
    assert (low, high) == (-1024.0, 3072.0)
    assert recipe("fmcib").network_input(np.array([0.25], np.float32))[0] == 0.25  # as cached


def test_vectors_are_cached_as_raw_floats_and_keyed_by_the_weights_file(tiny_cohort, tmp_path):
    weights = tmp_path / "resnet_10.pth"
    torch.save({"state_dict": medicalnet_state(10)}, weights)
    first = extract_features(
        tiny_cohort, recipe("medicalnet", "smoke"), weights, "resnet10", tmp_path
    )
    assert first.features.shape == (40, 512) and first.hits == 0
    again = extract_features(
        tiny_cohort, recipe("medicalnet", "smoke"), weights, "resnet10", tmp_path
    )
    assert again.hits == 40
    pd.testing.assert_frame_equal(first.features, again.features)
    with FeatureStore(tmp_path) as store:  # bytes, not pickles: reading the store runs no code
        assert all(isinstance(store.index[key], bytes) for key in store.index.iterkeys())
    torch.manual_seed(1)
    torch.save({"state_dict": medicalnet_state(10)}, weights)  # other weights, same name
    other = extract_features(
        tiny_cohort, recipe("medicalnet", "smoke"), weights, "resnet10", tmp_path
    )
    assert other.hits == 0 and not np.allclose(other.features, first.features)


def synthetic_features(n: int = 300, width: int = 30, seed: int = 0):
    rng = np.random.default_rng(seed)
    patients = [f"P{i:03d}" for i in range(n)]
    features = pd.DataFrame(rng.normal(size=(n, width)), index=patients)
    risk = features[0] + 0.5 * features[1]
    label = (risk + rng.normal(scale=0.7, size=n) > 0).astype(int)
    time = np.exp(3 - risk + rng.normal(scale=0.3, size=n)) * 30
    event = (rng.random(n) < 0.8).astype(int)
    outcomes = pd.DataFrame(
        {"label": label, "time_days": time, "event": event, "risk": risk}, index=patients
    )
    split = make_splits(patients, label.tolist(), SplitConfig(seed=seed))[0]
    return features, outcomes, split


def test_the_penalty_is_chosen_on_training_patients_only():
    """Change every validation and test label: the same penalty, the same predictions."""
    features, outcomes, split = synthetic_features()
    frame, chosen = fit_fold(features, split, outcomes, "classification")
    held_out = split["validation"] + split["test"]
    flipped = outcomes.copy()
    flipped.loc[held_out, "label"] = 1 - flipped.loc[held_out, "label"]
    again, chosen_again = fit_fold(features, split, flipped, "classification")
    assert chosen == chosen_again
    np.testing.assert_array_equal(frame.y_prob, again.y_prob)
    test = frame[frame.split == "test"]
    best = roc_auc_score(test.y_true, outcomes.loc[test.patient_id, "risk"])  # the true risk
    assert roc_auc_score(test.y_true, test.y_prob) > best - 0.05  # the signal is learned
    assert set(frame.split) == {"train", "validation", "test"}
    assert chosen["C"] in chosen["grid"] and chosen["inner_folds"] == 5


def test_the_cox_model_ranks_survival_and_ignores_held_out_outcomes():
    from sksurv.metrics import concordance_index_censored

    features, outcomes, split = synthetic_features()
    frame, chosen = fit_fold(features, split, outcomes, "survival")
    test = frame[frame.split == "test"]
    c_index = concordance_index_censored(test.event.astype(bool), test.time_days, test.risk)[0]
    assert c_index > 0.75 and chosen["features_used"] >= 1
    shuffled = outcomes.copy()
    held_out = split["validation"] + split["test"]
    shuffled.loc[held_out, "time_days"] = shuffled.loc[held_out, "time_days"].to_numpy()[::-1]
    again, chosen_again = fit_fold(features, split, shuffled, "survival")
    assert chosen == chosen_again
    np.testing.assert_allclose(frame.risk, again.risk)


def test_a_feature_run_is_a_run_like_any_other(feature_artifacts, capsys):
    folder = feature_artifacts / "runs" / "fmcib-features"
    config = json.loads((folder / "config.json").read_text())
    assert config["kind"] == "features" and config["model"] == "fmcib"
    weights = config["resolved"]["weights"]
    assert weights["tensors_loaded"] == 322 and len(weights["sha256"]) == 64
    status = json.loads((folder / "status.json").read_text())
    assert status["state"] == "finished" and status["model"]["parameters"] > 1e8
    predictions = pd.read_csv(folder / "predictions.csv")
    assert set(predictions.split) == {"train", "validation", "test"}
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["splits"]["test"]["auc"]["ci_low"] <= metrics["splits"]["test"]["auc"]["auc"]
    threshold = json.loads((folder / "threshold.json").read_text())
    assert threshold["fitted"]["fitted_on"] == "validation"
    model = json.loads((folder / "feature_model.json").read_text())
    assert model["features"] == 4096 and model["patients"] == len(predictions)


def test_the_same_splits_as_a_training_run_of_the_same_cohort(feature_artifacts, tiny_cohort):
    from nsclc_engine.cohort.splits import load_splits

    splits, config, label, _ = load_splits(
        feature_artifacts / "runs" / "fmcib-features" / "splits.json"
    )
    table = load_cohort(tiny_cohort).sort_values("patient_id")
    expected = make_splits(table.patient_id.tolist(), table.os_2y.astype(int).tolist(), config)
    assert splits == expected and label == "os_2y"


def test_a_feature_run_leaves_out_the_reviewers_exclusions(
    feature_artifacts, tiny_source, tiny_cohort, fmcib_file, tmp_path
):
    """Issue 26, item 10: as a training run does, a feature run leaves out the patients a
    reviewer excluded from its data source (here the DICOM folder the cohort was built from;
    a note on another source does not apply), keeps that set in review_exclusions.json, and
    splits the rest as a training run would (oracle: ``make_splits`` on the other patients)."""
    artifacts = tmp_path / "art"
    shutil.copytree(feature_artifacts / "cache", artifacts / "cache")  # the vectors, extracted
    url = store.review_url(artifacts)
    patients = sorted(load_cohort(tiny_cohort).patient_id)
    source = store.source_of({"dicom": str(tiny_source / "dicom")})
    store.add_note(url, "fixture", patients[3], source, "exclude", "contour on the heart", "ana")
    store.add_note(url, "fixture", patients[4], "demo", "exclude", "another source", "ana")
    argv = ["--weights", str(fmcib_file), "--recipe", "fmcib", "--cohort", str(tiny_cohort)]
    argv += ["--name", "reviewed", "--artifacts", str(artifacts), "--quiet"]
    assert main([*argv, "--set", "bootstrap_resamples=200"]) == 0

    folder = artifacts / "runs" / "reviewed"
    kept = json.loads((folder / "review_exclusions.json").read_text())
    assert list(kept) == [patients[3]] and "contour on the heart" in kept[patients[3]]
    predictions = pd.read_csv(folder / "predictions.csv", dtype={"patient_id": str})
    unreviewed = pd.read_csv(
        feature_artifacts / "runs" / "fmcib-features" / "predictions.csv", dtype={"patient_id": str}
    )
    assert set(predictions.patient_id) == set(unreviewed.patient_id) - {patients[3]}
    model = json.loads((folder / "feature_model.json").read_text())
    assert model["review_excluded"] == [patients[3]]
    from nsclc_engine.cohort.splits import load_splits

    splits, config, _, _ = load_splits(folder / "splits.json")
    table = load_cohort(tiny_cohort)
    table = table[table.patient_id.isin(predictions.patient_id)].sort_values("patient_id")
    assert splits == make_splits(
        table.patient_id.tolist(), table.os_2y.astype(int).tolist(), config
    )
    # a flag added after the run split its patients does not reach it
    store.add_note(url, "fixture", patients[5], source, "exclude", "", "ana")
    assert list(run_exclusions(folder, None, artifacts, str(tiny_source))) == [patients[3]]
    store.dispose(url)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--weights", "missing.pt", "--recipe", "fmcib"], "weights 'missing.pt': no such file"),
        (["--recipe", "fmcib"], "MEDICALNET"),
        (
            ["--recipe", "medicalnet", "--set", "model=fmcib"],
            "the medicalnet recipe is for resnet10",
        ),
    ],
)
def test_bad_input_gets_one_line_and_no_run(tmp_path, capsys, extra, message):
    weights = tmp_path / "resnet_18.pth"
    torch.save({"state_dict": medicalnet_state(18)}, weights)
    argv = ["--artifacts", str(tmp_path / "art"), "--name", "x", "--quiet"]
    if "--weights" not in extra:
        argv += ["--weights", str(weights)]
    assert main([*argv, *extra]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1
    if message == "MEDICALNET":  # a MedicalNet file given as FMCIB's
        assert "does not fit model fmcib" in error and "Expected MONAI resnet50(widen" in error
    else:
        assert message in error
    assert not (tmp_path / "art" / "runs" / "x").exists()
