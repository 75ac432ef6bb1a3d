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
from nsclc_engine.dashboard.run_view import RunView
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
    isotonic = {"evaluate_config": {"recalibration": "isotonic"}}
    assert method_in_force(RunView("r", None, {}, {}, predictions, isotonic)) == "isotonic"
    external = predictions.assign(split="external")
    platt = {"evaluate_config": {"recalibration": "platt"}}
    assert method_in_force(RunView("r", None, {}, {}, external, platt)) == "none"
    assert method_in_force(RunView("r", None, {}, {}, predictions)) == "none"  # not evaluated
    assert recalibration_choice(external)["summary"].empty


def test_summary_shows_intercept_and_slope_cis_when_computed():
    raw = frame([0, 0, 1, 1, 0, 1], [0.1, 0.4, 0.35, 0.8, 0.3, 0.6])
    summary = calibration_view(raw, raw, "none", "uniform")["summary"]
    assert {"intercept 95% CI", "slope 95% CI"} <= set(summary.columns)


# --- survival runs -------------------------------------------------------------------------

SURVIVAL_BLOCKS = ("n", "n_deaths_by_horizon", "n_censored_before_horizon", "mean_predicted")
SURVIVAL_BLOCKS += ("smoothed", "groups", "in_the_large")


def assert_close(actual, expected, where="", rel=1e-9):
    """Nested dicts and lists of numbers equal to ``rel`` (pytest.approx takes flat ones)."""
    if isinstance(expected, dict):
        assert set(actual) == set(expected), where
        for key in expected:
            assert_close(actual[key], expected[key], f"{where}.{key}", rel)
    elif isinstance(expected, list | tuple | np.ndarray):
        assert len(actual) == len(expected), where
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_close(a, e, f"{where}[{i}]", rel)
    elif isinstance(expected, float | np.floating):
        assert actual == pytest.approx(expected, rel=rel, nan_ok=True), where
    else:
        assert actual == expected, where


def test_survival_held_out_calibration_is_the_one_in_metrics_json(survival_view):
    from nsclc_engine.dashboard.calibration import survival_calibration_state
    from nsclc_engine.dashboard.survival_probabilities import survival_options

    saved = survival_view.metrics["horizons"]
    options = survival_options(survival_view)
    assert options["horizons"] == saved["horizons_days"] and options["default"] == 730.0
    assert options["kinds"] == ["raw", "recalibrated"] and options["parts"] == [
        "validation",
        "test",
    ]
    shown = survival_calibration_state(survival_view, "test", 730.0, "raw")
    assert shown["from_metrics"]
    # recomputed with the evaluation's resamples and seed, number for number
    resamples = survival_view.metrics["evaluate_config"]["bootstrap_resamples"]
    fresh = survival_calibration_state(survival_view, "test", 730.0, "raw", resamples)
    assert "from_metrics" not in fresh
    for name in SURVIVAL_BLOCKS:
        assert name in saved["raw"]["730d"], name
        assert_close(fresh[name], saved["raw"]["730d"][name], name)
        assert shown[name] == saved["raw"]["730d"][name], name
    assert_close(fresh["d_calibration"], saved["raw"]["d_calibration"])
    assert shown["d_calibration"] == fresh["d_calibration"]


def test_survival_calibration_at_any_horizon_equals_its_functions(survival_view):
    from nsclc_engine.dashboard.calibration import survival_calibration_state
    from nsclc_engine.runs import read_survival_baselines
    from nsclc_engine.stats.survival_calibration import (
        calibration_in_the_large,
        d_calibration,
        observed_by_group,
        smoothed_calibration,
    )
    from nsclc_engine.stats.survival_probability import Baseline

    state = survival_calibration_state(survival_view, "validation", 500.0, "recalibrated", 20)
    baseline = Baseline.from_dict(read_survival_baselines(survival_view.run_dir)[0]["recalibrated"])
    rows = survival_view.predictions[survival_view.predictions.split == "validation"]
    time, event = rows.time_days.to_numpy(), rows.event.to_numpy()
    p = 1 - baseline.survival(rows.risk, [500.0])[:, 0]  # one fold: its baseline, by hand
    assert state["mean_predicted"] == pytest.approx(p.mean())
    assert_close(state["groups"], observed_by_group(p, time, event, 500.0))
    if "smoothed" in state:  # needs three deaths among the tiny run's validation patients
        expected = smoothed_calibration(p, time, event, 500.0, 20, 0)
        expected.pop("observed")
        assert_close(state["smoothed"], expected)
    assert_close(state["in_the_large"], calibration_in_the_large(p, time, event, 500.0, 20))
    own = baseline.survival_at_own_times(rows.risk, time)
    assert_close(state["d_calibration"], d_calibration(own, event))
    assert any("in-sample" in note for note in state["notes"])  # fitted on these patients
    beyond = survival_calibration_state(survival_view, "test", 5000.0, "raw", 20)
    assert any("carried flat" in note for note in beyond["notes"])


def survival_run(columns: bool = True, n: int = 60, seed: int = 0):
    """An external-like survival run: no baselines saved, S(730 d) in a column (or not)."""

    rng = np.random.default_rng(seed)
    risk = rng.normal(size=n)
    death = rng.exponential(700 * np.exp(-risk))
    follow = rng.uniform(200, 2000, n)
    frame = pd.DataFrame(
        {
            "patient_id": [f"P{i}" for i in range(n)],
            "split": "external",
            "fold": 0,
            "risk": risk,
            "time_days": np.ceil(np.minimum(death, follow)),
            "event": (death <= follow).astype(int),
        }
    )
    if columns:
        frame["survival_730d"] = np.exp(-730 / (700 * np.exp(-risk)))
    config = {"task": "survival", "kind": "external"}
    return RunView("ext", None, config, {"state": "finished"}, frame)


def test_survival_calibration_from_a_column_and_the_runs_that_have_none():
    from nsclc_engine.dashboard.calibration import survival_calibration_state, why_no_calibration
    from nsclc_engine.dashboard.survival_probabilities import survival_options
    from nsclc_engine.stats.survival_calibration import observed_by_group

    run = survival_run()
    assert why_no_calibration(run) == ""
    options = survival_options(run)
    assert options["horizons"] == [730.0] and not options["any_horizon"]
    assert options["kinds"] == ["raw"] and options["parts"] == ["external"]
    state = survival_calibration_state(run, "external", 730.0, "raw", 10)
    p = 1 - run.predictions.survival_730d.to_numpy()
    expected = observed_by_group(p, run.predictions.time_days, run.predictions.event, 730.0)
    assert state["groups"] == expected and state["source"] == "column survival_730d"
    assert "whole predicted survival curve" in state["d_calibration_note"]
    assert "no raw baseline" not in str(state)
    assert "note" in survival_calibration_state(run, "external", 365.0, "raw", 10)
    assert (
        "recalibrated baseline"
        in survival_calibration_state(run, "external", 730.0, "recalibrated")["note"]
    )
    bare = survival_run(columns=False)
    assert "no survival probabilities" in why_no_calibration(bare)
    with pytest.raises(ValueError, match="choose from"):
        survival_calibration_state(run, "external", 730.0, "isotonic")
    with pytest.raises(ValueError, match="no test predictions"):
        survival_calibration_state(run, "test", 730.0, "raw")


def test_survival_calibration_sentences():
    from nsclc_engine.dashboard.calibration import in_the_large_text
    from nsclc_engine.dashboard.survival_probabilities import horizon_label

    assert [horizon_label(d) for d in (365, 730, 500)] == ["1 year", "2 years", "500 days"]
    block = {
        "horizon_days": 730.0,
        "observed": 0.75,
        "predicted": 0.35,
        "difference": 0.40,
        "difference_ci": [0.02, 0.65],
        "ratio": 2.14,
        "ratio_ci": [1.06, 2.84],
    }
    text = in_the_large_text(block)
    assert text.startswith("By 2 years, 75 % died (Kaplan-Meier) against 35 % predicted")
    assert "underestimates deaths" in text and "+40 points, 95 % CI +2 to +65 points" in text
    assert "no clear" in in_the_large_text(block | {"difference_ci": [-0.1, 0.65]})
    assert "overestimates" in in_the_large_text(block | {"difference_ci": [-0.3, -0.1]})
