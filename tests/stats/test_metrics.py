import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as sk

from nsclc_engine.stats.metrics import (
    bootstrap_metrics,
    choose_threshold,
    delong_test,
    metrics_at_threshold,
    threshold_sweep,
)

# six patients by hand: scores with a tie (0.6 twice), labels 1 1 0 1 0 0 by descending score
Y6 = np.array([1, 1, 1, 0, 0, 0])
P6 = np.array([0.9, 0.6, 0.3, 0.6, 0.2, 0.1])


def test_six_patients_by_hand():
    m = metrics_at_threshold(Y6, P6, 0.5)  # calls 0.9, 0.6, 0.6 positive
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 1, 2)
    assert m["sensitivity"] == pytest.approx(2 / 3) and m["specificity"] == pytest.approx(2 / 3)
    assert m["precision"] == pytest.approx(2 / 3) and m["npv"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3) and m["balanced_accuracy"] == pytest.approx(2 / 3)
    sweep = threshold_sweep(Y6, P6)
    np.testing.assert_array_equal(sweep.thresholds, [np.inf, 0.9, 0.6, 0.3, 0.2, 0.1])
    np.testing.assert_array_equal(sweep.tp, [0, 1, 2, 3, 3, 3])
    np.testing.assert_array_equal(sweep.fp, [0, 0, 1, 1, 2, 3])
    # pairs (pos, neg) = 9: (0.9 beats all 3) + (0.6: beats 2, ties 1) + (0.3: beats 2) = 7.5
    assert sweep.roc_auc() == pytest.approx(7.5 / 9)
    # AP = 1/3 * (1 + 2/3 + 3/4): precision at each positive's tie-group end
    assert sweep.average_precision() == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)
    assert np.isnan(metrics_at_threshold([1, 1], [0.9, 0.1])["specificity"])


labelled_scores = st.integers(2, 60).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 1), min_size=n, max_size=n).filter(lambda y: 0 < sum(y) < n),
        st.lists(st.integers(0, 12).map(lambda k: k / 12), min_size=n, max_size=n),
    )
)


@settings(max_examples=80, deadline=None)
@given(labelled_scores)
def test_sweep_and_curves_match_sklearn(data):
    y, p = map(np.asarray, data)
    sweep = threshold_sweep(y, p)
    assert sweep.roc_auc() == pytest.approx(sk.roc_auc_score(y, p))
    assert sweep.average_precision() == pytest.approx(sk.average_precision_score(y, p))
    fpr, tpr, _ = sk.roc_curve(y, p, drop_intermediate=False)
    ours_fpr, ours_tpr = sweep.roc_curve()
    np.testing.assert_allclose(ours_fpr, fpr)
    np.testing.assert_allclose(ours_tpr, tpr)
    for threshold in [*np.unique(p), -1.0, 0.5, 2.0]:  # every distinct score and beyond
        direct = metrics_at_threshold(y, p, threshold)
        assert sweep.at(threshold) == pytest.approx(direct, nan_ok=True)
        predicted = (p >= threshold).astype(int)
        tn, fp, fn, tp = sk.confusion_matrix(y, predicted, labels=[0, 1]).ravel()
        assert (direct["tn"], direct["fp"], direct["fn"], direct["tp"]) == (tn, fp, fn, tp)
        assert direct["f1"] == pytest.approx(
            sk.f1_score(y, predicted, zero_division=np.nan), nan_ok=True
        )
        assert direct["accuracy"] == pytest.approx(sk.accuracy_score(y, predicted))


@settings(max_examples=40, deadline=None)
@given(labelled_scores, st.integers(0, 10))
def test_bootstrap_resamples_equal_sklearn_on_the_same_indices(data, seed):
    y, p = map(np.asarray, data)
    result = bootstrap_metrics(y, p, threshold=0.5, n_resamples=30, seed=seed)
    assert result["auc"]["value"] == pytest.approx(sk.roc_auc_score(y, p))
    assert result["brier"]["value"] == pytest.approx(sk.brier_score_loss(y, p))
    assert result["average_precision"]["value"] == pytest.approx(sk.average_precision_score(y, p))
    # the vectorised per-resample values equal scikit-learn's on each resample
    from nsclc_engine.stats.metrics import weighted_metrics

    # ten resamples, each made to hold a positive and a negative so that every one is checked
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, len(y), size=(10, len(y)))
    indices[:, 0], indices[:, 1] = np.flatnonzero(y == 1)[0], np.flatnonzero(y == 0)[0]
    assert all(0 < y[i].sum() < len(y) for i in indices)
    weights = np.stack([np.bincount(i, minlength=len(y)) for i in indices])
    values = weighted_metrics(y, p, weights, 0.5)
    for k, i in enumerate(indices):
        assert values["auc"][k] == pytest.approx(sk.roc_auc_score(y[i], p[i]))
        assert values["average_precision"][k] == pytest.approx(
            sk.average_precision_score(y[i], p[i])
        )
        assert values["sensitivity"][k] == pytest.approx(sk.recall_score(y[i], p[i] >= 0.5))
        assert values["brier"][k] == pytest.approx(sk.brier_score_loss(y[i], p[i]))


def test_bootstrap_is_seeded_and_counts_single_class_resamples():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 80)
    p = 1 / (1 + np.exp(-(y + rng.normal(0, 1.0, 80))))
    result = bootstrap_metrics(y, p, n_resamples=500, seed=1)
    for key in ("auc", "sensitivity", "specificity", "f1", "accuracy", "brier"):
        assert result[key]["ci_low"] <= result[key]["value"] <= result[key]["ci_high"], key
    assert result == bootstrap_metrics(y, p, n_resamples=500, seed=1)
    tiny = bootstrap_metrics(np.array([0, 1, 1]), np.array([0.1, 0.8, 0.9]), 200, seed=0)
    assert tiny["n_single_class"] > 0


def test_auc_ci_covers_the_true_auc_at_about_the_nominal_rate():
    """Binormal model: scores N(0,1) vs N(d,1) have AUC Phi(d / sqrt 2)."""
    from scipy.stats import norm

    d, n, runs = 1.0, 120, 200
    true_auc = norm.cdf(d / np.sqrt(2))
    rng = np.random.default_rng(7)
    covered = 0
    for run in range(runs):
        y = (rng.random(n) < 0.4).astype(int)
        s = rng.normal(0, 1, n) + d * y
        ci = bootstrap_metrics(y, s, n_resamples=500, seed=run)["auc"]
        covered += ci["ci_low"] <= true_auc <= ci["ci_high"]
    assert 0.89 <= covered / runs <= 0.99  # nominal 0.95; percentile intervals run a bit narrow


def test_threshold_rules_by_hand():
    # J by lowest score called positive: 0.9 -> 1/3, 0.6 -> 1/3, 0.3 -> 2/3, 0.2 -> 1/3;
    # the threshold is halfway to the next lower score (0.3 -> 0.25, 0.9 -> 0.75)
    assert choose_threshold(Y6, P6, "youden").threshold == pytest.approx(0.25)
    assert choose_threshold(Y6, P6, "max_f1").threshold == pytest.approx(0.25)  # F1 6/7
    assert choose_threshold(Y6, P6, "spec_at_sens", 1.0).threshold == pytest.approx(0.25)
    assert choose_threshold(Y6, P6, "sens_at_spec", 1.0).threshold == pytest.approx(0.75)
    # a tie in the objective goes to the higher threshold: specificity 1 at 0.9 and at +inf
    assert choose_threshold(Y6, P6, "spec_at_sens", 0.2).threshold == pytest.approx(0.75)
    # everyone positive: the lowest score itself
    assert choose_threshold(Y6, P6, "spec_at_sens", 1.0).threshold > 0.1
    assert choose_threshold(Y6, P6, "fixed", 0.42).threshold == 0.42
    with pytest.raises(ValueError, match="needs a target"):
        choose_threshold(Y6, P6, "spec_at_sens")
    with pytest.raises(ValueError, match="choose one of"):
        choose_threshold(Y6, P6, "best_on_test")


def test_a_threshold_fitted_on_validation_never_depends_on_test_labels():
    rng = np.random.default_rng(3)
    y_val, p_val = rng.integers(0, 2, 50), rng.random(50)
    y_test = rng.integers(0, 2, 50)
    for rule, target in (("youden", None), ("max_f1", None), ("spec_at_sens", 0.8)):
        first = choose_threshold(y_val, p_val, rule, target)
        # the test labels play no part in the call, whatever they are
        assert choose_threshold(y_val, p_val, rule, target) == first
        assert metrics_at_threshold(1 - y_test, rng.random(50), first.threshold)
        assert first.fitted_on == "validation"


def brute_force_delong_variance(y, a, b):
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)

    def psi(x, z):
        return 1.0 if x > z else 0.5 if x == z else 0.0

    v10 = np.array([[np.mean([psi(s[i], s[j]) for j in neg]) for i in pos] for s in (a, b)])
    v01 = np.array([[np.mean([psi(s[i], s[j]) for i in pos]) for j in neg] for s in (a, b)])
    cov = np.cov(v10) / len(pos) + np.cov(v01) / len(neg)
    return v10.mean(axis=1), cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]


def test_delong_matches_its_definition_with_ties():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 40)
    a = np.round(y + rng.normal(0, 0.5, 40), 1)
    b = np.round(rng.normal(0, 1, 40), 1)
    result = delong_test(y, a, b)
    aucs, variance = brute_force_delong_variance(y, a, b)
    assert (result["auc_a"], result["auc_b"]) == pytest.approx(
        (sk.roc_auc_score(y, a), sk.roc_auc_score(y, b))
    )
    assert result["auc_a"] == pytest.approx(aucs[0])
    assert result["se"] == pytest.approx(np.sqrt(variance))
    assert result["p_value"] < 0.05 and result["difference"] > 0
    same = delong_test(y, a, a)
    assert same["difference"] == 0 and same["p_value"] == 1.0


def test_cluster_bootstrap_draws_patients_not_repeated_rows():
    """Pooled k-fold validation rows repeat patients (once per fold they validated in).
    Drawing rows treats the copies as independent patients and shrinks the CI; drawing
    patients gives exactly the CI of the patients counted once."""
    rng = np.random.default_rng(4)
    n = 60
    ids = np.array([f"P{i:03d}" for i in range(n)])
    y = rng.integers(0, 2, n)
    p = np.clip(0.5 + 0.2 * (y - 0.5) + rng.normal(0, 0.25, n), 0, 1)
    once = bootstrap_metrics(y, p, 0.5, 400, seed=1, groups=ids)
    thrice = bootstrap_metrics(
        np.tile(y, 3), np.tile(p, 3), 0.5, 400, seed=1, groups=np.tile(ids, 3)
    )
    as_rows = bootstrap_metrics(np.tile(y, 3), np.tile(p, 3), 0.5, 400, seed=1)
    for key in ("auc", "sensitivity", "brier"):
        assert thrice[key]["ci_low"] == pytest.approx(once[key]["ci_low"])
        assert thrice[key]["ci_high"] == pytest.approx(once[key]["ci_high"])
    width = once["auc"]["ci_high"] - once["auc"]["ci_low"]
    assert as_rows["auc"]["ci_high"] - as_rows["auc"]["ci_low"] < 0.75 * width
