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
    # pairs within a fold only, as the model's own k-fold test AUC: each fold's sklearn AUC
    # weighted by its (positive, negative) pairs
    test = pooled[pooled.split == "test"]
    eta = truth.set_index("patient_id").eta
    weights = aucs = 0.0
    for _, rows in test.groupby("fold"):
        pairs = rows.y_true.sum() * (1 - rows.y_true).sum()
        weights += pairs
        aucs += pairs * roc_auc_score(rows.y_true, eta[rows.patient_id])
    assert result["fold_stratified"]
    assert result["splits"]["test"]["eta"] == pytest.approx(aucs / weights)
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


def test_paired_difference_and_share_use_the_same_resamples():
    """Model - best achievable on each resample of the test patients (sklearn's AUC on the
    drawn patients is the oracle), its CI and the share's CI from the same draws."""
    from nsclc_engine.stats.bootstrap import bootstrap_weights

    truth, predictions = cohort(n=200, seed=3)
    rng = np.random.default_rng(5)
    indexed = truth.set_index("patient_id")
    model = indexed.eta_image[predictions.patient_id].to_numpy() + rng.normal(0, 1.0, 200)
    predictions["y_prob"] = 1 / (1 + np.exp(-model))
    result = best_achievable(predictions, truth, "classification", n_resamples=300, seed=4)
    paired = result["paired"]["test"]
    test = predictions[predictions.split == "test"].reset_index(drop=True)
    best = indexed.eta_image[test.patient_id].to_numpy()
    differences, shares = [], []
    for counts in bootstrap_weights(len(test), 300, 4):
        for row in counts:
            drawn = np.repeat(np.arange(len(test)), row)
            y = test.y_true.to_numpy()[drawn]
            if y.min() == y.max():
                continue
            a = roc_auc_score(y, test.y_prob.to_numpy()[drawn])
            b = roc_auc_score(y, best[drawn])
            differences.append(a - b)
            if b - 0.5 >= 0.05:
                shares.append((a - 0.5) / (b - 0.5))
    expected = roc_auc_score(test.y_true, test.y_prob) - roc_auc_score(test.y_true, best)
    assert paired["difference"]["value"] == pytest.approx(expected)
    assert paired["difference"]["ci_low"] == pytest.approx(np.quantile(differences, 0.025))
    assert paired["difference"]["ci_high"] == pytest.approx(np.quantile(differences, 0.975))
    assert paired["share"]["ci_low"] == pytest.approx(np.quantile(shares, 0.025))
    assert paired["share"]["ci_high"] == pytest.approx(np.quantile(shares, 0.975))
    assert paired["share"]["ci_low"] < paired["share"]["value"] < paired["share"]["ci_high"]


def test_a_model_better_than_the_truth_is_a_leak_even_when_cis_overlap():
    """The unpaired rule (model CI wholly above the best) misses a leak the paired one finds:
    a score that holds the label beats the truth on every resample."""
    truth, predictions = cohort(n=200, seed=6)
    rng = np.random.default_rng(7)
    test = predictions.split == "test"
    eta_image = truth.eta_image.to_numpy()[test]  # cohort(): rows in truth's order
    predictions.loc[test, "y_true"] = (eta_image + rng.normal(0, 1.2, 60) > 0).astype(int)
    leaked = eta_image + 0.4 * predictions.y_true[test]  # the truth plus a label cue
    predictions.loc[test, "y_prob"] = 1 / (1 + np.exp(-leaked))
    metrics = {
        "splits": {"test": {"auc": {"auc": 0.0, "ci_low": 0.0, "ci_high": 0.0}}},
        "best_achievable": best_achievable(predictions, truth, "classification", 500),
    }
    from nsclc_engine.evaluate.yardstick import judge_run
    from nsclc_engine.stats.metrics import bootstrap_metrics

    boot = bootstrap_metrics(predictions.y_true[test], predictions.y_prob[test], 0.5, 500)
    metrics["splits"]["test"]["auc"] = {
        "auc": boot["auc"]["value"],
        "ci_low": boot["auc"]["ci_low"],
        "ci_high": boot["auc"]["ci_high"],
    }
    verdict = judge_run(metrics)
    assert verdict.ci_low <= verdict.best  # unpaired: "no leak"
    assert verdict.difference_ci_low > 0 and not verdict.no_leak  # paired: a leak
