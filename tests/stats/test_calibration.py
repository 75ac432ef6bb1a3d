import numpy as np
import pytest
import statsmodels.api as sm
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.calibration import calibration_curve
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, roc_auc_score

from nsclc_engine.stats.calibration import (
    calibration_intercept_slope,
    decision_curve,
    expected_calibration_error,
    fit_recalibrator,
    logit,
    probability_histograms,
    reliability_curve,
    sigmoid,
)

probabilities = st.integers(4, 80).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 1), min_size=n, max_size=n).filter(lambda y: 0 < sum(y) < n),
        st.lists(st.floats(0.0, 1.0), min_size=n, max_size=n),
    )
)


@settings(max_examples=60, deadline=None)
@given(probabilities, st.sampled_from(["uniform", "quantile"]), st.integers(2, 10))
def test_reliability_curve_matches_sklearn(data, strategy, n_bins):
    y, p = map(np.asarray, data)
    curve = reliability_curve(y, p, n_bins, strategy)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=n_bins, strategy=strategy)
    np.testing.assert_allclose(curve["observed"], prob_true)
    np.testing.assert_allclose(curve["mean_predicted"], prob_pred)
    assert curve["count"].sum() == len(y)
    assert (curve["observed_ci_low"] <= curve["observed"] + 1e-12).all()
    assert (curve["observed"] <= curve["observed_ci_high"] + 1e-12).all()


def test_ece_and_brier_by_hand():
    y = np.array([0, 1, 1, 1])
    p = np.array([0.05, 0.05, 0.95, 0.95])
    # bin [0, 0.1): predicted 0.05, observed 0.5; bin [0.9, 1]: predicted 0.95, observed 1
    assert expected_calibration_error(y, p) == pytest.approx(0.5 * 0.45 + 0.5 * 0.05)
    from nsclc_engine.stats.calibration import brier_score

    assert brier_score(y, p) == pytest.approx(brier_score_loss(y, p))


def test_intercept_and_slope_recover_a_known_miscalibration():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, 20000)
    y = (rng.random(20000) < sigmoid(0.5 * z - 0.3)).astype(int)  # true slope 0.5
    result = calibration_intercept_slope(y, sigmoid(z))
    assert result["slope"] == pytest.approx(0.5, abs=0.03)
    reference = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(z[:, None], y)
    assert result["slope"] == pytest.approx(reference.coef_[0, 0], rel=1e-4)
    well = (rng.random(20000) < sigmoid(z)).astype(int)
    result = calibration_intercept_slope(well, sigmoid(z))
    assert (result["intercept"], result["slope"]) == pytest.approx((0.0, 1.0), abs=0.06)


def test_recalibrators_fit_on_validation_and_improve_test_calibration():
    rng = np.random.default_rng(1)

    def draw(n):
        z = rng.normal(0, 1.5, n)
        y = (rng.random(n) < sigmoid(z)).astype(int)
        return y, sigmoid(3 * z + 1)  # overconfident and shifted model

    y_val, p_val = draw(3000)
    y_test, p_test = draw(3000)
    before = brier_score_loss(y_test, p_test)
    for method in ("platt", "temperature", "isotonic"):
        recalibrator = fit_recalibrator(y_val, p_val, method)
        after = recalibrator.apply(p_test)
        assert brier_score_loss(y_test, after) < before, method
        assert ((after >= 0) & (after <= 1)).all()
    platt = fit_recalibrator(y_val, p_val, "platt")
    assert platt.parameters["a"] == pytest.approx(1 / 3, abs=0.05)
    temperature = fit_recalibrator(y_val, p_val, "temperature")
    assert temperature.parameters["temperature"] > 2
    small = fit_recalibrator(y_val[:60], p_val[:60], "isotonic")
    assert "overfits" in small.warning and "warning" in small.to_dict()
    unchanged = fit_recalibrator(y_val, p_val, "none")
    assert (unchanged.parameters, unchanged.n_fitted) == ({}, 3000)
    np.testing.assert_array_equal(unchanged.apply(p_test), p_test)  # the identity map


def test_decision_curve_by_hand():
    y = np.array([1, 1, 0, 0])
    p = np.array([0.9, 0.6, 0.4, 0.1])
    curve = decision_curve(y, p, thresholds=[0.5, 0.2])
    # pt 0.5: TP 2, FP 0 -> 0.5; pt 0.2: TP 2, FP 1 -> 0.5 - 0.25 * 0.25
    np.testing.assert_allclose(curve["model"], [0.5, 0.5 - 0.25 * 0.25])
    np.testing.assert_allclose(curve["treat_all"], [0.5 - 0.5, 0.5 - 0.5 * 0.25])
    np.testing.assert_array_equal(curve["treat_none"], [0, 0])
    with pytest.raises(ValueError, match="strictly between"):
        decision_curve(y, p, thresholds=[0.0])


def test_probability_histograms_count_every_patient_once():
    y = np.array([0, 0, 1, 1, 1])
    p = np.array([0.0, 0.49, 0.51, 0.99, 1.0])
    h = probability_histograms(y, p, n_bins=2)
    np.testing.assert_array_equal(h["count_0"], [2, 0])
    np.testing.assert_array_equal(h["count_1"], [0, 3])
    assert np.sum(h["density_1"] * np.diff(h["edges"])) == pytest.approx(1.0)
    assert logit(0.5) == 0.0


def test_logistic_fits_say_nan_where_no_estimate_exists():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 50)
    constant = np.full(50, 0.3)
    assert np.isnan(calibration_intercept_slope(y, constant)["slope"])
    separated = np.where(y == 1, 0.9, 0.1)
    assert np.isnan(calibration_intercept_slope(y, separated)["slope"])
    with pytest.raises(ValueError, match="cannot be fitted"):
        fit_recalibrator(y, constant, "platt")
    # saturated but informative probabilities still give the maximum-likelihood answer
    z = rng.normal(0, 4, 400)
    y2 = (rng.random(400) < sigmoid(z / 2)).astype(int)
    p = np.clip(sigmoid(z), 0, 1)
    p[:20] = 1.0
    reference = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000)
    reference.fit(logit(p)[:, None], y2)
    assert calibration_intercept_slope(y2, p)["slope"] == pytest.approx(
        reference.coef_[0, 0], rel=1e-3
    )


def _narrow_but_informative(seed: int = 3, n: int = 120):
    """Validation predictions squeezed into a narrow probability range (an overfit network's
    shrunk logits): AUC about 0.67, far from separated, yet the maximum-likelihood calibration
    slope is large (statsmodels: about 77 on the fold the review found)."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(0, 1, n)
    y = (rng.random(n) < sigmoid(0.3 + 0.9 * signal)).astype(int)
    return y, sigmoid(-2.1 + 0.012 * signal)  # mean about 0.11 against prevalence ~0.55


def test_platt_fits_a_large_slope_that_is_not_separation():
    """Oracle: statsmodels' Logit. Before the fix any |slope| > 50 counted as separation and
    the fold kept raw probabilities with mean 0.1 against a prevalence of 0.55."""
    y, p = _narrow_but_informative()
    assert 0.6 < roc_auc_score(y, p) < 0.8
    reference = sm.Logit(y, sm.add_constant(logit(p))).fit(disp=0)
    assert abs(reference.params[1]) > 50  # the case the old rule refused
    platt = fit_recalibrator(y, p, "platt")
    assert platt.parameters["a"] == pytest.approx(reference.params[1], rel=1e-6)
    assert platt.parameters["b"] == pytest.approx(reference.params[0], rel=1e-6)
    assert platt.apply(p).mean() == pytest.approx(y.mean(), abs=1e-6)  # the MLE's property
    result = calibration_intercept_slope(y, p)
    assert result["slope"] == pytest.approx(reference.params[1], rel=1e-6)
    np.testing.assert_allclose(result["slope_ci"], reference.conf_int()[1], rtol=1e-5)


def test_calibration_intercept_has_the_glm_offset_ci():
    """Calibration-in-the-large: an intercept-only logistic GLM with the logit as offset
    (statsmodels' GLM is the oracle, estimate and Wald CI)."""
    rng = np.random.default_rng(4)
    z = rng.normal(0, 1.5, 300)
    y = (rng.random(300) < sigmoid(z - 0.4)).astype(int)
    result = calibration_intercept_slope(y, sigmoid(z))
    glm = sm.GLM(y, np.ones((300, 1)), family=sm.families.Binomial(), offset=z).fit()
    assert result["intercept"] == pytest.approx(glm.params[0], rel=1e-6)
    np.testing.assert_allclose(result["intercept_ci"], glm.conf_int()[0], rtol=1e-5)


def test_separated_predictions_are_still_refused_by_name():
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.3, 0.8, 0.9])  # quasi-complete: tie at the cut
    with pytest.raises(ValueError, match="separate the classes"):
        fit_recalibrator(y, p, "platt")
    assert np.isnan(calibration_intercept_slope(y, p)["slope"])
