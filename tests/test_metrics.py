import itertools

import numpy as np
import pytest

from nsclc_engine.metrics import harrell_c_index


def brute_force_c_index(time, event, risk):
    concordant = comparable = 0.0
    for i, j in itertools.permutations(range(len(time)), 2):
        if event[i] and time[i] < time[j]:
            comparable += 1
            concordant += 1.0 if risk[i] > risk[j] else 0.5 if risk[i] == risk[j] else 0.0
    return concordant / comparable


def test_hand_computed_four_patients():
    time = np.array([1.0, 2.0, 3.0, 4.0])
    event = np.array([1, 0, 1, 0])
    risk = np.array([4.0, 1.0, 2.0, 3.0])
    # comparable pairs: (0,1) (0,2) (0,3) (2,3); concordant: (0,1) (0,2) (0,3); (2,3) discordant
    assert harrell_c_index(time, event, risk) == pytest.approx(3 / 4)


@pytest.mark.parametrize("seed", range(4))
def test_matches_brute_force_with_ties(seed):
    rng = np.random.default_rng(seed)
    time = rng.integers(1, 15, 40).astype(float)  # tied times
    event = rng.random(40) < 0.7
    risk = rng.integers(0, 5, 40).astype(float)  # tied risks
    assert harrell_c_index(time, event, risk) == pytest.approx(
        brute_force_c_index(time, event, risk)
    )


def test_perfect_and_reversed_risk():
    time = np.arange(1.0, 11.0)
    event = np.ones(10)
    assert harrell_c_index(time, event, -time) == 1.0
    assert harrell_c_index(time, event, time) == 0.0


def test_all_censored_raises():
    with pytest.raises(ValueError, match="no comparable pair"):
        harrell_c_index(np.arange(3.0), np.zeros(3), np.arange(3.0))


def test_metrics_at_threshold_by_hand_and_against_sklearn():
    from sklearn.metrics import accuracy_score, f1_score, recall_score

    from nsclc_engine.metrics import metrics_at_threshold

    y_true = np.array([1, 1, 1, 0, 0, 1])
    y_prob = np.array([0.9, 0.4, 0.6, 0.7, 0.2, 0.5])
    m = metrics_at_threshold(y_true, y_prob, 0.5)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (3, 1, 1, 1)
    predicted = (y_prob >= 0.5).astype(int)
    assert m["accuracy"] == pytest.approx(accuracy_score(y_true, predicted))
    assert m["sensitivity"] == pytest.approx(recall_score(y_true, predicted))
    assert m["specificity"] == pytest.approx(recall_score(y_true, predicted, pos_label=0))
    assert m["f1"] == pytest.approx(f1_score(y_true, predicted))
    assert np.isnan(metrics_at_threshold([1, 1], [0.9, 0.1])["specificity"])


def test_bootstrap_auc_ci_brackets_the_auc_and_counts_single_class_resamples():
    from sklearn.metrics import roc_auc_score

    from nsclc_engine.metrics import bootstrap_auc_ci

    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 2, 80)
    y_score = y_true + rng.normal(0, 1.0, 80)
    result = bootstrap_auc_ci(y_true, y_score, n_resamples=500, seed=1)
    assert result["auc"] == pytest.approx(roc_auc_score(y_true, y_score))
    assert result["ci_low"] < result["auc"] < result["ci_high"]
    assert result == bootstrap_auc_ci(y_true, y_score, n_resamples=500, seed=1)
    tiny = bootstrap_auc_ci(np.array([0, 1, 1]), np.array([0.1, 0.8, 0.9]), 200, seed=0)
    assert tiny["n_single_class"] > 0
