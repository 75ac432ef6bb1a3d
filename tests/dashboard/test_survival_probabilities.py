"""P(death by a horizon) as every survival page shows it: which saved baselines apply to which
run, and the Threshold and Calibration pages giving the same probabilities."""

from dataclasses import replace

import pytest

from nsclc_engine.dashboard.calibration import survival_calibration_state
from nsclc_engine.dashboard.survival_probabilities import (
    death_probability,
    fold_baselines,
    survival_options,
)
from nsclc_engine.dashboard.threshold import survival_threshold_state
from nsclc_engine.runs import read_survival_baselines, write_survival_baselines
from nsclc_engine.stats.survival_probability import Baseline


def external_of(survival_view, run_dir):
    """The one-split fixture's test patients as an external run of it, reading the baselines
    in ``run_dir`` (the fixture's own folder holds what validation copies: its frozen ones)."""
    predictions = survival_view.predictions
    rows = predictions[predictions.split == "test"].assign(split="external")
    config = survival_view.config | {"kind": "external"}
    return replace(survival_view, run_dir=run_dir, config=config, predictions=rows, threshold={})


def test_an_external_run_of_a_one_split_source_uses_its_frozen_baseline(survival_view, tmp_path):
    external = external_of(survival_view, survival_view.run_dir)
    rows = external.predictions
    saved = read_survival_baselines(survival_view.run_dir)
    baseline = Baseline.from_dict(saved[0]["raw"])
    expected = 1 - baseline.survival(rows.risk.to_numpy(), [1000.0])[:, 0]  # by hand
    p, source = death_probability(external, rows, 1000.0)
    assert p == pytest.approx(expected) and source.startswith("raw baseline")
    options = survival_options(external)
    assert options["any_horizon"] and options["kinds"] == ["raw", "recalibrated"]
    assert options["parts"] == ["external"] and options["follow_up_days"] == baseline.follow_up
    # both pages show these very probabilities
    shown = survival_threshold_state(external, "external", 1000.0, 0.5, n_resamples=10)
    assert shown["patients"].p.to_numpy() == pytest.approx(expected)
    assert shown["follow_up_days"] == baseline.follow_up
    calibration = survival_calibration_state(external, "external", 1000.0, "raw", 10)
    assert calibration["mean_predicted"] == pytest.approx(expected.mean())

    # a k-fold source: its columns hold the mean over the fold models of each one's S(t), so
    # no single fold's baseline applies to the mean risk, and no other horizon is offered
    write_survival_baselines(tmp_path, [saved[0], {**saved[0], "fold": 1}], "validation")
    ensemble = external_of(survival_view, tmp_path)
    assert fold_baselines(ensemble) == {} and not survival_options(ensemble)["any_horizon"]
    p, source = death_probability(ensemble, rows, 730.0)
    assert source == "column survival_730d" and p == pytest.approx(1 - rows.survival_730d)
    p, why = death_probability(ensemble, rows, 1000.0)
    assert p is None and "no survival probability at day 1000" in why
    with pytest.raises(ValueError, match="no survival probability at day 1000"):
        survival_threshold_state(ensemble, "external", 1000.0, 0.5, n_resamples=10)
    assert (
        "no survival probability at day 1000"
        in survival_calibration_state(ensemble, "external", 1000.0, "raw", 10)["note"]
    )


def test_bad_input_is_refused_and_a_trained_runs_baselines_cover_its_folds(survival_view):
    rows = survival_view.predictions
    assert set(fold_baselines(survival_view)) == set(rows.fold)
    with pytest.raises(ValueError, match="choose from"):
        death_probability(survival_view, rows, 730.0, "isotonic")
    with pytest.raises(ValueError, match="positive number of days"):
        death_probability(survival_view, rows, 0.0)
