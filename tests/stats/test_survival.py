"""Survival metrics against brute force, hand computation and scikit-survival as the oracle."""

import itertools

import numpy as np
import pytest
import torch
from sksurv.compare import compare_survival
from sksurv.metrics import concordance_index_censored
from sksurv.nonparametric import kaplan_meier_estimator

from nsclc_engine.stats.survival import (
    bootstrap_c_index,
    cox_loss,
    harrell_c_index,
    kaplan_meier,
    logrank_test,
)


def brute_force_c_index(time, event, risk):
    concordant = comparable = 0.0
    for i, j in itertools.permutations(range(len(time)), 2):
        # a death before a later time, or a death and a censoring on the same day
        if event[i] and (time[i] < time[j] or (time[i] == time[j] and not event[j])):
            comparable += 1
            concordant += 1.0 if risk[i] > risk[j] else 0.5 if risk[i] == risk[j] else 0.0
    return concordant / comparable


def cox_sample(rng, n: int, scale_days: float, beta: float, censor_days: tuple) -> dict:
    """``time``, ``event``, ``risk`` of ``n`` patients: exponential death times with log hazard
    ``beta * risk`` (risk standard normal), censored uniformly over ``censor_days``."""
    x = rng.normal(0, 1, n)
    event_time = rng.exponential(scale_days * np.exp(-beta * x))
    censor = rng.uniform(*censor_days, n)
    return {"time": np.minimum(event_time, censor), "event": event_time <= censor, "risk": x}


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


def test_death_and_censoring_on_the_same_day_are_comparable():
    # lifelines and scikit-survival: the censored patient was alive when the other died
    time = np.array([5.0, 5.0, 9.0])
    event = np.array([1, 0, 1])
    risk = np.array([1.0, 2.0, 0.0])
    # pairs (0,1) same day, discordant; (0,2) concordant; (1, *) censored: not comparable
    assert harrell_c_index(time, event, risk) == pytest.approx(1 / 2)


@pytest.mark.parametrize("seed", range(5))
def test_c_index_equals_scikit_survival_with_tied_times(seed):
    time, event, risk = random_survival(seed, tied=True)
    expected = concordance_index_censored(event, time, risk)[0]
    assert harrell_c_index(time, event, risk) == pytest.approx(expected)


def test_perfect_and_reversed_risk():
    time = np.arange(1.0, 11.0)
    event = np.ones(10)
    assert harrell_c_index(time, event, -time) == 1.0
    assert harrell_c_index(time, event, time) == 0.0


def test_all_censored_raises():
    with pytest.raises(ValueError, match="no comparable pair"):
        harrell_c_index(np.arange(3.0), np.zeros(3), np.arange(3.0))


def random_survival(seed, n=60, tied=True):
    rng = np.random.default_rng(seed)
    time = rng.integers(1, 40, n).astype(float) if tied else rng.exponential(100, n)
    event = rng.random(n) < 0.7
    risk = np.round(rng.normal(0, 1, n), 1)  # tied risks
    return time, event, risk


@pytest.mark.parametrize("seed", range(5))
def test_c_index_equals_scikit_survival_with_censoring_and_tied_risks(seed):
    time, event, risk = random_survival(seed, tied=False)
    expected = concordance_index_censored(event, time, risk)[0]
    assert harrell_c_index(time, event, risk) == pytest.approx(expected)


def test_bootstrap_c_index_resamples_are_weightings_of_the_sample():
    time, event, risk = random_survival(3, n=50)
    result = bootstrap_c_index(time, event, risk, n_resamples=300, seed=2)
    assert result["ci_low"] < result["c_index"] < result["ci_high"]
    assert result == bootstrap_c_index(time, event, risk, n_resamples=300, seed=2)
    # one resample by hand: the weighted quadratic form equals the C of the duplicated sample
    rng = np.random.default_rng(9)
    draw = rng.integers(0, 50, 50)
    weights = np.bincount(draw, minlength=50).astype(float)
    from nsclc_engine.stats.survival import concordance_pairs

    comparable, concordant = concordance_pairs(time, event, risk)
    weighted = weights @ concordant @ weights / (weights @ comparable @ weights)
    assert weighted == pytest.approx(harrell_c_index(time[draw], event[draw], risk[draw]))


def test_kaplan_meier_equals_scikit_survival():
    time, event, _ = random_survival(4)
    km = kaplan_meier(time, event)
    times, survival = kaplan_meier_estimator(event, time)
    np.testing.assert_allclose(km["time"], times)
    np.testing.assert_allclose(km["survival"], survival)
    assert km["at_risk"][0] == len(time) and km["events"].sum() == event.sum()


def test_kaplan_meier_by_hand():
    # times 1 (death), 2 (censored), 3 (death), 3 (death), 5 (censored)
    km = kaplan_meier([1, 2, 3, 3, 5], [1, 0, 1, 1, 0])
    np.testing.assert_allclose(km["survival"], [4 / 5, 4 / 5, 4 / 5 * 1 / 3, 4 / 5 * 1 / 3])
    np.testing.assert_array_equal(km["at_risk"], [5, 4, 3, 1])


def test_logrank_equals_scikit_survival():
    time, event, risk = random_survival(5, n=80)
    group = (risk > np.median(risk)).astype(int)
    ours = logrank_test(time, event, group)
    structured = np.array(list(zip(event, time, strict=True)), dtype=[("e", bool), ("t", float)])
    statistic, p_value = compare_survival(structured, group)
    assert ours["statistic"] == pytest.approx(statistic)
    assert ours["p_value"] == pytest.approx(p_value)


def test_cox_loss_by_hand_and_its_gradient_points_the_right_way():
    # times 1, 2, 3, 4; events at 1 and 3; risks r
    r = torch.tensor([0.5, -0.2, 0.1, 0.3], requires_grad=True)
    time = torch.tensor([1.0, 2.0, 3.0, 4.0])
    event = torch.tensor([1, 0, 1, 0])
    loss = cox_loss(r, time, event)
    e = np.exp([0.5, -0.2, 0.1, 0.3])
    by_hand = -((0.5 - np.log(e.sum())) + (0.1 - np.log(e[2] + e[3]))) / 2
    assert loss.item() == pytest.approx(by_hand, rel=1e-6)
    loss.backward()
    # raising the risk of an early death lowers the loss; of the longest survivor raises it
    assert r.grad[0] < 0 and r.grad[3] > 0
    no_event = cox_loss(r, time, torch.zeros(4))
    assert no_event.item() == 0.0


def test_breslow_baseline_by_hand_and_against_scikit_survival():
    from sksurv.linear_model.coxph import BreslowEstimator

    from nsclc_engine.stats.survival_probability import fit_baseline

    survival = fit_baseline([1.0, 2.0, 3.0], [1, 1, 1], [0.0, 0.0, 0.0]).survival
    # H0(1) = 1/3, H0(2) = 1/3 + 1/2: exp(-H0) at 1.5 and 2.5 for risk 0
    np.testing.assert_allclose(survival([0.0], [1.5, 2.5])[0], np.exp([-1 / 3, -(1 / 3 + 1 / 2)]))
    time, event, risk = random_survival(6, n=80, tied=False)
    ours = fit_baseline(time, event, risk).survival
    oracle = BreslowEstimator().fit(risk, event, time)
    grid = np.quantile(time, [0.2, 0.5, 0.8])
    expected = np.array([f(grid) for f in oracle.get_survival_function(risk[:5])])
    np.testing.assert_allclose(ours(risk[:5], grid), expected, rtol=1e-6)


def test_evaluate_risks_and_risk_groups_on_a_known_model():
    from nsclc_engine.stats.survival import risk_groups
    from nsclc_engine.stats.survival_probability import evaluate_risks

    rng = np.random.default_rng(8)
    train, validation, test = (cox_sample(rng, n, 700, 0.8, (200, 2000)) for n in (300, 100, 200))
    result = evaluate_risks(train, test, validation, seed=1)
    assert 0.6 < result["harrell"]["c_index"] < 0.8
    assert abs(result["uno_c_index"] - result["harrell"]["c_index"]) < 0.05
    assert all(0.6 < auc < 0.9 for auc in result["time_dependent_auc"].values())
    assert 0.0 < result["integrated_brier_score"] < 0.25
    groups = risk_groups(validation["risk"], test["time"], test["event"], test["risk"])
    assert groups["cut_off"] == pytest.approx(np.median(validation["risk"]))
    assert groups["logrank"]["p_value"] < 0.01  # the high-risk group dies earlier
    high, low = groups["groups"]["high risk"], groups["groups"]["low risk"]
    assert high["survival"][-1] < low["survival"][-1]


def test_numbers_at_risk_by_hand():
    from nsclc_engine.stats.survival import at_risk_at

    km = kaplan_meier([1, 2, 3, 3, 5], [1, 0, 1, 1, 0])
    np.testing.assert_array_equal(at_risk_at(km, [0, 1, 2.5, 5, 6]), [5, 5, 3, 1, 0])


def test_paired_c_index_difference_by_hand_and_its_bootstrap():
    from nsclc_engine.stats.bootstrap import bootstrap_weights
    from nsclc_engine.stats.survival import paired_c_index_difference

    time, event, risk = random_survival(4, n=120)
    noise = np.random.default_rng(5).normal(0, 3, 120)
    result = paired_c_index_difference(time, event, risk, noise, n_resamples=500, seed=1)
    expected = harrell_c_index(time, event, risk) - harrell_c_index(time, event, noise)
    assert result["difference"] == pytest.approx(expected)
    assert result["ci_low"] <= result["difference"] <= result["ci_high"]
    same = paired_c_index_difference(time, event, risk, risk, n_resamples=200)
    assert (same["difference"], same["ci_low"], same["ci_high"], same["p_value"]) == (0, 0, 0, 1)
    # a resample is a weighting: the first one equals the difference on the duplicated sample
    weights = next(bootstrap_weights(120, 1, seed=3))[0]
    draw = np.repeat(np.arange(120), weights.astype(int))
    one = paired_c_index_difference(time, event, risk, noise, n_resamples=1, seed=3)
    by_hand = harrell_c_index(time[draw], event[draw], risk[draw]) - harrell_c_index(
        time[draw], event[draw], noise[draw]
    )
    assert one["ci_low"] == pytest.approx(by_hand)


def test_groups_at_equals_risk_groups_at_the_same_cut():
    from nsclc_engine.stats.survival import groups_at, risk_groups

    time, event, risk = random_survival(6, n=80)
    cut = float(np.median(risk[:40]))
    by_cut = risk_groups(risk[:40], time[40:], event[40:], risk[40:])
    by_mask = groups_at(time[40:], event[40:], risk[40:] > cut)
    assert by_cut["logrank"] == by_mask["logrank"]
    assert np.array_equal(
        by_cut["groups"]["high risk"]["survival"], by_mask["groups"]["high risk"]["survival"]
    )
    assert groups_at(time, event, np.zeros(80, bool))["logrank"] is None


def test_brier_baseline_comes_from_held_out_patients_not_in_sample_risks():
    """An overfit network's training risks are spread far wider than on new patients; a
    Breslow baseline fitted on them mis-scales the test curves (the old behaviour)."""
    from sksurv.metrics import integrated_brier_score
    from sksurv.nonparametric import kaplan_meier_estimator
    from sksurv.util import Surv

    from nsclc_engine.stats.survival_probability import evaluate_risks

    rng = np.random.default_rng(3)

    def draw(n, spread=1.0):
        x = rng.normal(0, 1, n)
        event_time = rng.exponential(700 * np.exp(-0.8 * x))
        censor = rng.uniform(200, 2000, n)
        time = np.minimum(event_time, censor)
        return {"time": time, "event": event_time <= censor, "risk": 0.8 * x}

    train, validation, test = draw(300), draw(150), draw(300)
    # memorised training risks: the order of the deaths, blown up (in-sample C near 1)
    memorised = dict(train, risk=8.0 * (-np.argsort(np.argsort(train["time"])) / 300))
    held_out = evaluate_risks(memorised, test, validation, seed=1)["integrated_brier_score"]
    in_sample = evaluate_risks(memorised, test, memorised, seed=1)["integrated_brier_score"]
    grid = np.linspace(max(test["time"].min(), 1.0), 730.0, 50)
    km_t, km_s = kaplan_meier_estimator(train["event"], train["time"])
    null = np.interp(grid, km_t, km_s)[None].repeat(len(test["time"]), axis=0)
    null_ibs = integrated_brier_score(
        Surv.from_arrays(train["event"], train["time"]),
        Surv.from_arrays(test["event"], test["time"]),
        null,
        grid,
    )
    assert held_out < null_ibs < in_sample


def test_fold_stratified_c_index_sums_each_folds_pairs():
    """Pooled k-fold test risks of different Cox models have no common location: only pairs
    within a fold are compared. Oracle: scikit-survival's per-fold pair counts, summed."""
    rng = np.random.default_rng(11)
    n = 90
    fold = np.repeat([0, 1, 2], n // 3)
    x = rng.normal(0, 1, n)
    time = rng.exponential(700 * np.exp(-0.9 * x)).round() + 1
    event = rng.random(n) < 0.75
    risk = 0.1 * x + np.array([-2.7, -0.4, -1.4])[fold]  # each fold's model, its own location
    concordant = comparable = 0.0
    for k in range(3):
        rows = fold == k
        _, c, d, tied_risk, _ = concordance_index_censored(event[rows], time[rows], risk[rows])
        concordant, comparable = concordant + c + 0.5 * tied_risk, comparable + c + d + tied_risk
    stratified = harrell_c_index(time, event, risk, strata=fold)
    assert stratified == pytest.approx(concordant / comparable)
    assert harrell_c_index(time, event, x, strata=fold) == pytest.approx(stratified)
    pooled = harrell_c_index(time, event, risk)  # the old, wrong number
    assert pooled < stratified - 0.03
    boot = bootstrap_c_index(time, event, risk, 200, 0, strata=fold)
    assert boot["c_index"] == pytest.approx(stratified)
    assert boot["ci_low"] < stratified < boot["ci_high"]


def test_ipcw_metrics_survive_a_test_patient_followed_beyond_training():
    """A test death after the last training time made scikit-survival raise and the fold
    lose Uno's C, time-dependent AUC and the IBS. The metrics look no further than the last
    horizon, so they equal those of the same data without that patient's late follow-up."""
    from sksurv.metrics import concordance_index_ipcw, cumulative_dynamic_auc
    from sksurv.util import Surv

    from nsclc_engine.stats.survival_probability import evaluate_risks

    rng = np.random.default_rng(12)
    train, validation, test = (cox_sample(rng, n, 600, 0.7, (300, 1000)) for n in (120, 40, 60))
    test["time"][0], test["event"][0] = train["time"].max() + 400, True
    result = evaluate_risks(train, test, validation)
    # the oracle: the same test data censored at 731 days, where scikit-survival is defined
    surv_train = Surv.from_arrays(train["event"], train["time"])
    late = test["time"] > 731
    surv_test = Surv.from_arrays(test["event"] & ~late, np.where(late, 731.0, test["time"]))
    assert result["uno_c_index"] == pytest.approx(
        concordance_index_ipcw(surv_train, surv_test, test["risk"], tau=730.0)[0]
    )
    aucs, _ = cumulative_dynamic_auc(surv_train, surv_test, test["risk"], [365.0, 730.0])
    assert list(result["time_dependent_auc"].values()) == pytest.approx(list(aucs))
    assert 0 < result["integrated_brier_score"] < 0.3
