"""The Calibration page: the method chosen on validation (cross-validated), test predictions
only for the method in force."""

import numpy as np
import pandas as pd
import pytest

from nsclc_engine.dashboard.calibration import (
    calibration_view,
    cross_validated_validation,
    method_in_force,
    recalibration_choice,
)
from nsclc_engine.stats.calibration import (
    RECALIBRATION_METHODS,
    brier_score,
    calibration_summary,
)


def frame(y_true, y_prob) -> pd.DataFrame:
    return pd.DataFrame({"y_true": y_true, "y_prob": y_prob})


def test_raw_only_for_none_and_both_sets_otherwise():
    raw = frame([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    shown = frame([0, 0, 1, 1], [0.2, 0.3, 0.6, 0.7])
    alone = calibration_view(raw, raw, "none", "uniform")
    assert alone["summary"].probabilities.tolist() == ["raw"]
    assert list(alone["reliability"]) == ["raw"]
    both = calibration_view(raw, shown, "platt", "quantile")
    assert both["summary"].probabilities.tolist() == ["raw", "platt"]
    # Brier by hand: mean squared error of each set
    assert both["summary"].brier.tolist() == pytest.approx(
        [np.mean((raw.y_prob - raw.y_true) ** 2), np.mean((shown.y_prob - shown.y_true) ** 2)]
    )
    assert both["summary"].brier[1] == pytest.approx(brier_score(shown.y_true, shown.y_prob))
    assert list(both["decision"]) == ["model (test)"]


def test_unknown_method_or_bins_are_refused():
    raw = frame([0, 1], [0.2, 0.7])
    with pytest.raises(ValueError, match="choose from"):
        calibration_view(raw, raw, "spline", "uniform")
    with pytest.raises(ValueError, match="choose from"):
        calibration_view(raw, raw, "none", "deciles")


def validation_and_test(n=200, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = 1 / (1 + np.exp(-(2.5 * (y - 0.5) + rng.normal(0, 1.5, n) - 1.0)))
    split = np.where(np.arange(n) % 2 == 0, "validation", "test")
    return pd.DataFrame(
        {"patient_id": [f"P{i}" for i in range(n)], "split": split, "fold": 0, "y_true": y}
    ).assign(y_prob=p)


def test_the_method_is_chosen_on_validation_without_reading_test():
    predictions = validation_and_test()
    choice = recalibration_choice(predictions)
    summary = choice["summary"].set_index("method")
    assert list(summary.index) == list(RECALIBRATION_METHODS)
    validation = predictions[predictions.split == "validation"]
    # none: the raw validation probabilities
    raw = calibration_summary(validation.y_true, validation.y_prob)
    assert summary.loc["none", "brier"] == pytest.approx(raw["brier"])
    assert summary.loc["none", "n"] == len(validation)
    # the test rows' labels and probabilities play no part
    scrambled = predictions.copy()
    test = scrambled.split == "test"
    scrambled.loc[test, "y_true"] = 1 - scrambled.loc[test, "y_true"]
    scrambled.loc[test, "y_prob"] = 0.5
    pd.testing.assert_frame_equal(recalibration_choice(scrambled)["summary"], choice["summary"])


def test_cross_validation_scores_each_row_with_a_map_fitted_without_it():
    from sklearn.model_selection import StratifiedKFold

    from nsclc_engine.stats.calibration import fit_recalibrator

    predictions = validation_and_test()
    shown = cross_validated_validation(predictions, "platt", n_splits=4)
    validation = predictions[predictions.split == "validation"]
    y = validation.y_true.to_numpy()
    expected = validation.y_prob.copy()
    for fit_rows, scored_rows in StratifiedKFold(4, shuffle=True, random_state=0).split(y, y):
        fitted = validation.iloc[fit_rows]
        recalibrator = fit_recalibrator(fitted.y_true, fitted.y_prob, "platt")
        expected.iloc[scored_rows] = recalibrator.apply(validation.y_prob.iloc[scored_rows])
    np.testing.assert_allclose(shown.y_prob, expected)
    # fitted in sample, Platt would score slope exactly 1 on validation; out of fold it need not
    assert not np.allclose(shown.y_prob, validation.y_prob)


def test_test_figures_only_for_the_method_in_force():
    predictions = validation_and_test()
    assert method_in_force({"evaluate_config": {"recalibration": "isotonic"}}, predictions) == (
        "isotonic"
    )
    external = predictions.assign(split="external")
    assert method_in_force({"evaluate_config": {"recalibration": "platt"}}, external) == "none"
    assert recalibration_choice(external)["summary"].empty


def test_summary_shows_intercept_and_slope_cis_when_computed():
    raw = frame([0, 0, 1, 1, 0, 1], [0.1, 0.4, 0.35, 0.8, 0.3, 0.6])
    summary = calibration_view(raw, raw, "none", "uniform")["summary"]
    assert {"intercept 95% CI", "slope 95% CI"} <= set(summary.columns)
