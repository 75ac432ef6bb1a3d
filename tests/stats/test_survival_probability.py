"""Survival probabilities at a horizon and their calibration. Oracles: lifelines (Breslow
baseline, Cox slope, CRC smoother, ICI/E50), scikit-survival (censoring weights and
cumulative/dynamic AUC, Kaplan-Meier), hand computations, simulations from known curves."""

import numpy as np
import pandas as pd
import pytest

from nsclc_engine.stats.survival_calibration import (
    SplineFit,
    calibration_errors,
    calibration_in_the_large,
    d_calibration,
    observed_by_group,
    smoothed_calibration,
)
from nsclc_engine.stats.survival_probability import (
    Baseline,
    cox_slope,
    fit_baseline,
    horizon_counts,
    horizon_outcome,
    td_roc,
    td_sensitivity_specificity,
)


def exponential_cohort(seed: int, n: int = 200, beta: float = 0.8, scale: float = 500.0):
    """Cox-exponential survival in days: hazard exp(beta x) / scale, uniform censoring."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    death = rng.exponential(scale * np.exp(-beta * x))
    censor = rng.uniform(100, 1500, n)
    time = np.ceil(np.minimum(death, censor))  # whole days: tied times
    return pd.DataFrame({"x": x, "time": time, "event": (death <= censor).astype(int)})


def lifelines_cox(frame: pd.DataFrame):
    from lifelines import CoxPHFitter

    return CoxPHFitter().fit(frame[["x", "time", "event"]], "time", "event")


def test_breslow_baseline_equals_lifelines_coxph_baseline_with_tied_times():
    frame = exponential_cohort(0)
    cph = lifelines_cox(frame)
    risk = cph.predict_log_partial_hazard(frame).to_numpy()
    baseline = fit_baseline(frame.time, frame.event, risk)
    oracle = cph.baseline_cumulative_hazard_.iloc[:, 0]
    ours = -np.log(baseline.survival([0.0], oracle.index.to_numpy())[0])
    np.testing.assert_allclose(ours, oracle.to_numpy(), rtol=1e-10, atol=1e-12)
    # and each patient's curve at the observed times
    times = np.sort(frame.time[frame.event == 1].unique())[::7]
    expected = cph.predict_survival_function(frame.iloc[:5], times=times).T.to_numpy()
    np.testing.assert_allclose(baseline.survival(risk[:5], times), expected, rtol=1e-8)


def test_recalibrated_slope_equals_lifelines_coefficient_and_round_trips():
    frame = exponential_cohort(1)
    cph = lifelines_cox(frame)
    # an overfit model's risk: twice as spread as the truth; the slope on it is about 1/2
    risk = 2.0 * frame.x.to_numpy()
    assert cox_slope(frame.time, frame.event, risk) == pytest.approx(
        cph.params_["x"] / 2,
        rel=1e-4,  # two Newton solvers, each to its own tolerance
    )
    recalibrated = fit_baseline(frame.time, frame.event, risk, recalibrate=True)
    deaths = np.unique(frame.time[frame.event == 1])
    at = deaths[len(deaths) // 2]  # a death time: lifelines interpolates between them
    np.testing.assert_allclose(
        recalibrated.survival(risk[:3], [at]),
        cph.predict_survival_function(frame.iloc[:3], times=[at]).T.to_numpy(),
        rtol=1e-4,
    )
    again = Baseline.from_dict(recalibrated.to_dict())
    np.testing.assert_array_equal(
        again.survival(risk, [100, 700]), recalibrated.survival(risk, [100, 700])
    )


def test_baseline_by_hand():
    baseline = fit_baseline([1.0, 2.0, 2.0, 3.0], [1, 1, 0, 1], [0.0, 0.0, np.log(2), 0.0])
    # H0(1) = 1 / (1 + 1 + 2 + 1), H0(2) = H0(1) + 1 / (1 + 2 + 1), H0(3) = ... + 1 / 1
    np.testing.assert_allclose(
        baseline.cumulative_hazard, [1 / 5, 1 / 5 + 1 / 4, 1 / 5 + 1 / 4 + 1]
    )
    assert baseline.death_probability([np.log(2)], 2.5)[0] == pytest.approx(1 - np.exp(-2 * 0.45))


def _lifelines_calibration(frame, horizon):
    """lifelines' survival_probability_calibration on its own Cox model, and the CRC fit it
    makes inside (rebuilt with the same call) for the parameters."""
    import matplotlib

    matplotlib.use("Agg")
    from lifelines import CRCSplineFitter
    from lifelines.calibration import survival_probability_calibration

    cph = lifelines_cox(frame)
    _, ici, e50 = survival_probability_calibration(cph, frame[["x", "time", "event"]], t0=horizon)
    p = 1 - cph.predict_survival_function(frame, times=[horizon]).T.squeeze().to_numpy()
    p = np.clip(p, 1e-10, 1 - 1e-10)
    ccl = np.log(-np.log(1 - p))
    crc = CRCSplineFitter(n_baseline_knots=3, penalizer=1e-6).fit_right_censoring(
        pd.DataFrame({"c": ccl, "time": frame.time, "event": frame.event}),
        "time",
        "event",
        regressors={"beta_": ["c"], "gamma0_": "1", "gamma1_": "1", "gamma2_": "1"},
    )
    return p, ici, e50, crc, ccl


@pytest.mark.parametrize("seed", [0, 1])
def test_ici_and_e50_equal_lifelines(seed):
    """Times in years: lifelines' optimiser starts from H = t^2, which in days is too far off
    to converge (its ICI then comes out near 0.5 for a correct model)."""
    from nsclc_engine.stats import survival_calibration as module

    frame = exponential_cohort(seed, scale=1.5)
    frame["time"] = frame.time / 365.0 + 0.01
    horizon = 1.0
    p, ici, e50, crc, ccl = _lifelines_calibration(frame, horizon)
    scale = np.std(ccl, ddof=1)
    log_t = np.log(frame.time.to_numpy())
    event = frame.event.to_numpy().astype(bool)
    # the same model and objective: ours at lifelines' parameters is lifelines' log-likelihood
    params = crc.params_.to_numpy() * [scale, 1, 1, 1, 1]  # lifelines fits beta on ccl / sd
    objective, _ = module._negative_log_likelihood(
        params, log_t, event, ccl / scale, crc.knots, np.ones(len(p))
    )
    assert -objective * len(p) == pytest.approx(crc.log_likelihood_, rel=1e-9)
    # the same ICI and E50 from the same fit
    at_lifelines = calibration_errors(SplineFit(params, crc.knots, scale), p, horizon)
    assert at_lifelines["ici"] == pytest.approx(ici, rel=1e-6)
    assert at_lifelines["e50"] == pytest.approx(e50, rel=1e-6)
    # our fit reaches at least lifelines' maximum, and the ICI agrees to its tolerance
    ours = smoothed_calibration(p, frame.time, frame.event, horizon)
    fitted, _ = module._fit_spline(log_t, event, ccl / scale, crc.knots, np.ones(len(p)))
    assert (
        module._negative_log_likelihood(
            fitted, log_t, event, ccl / scale, crc.knots, np.ones(len(p))
        )[0]
        <= objective + 1e-12
    )
    assert ours["ici"] == pytest.approx(ici, abs=2e-3)
    assert ours["e50"] == pytest.approx(e50, abs=2e-3)
    # days or years: the same answer (lifelines' own fit fails in days)
    in_days = smoothed_calibration(p, frame.time * 365.0, frame.event, horizon * 365.0)
    assert in_days["ici"] == pytest.approx(ours["ici"], abs=1e-6)


def test_smoothed_calibration_sees_a_miscalibrated_model_and_gives_cis():
    frame = exponential_cohort(2, n=300)
    truth = fit_baseline(frame.time, frame.event, 0.8 * frame.x.to_numpy())
    p = truth.death_probability(0.8 * frame.x.to_numpy(), 365.0)
    good = smoothed_calibration(p, frame.time, frame.event, 365.0, n_resamples=100, seed=3)
    bad = smoothed_calibration(np.clip(p + 0.2, 0, 0.99), frame.time, frame.event, 365.0)
    assert good["ici"] < 0.05 < bad["ici"]
    assert good["ici_ci"][0] <= good["ici"] <= good["ici_ci"][1]
    assert good["n_failed"] == 0


def test_td_roc_auc_and_weights_equal_scikit_survival():
    from sksurv.metrics import cumulative_dynamic_auc
    from sksurv.nonparametric import CensoringDistributionEstimator
    from sksurv.util import Surv

    train, test = exponential_cohort(3), exponential_cohort(4, n=150)
    risk = 0.8 * test.x.to_numpy()
    surv_train = Surv.from_arrays(train.event.astype(bool), train.time)
    for horizon in (365.0, 730.0):
        outcome = horizon_outcome(test.time, test.event, horizon, train.time, train.event)
        expected, _ = cumulative_dynamic_auc(
            surv_train,
            Surv.from_arrays(test.event.astype(bool), np.minimum(test.time, horizon + 1)),
            risk,
            [horizon],
        )
        assert td_roc(outcome, risk)["auc"] == pytest.approx(expected[0], rel=1e-10)
        cases = outcome.case
        weights = (
            CensoringDistributionEstimator()
            .fit(surv_train)
            .predict_ipcw(Surv.from_arrays(np.ones(cases.sum(), bool), test.time[cases]))
        )
        np.testing.assert_allclose(outcome.weight[cases], weights)


def test_sensitivity_specificity_by_hand_and_the_censored_row():
    # deaths at 100 and 300, censored at 200 (before the 365-day horizon), alive at 400 and 500
    time = np.array([100.0, 300.0, 200.0, 400.0, 500.0])
    event = np.array([1, 1, 0, 0, 1])
    outcome = horizon_outcome(time, event, 365.0)
    # censoring KM of the patients themselves: G = 1 until 200, then 3/4 -> the death at 300
    # weighs 4/3, the one at 100 weighs 1
    np.testing.assert_allclose(outcome.weight[outcome.case], [1.0, 4 / 3])
    p = np.array([0.9, 0.2, 0.8, 0.7, 0.1])
    counts = horizon_counts(outcome, p, 0.5)
    assert counts == {"tp": 1, "fn": 1, "fp": 1, "tn": 1, "censored_pos": 1, "censored_neg": 0}
    rates = td_sensitivity_specificity(outcome, p, 0.5, n_resamples=200)
    assert rates["sensitivity"] == pytest.approx(1 / (1 + 4 / 3))
    assert rates["specificity"] == pytest.approx(1 / 2)
    # the censored patient is never a negative, whatever its call
    for threshold in (0.0, 0.75, 0.85, 1.0):
        counts = horizon_counts(outcome, p, threshold)
        assert counts["tn"] + counts["fn"] + counts["tp"] + counts["fp"] == 4
        assert counts["censored_pos"] + counts["censored_neg"] == 1


def test_d_calibration_by_hand():
    # a death at S = 0.35 (bin 3); a censored patient at s = 0.25: bin 2 gets (0.25 - 0.2) /
    # 0.25 = 0.2 and bins 0 and 1 get 0.1 / 0.25 = 0.4 each
    result = d_calibration([0.35, 0.25], [1, 0])
    expected = np.zeros(10)
    expected[3] = 1.0
    expected[2], expected[:2] = 0.2, 0.4
    np.testing.assert_allclose(result["counts"], expected)
    assert sum(result["counts"]) == pytest.approx(2.0)


def test_d_calibration_accepts_the_models_own_curves_and_rejects_a_shifted_baseline():
    """Survival drawn from the model's own curves: uniform S_i(T_i), p > 0.05 in most seeds;
    the same curves with the baseline hazard doubled: p < 0.001."""
    p_values, shifted = [], []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        n = 300
        risk = rng.normal(size=n)
        baseline = Baseline(np.arange(1.0, 3001.0), np.arange(1.0, 3001.0) / 800.0)
        # invert S(t | r) = exp(-t exp(r) / 800) at a uniform draw (days, then censored)
        death = -np.log(rng.uniform(size=n)) * 800.0 / np.exp(risk)
        censor = rng.uniform(50, 2000, n)
        time = np.minimum(np.minimum(death, censor), 3000.0)
        event = death <= np.minimum(censor, 3000.0)
        own = np.exp(-time * np.exp(risk) / 800.0)
        p_values.append(d_calibration(own, event)["p_value"])
        doubled = Baseline(baseline.times, 2 * baseline.cumulative_hazard)
        at_time = doubled.survival(risk, time)[np.arange(n), np.arange(n)]
        shifted.append(d_calibration(at_time, event)["p_value"])
    assert np.mean(np.array(p_values) > 0.05) >= 0.8
    assert max(shifted) < 0.001


def test_observed_by_group_and_in_the_large_match_kaplan_meier():
    from sksurv.nonparametric import kaplan_meier_estimator

    frame = exponential_cohort(5, n=250)
    truth = fit_baseline(frame.time, frame.event, 0.8 * frame.x.to_numpy())
    p = truth.death_probability(0.8 * frame.x.to_numpy(), 365.0)
    rows = observed_by_group(p, frame.time, frame.event, 365.0, n_groups=5)
    assert [row["n"] for row in rows] == [50] * 5
    low = np.argsort(p, kind="stable")[:50]
    km_t, km_s = kaplan_meier_estimator(frame.event.iloc[low].astype(bool), frame.time.iloc[low])
    assert rows[0]["observed"] == pytest.approx(1 - km_s[km_t <= 365.0][-1])
    assert rows[0]["predicted"] == pytest.approx(p[low].mean())
    large = calibration_in_the_large(p, frame.time, frame.event, 365.0, n_resamples=300)
    km_t, km_s = kaplan_meier_estimator(frame.event.astype(bool), frame.time)
    assert large["observed"] == pytest.approx(1 - km_s[km_t <= 365.0][-1])
    assert large["difference"] == pytest.approx(large["observed"] - p.mean())
    assert large["difference_ci"][0] < 0 < large["difference_ci"][1]  # a correct model
    too_low = calibration_in_the_large(p / 2, frame.time, frame.event, 365.0, n_resamples=300)
    assert too_low["difference_ci"][0] > 0  # observed above predicted
