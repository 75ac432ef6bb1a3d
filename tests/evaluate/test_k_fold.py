"""A k-fold run's test figures are the fold models' own: recomputed per fold with
scikit-learn (AUC) and scikit-survival (Harrell's C pair counts) from predictions.csv."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from sksurv.metrics import concordance_index_censored

from nsclc_engine.train.__main__ import main
from tests.train.test_train import train_args


@pytest.mark.slow
def test_three_fold_classification_auc_is_the_fold_models_own(tiny_source, tmp_path):
    args = train_args(tiny_source, tmp_path, "cv3", "--folds", "3", "--epochs", "1")
    assert main([*args, "--set", "model=vit"]) == 0  # the fastest network: the figures count
    run = tmp_path / "runs" / "cv3"
    predictions = pd.read_csv(run / "predictions.csv", dtype={"patient_id": str})
    metrics = json.loads((run / "metrics.json").read_text())
    test = predictions[predictions.split == "test"]
    # out of fold: every patient tested once, by one of the three fold models
    assert test.patient_id.is_unique and set(test.fold) == {0, 1, 2}
    assert set(test.patient_id) == set(predictions.patient_id)
    concordant = pairs = 0.0
    for k, (fold, rows) in enumerate(test.groupby("fold")):
        auc = roc_auc_score(rows.y_true, rows.y_prob)
        assert metrics["folds"]["per_fold"][k]["fold"] == fold
        assert metrics["folds"]["per_fold"][k]["auc"] == pytest.approx(auc)
        n_pairs = rows.y_true.sum() * (1 - rows.y_true).sum()
        concordant, pairs = concordant + auc * n_pairs, pairs + n_pairs
    headline = metrics["splits"]["test"]["auc"]
    assert headline["auc"] == pytest.approx(concordant / pairs)  # pairs within a fold only
    assert "fold-stratified" in metrics["splits"]["test"]["pooling"]["auc"]
    aucs = [row["auc"] for row in metrics["folds"]["per_fold"]]
    assert metrics["folds"]["summary"]["auc"]["mean"] == pytest.approx(np.mean(aucs))


@pytest.mark.slow
def test_three_fold_survival_c_index_never_ranks_two_folds_risks(tiny_source, tmp_path):
    args = train_args(tiny_source, tmp_path, "cv3s", "--folds", "3", "--epochs", "1")
    args[args.index("os_2y")] = "deadstatus_event"
    assert main([*args, "--task", "survival", "--set", "model=vit"]) == 0
    run = tmp_path / "runs" / "cv3s"
    predictions = pd.read_csv(run / "predictions.csv", dtype={"patient_id": str})
    metrics = json.loads((run / "metrics.json").read_text())
    test = predictions[predictions.split == "test"]
    concordant = comparable = 0.0
    for k, (fold, rows) in enumerate(test.groupby("fold")):
        c, n_concordant, n_discordant, tied_risk, _ = concordance_index_censored(
            rows.event.astype(bool), rows.time_days, rows.risk
        )
        entry = metrics["fold_summary"]["per_fold"][k]
        assert entry["fold"] == fold and entry["c_index"] == pytest.approx(c)
        concordant += n_concordant + 0.5 * tied_risk
        comparable += n_concordant + n_discordant + tied_risk
    headline = metrics["splits"]["test"]["c_index"]
    assert headline["c_index"] == pytest.approx(concordant / comparable)
    image = metrics["models"]["c_index"]["image"]["test"]["c_index"]
    assert image == pytest.approx(headline["c_index"])
