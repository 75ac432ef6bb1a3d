"""The best achievable score on the very patients a run scored (synthetic cohort)."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from sksurv.metrics import concordance_index_censored

from nsclc_engine.evaluate.yardstick import best_achievable, judge, load_truth


def cohort(n=300, seed=0):
    """Truth and labels where the test patients are much easier than the cohort as a whole."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"DEMO-{i:03d}" for i in range(n)])
    eta_image = rng.normal(0, 1, n)
    eta = eta_image + rng.normal(0, 0.5, n)
    split = np.where(np.arange(n) < 60, "test", np.where(np.arange(n) < 120, "validation", "train"))
    noise = np.where(split == "test", 0.3, 3.0)  # test labels follow eta closely, others not
    y = (eta + rng.normal(0, noise) > 0).astype(int)
    time = np.exp(3 - eta + rng.normal(0, noise))
    event = (rng.random(n) < 0.8).astype(int)
    truth = pd.DataFrame({"patient_id": ids, "eta": eta, "eta_image": eta_image})
    predictions = pd.DataFrame(
        {"patient_id": ids, "split": split, "fold": 0, "y_true": y, "y_prob": 0.5}
    ).assign(time_days=time, event=event, risk=0.0)
    return truth, predictions


def test_auc_on_exactly_the_patients_of_each_split():
    truth, predictions = cohort()
    result = best_achievable(predictions, truth, "classification")
    assert result["metric"] == "auc"
    indexed = truth.set_index("patient_id")
    for part, rows in predictions.groupby("split"):
        for score in ("eta", "eta_image"):
            expected = roc_auc_score(rows.y_true, indexed.loc[rows.patient_id, score])
            assert result["splits"][part][score] == pytest.approx(expected)
        assert result["splits"][part]["n"] == len(rows)
    # the cohort-wide value (what every report used to print) is far from the test split's
    cohort_wide = roc_auc_score(predictions.y_true, truth.eta)
    assert result["splits"]["test"]["eta"] > cohort_wide + 0.1


def test_c_index_for_survival_runs_against_scikit_survival():
    truth, predictions = cohort(seed=1)
    result = best_achievable(predictions, truth, "survival")
    test = predictions[predictions.split == "test"]
    expected = concordance_index_censored(
        test.event.astype(bool), test.time_days, truth.set_index("patient_id").eta[test.patient_id]
    )[0]
    assert result["metric"] == "c_index"
    assert result["splits"]["test"]["eta"] == pytest.approx(expected)


def test_k_fold_pools_the_out_of_fold_test_rows_and_keeps_each_fold():
    truth, predictions = cohort(n=100, seed=2)
    folds = []
    for fold in range(2):
        part = np.where(np.arange(100) % 2 == fold, "test", "train")
        folds.append(predictions.assign(fold=fold, split=part))
    pooled = pd.concat(folds, ignore_index=True)
    result = best_achievable(pooled, truth, "classification")
    assert list(result["splits"]) == ["test"] and result["splits"]["test"]["n"] == 100
    expected = roc_auc_score(predictions.y_true, truth.eta)
    assert result["splits"]["test"]["eta"] == pytest.approx(expected)
    assert [entry["fold"] for entry in result["folds"]] == [0, 1]
    assert result["folds"][1]["test"]["n"] == 50


def test_a_patient_missing_from_the_truth_is_named():
    truth, predictions = cohort(n=50)
    with pytest.raises(ValueError, match="DEMO-049"):
        best_achievable(predictions, truth[truth.patient_id != "DEMO-049"], "classification")


def test_undefined_where_a_split_holds_one_class():
    truth, predictions = cohort(n=50)
    predictions.loc[predictions.split == "test", "y_true"] = 1
    assert best_achievable(predictions, truth, "classification")["splits"]["test"]["eta"] is None


def test_load_truth_reads_the_demo_builders_file(tmp_path):
    truth, _ = cohort(n=10)
    (tmp_path / "source").mkdir()
    truth.assign(extra=1).to_csv(tmp_path / "source" / "synth_truth.csv", index=False)
    loaded = load_truth(tmp_path / "cohort")
    assert list(loaded.columns) == ["patient_id", "eta", "eta_image"] and len(loaded) == 10
    assert load_truth(tmp_path / "elsewhere" / "cohort") is None
    assert load_truth(None) is None


def test_judgement_three_parts():
    block = {"auc": 0.70, "ci_low": 0.58, "ci_high": 0.81}
    honest = judge(block, "auc", 0.74)
    assert honest.learns and honest.no_leak and honest.share == pytest.approx(0.2 / 0.24)
    leak = judge({"auc": 0.97, "ci_low": 0.93, "ci_high": 1.0}, "auc", 0.80)
    assert leak.learns and not leak.no_leak
    chance = judge({"auc": 0.52, "ci_low": 0.40, "ci_high": 0.64}, "auc", 0.74)
    assert not chance.learns and chance.no_leak
    assert judge(block, "auc", None).no_leak is None
    # shuffled outcomes: the truth itself is near chance, a share would only amplify noise
    assert judge(block, "auc", 0.53).share is None
    assert json.dumps(honest.to_dict())  # JSON-ready for metrics files and pages
