"""Survival probabilities at the horizons of a survival run's predictions: baselines fitted on
each fold's validation rows only, the threshold on P(death) fitted there, and the held-out
calibration as lifelines computes it from the written columns."""

import numpy as np
import pandas as pd
import pytest

from nsclc_engine.evaluate.config import EvaluateConfig
from nsclc_engine.evaluate.survival import (
    baselines_of,
    evaluate_survival_probabilities,
    fit_horizon_threshold,
    outcome_of,
    survival_at,
)
from nsclc_engine.stats.survival_calibration import smoothed_calibration
from nsclc_engine.stats.survival_probability import fit_baseline, horizon_counts

CONFIG = EvaluateConfig(bootstrap_resamples=50, horizons_days=(730.0,))


def predictions(seed: int, folds: int = 1, n: int = 400, shift: float = 3.0) -> pd.DataFrame:
    """A Cox-exponential cohort scored by the true risk, plus ``shift`` per fold: k-fold
    models whose risks have different locations, as Cox networks' do."""
    rng = np.random.default_rng(seed)
    frames = []
    for fold in range(folds):
        x = rng.normal(size=n)
        death = rng.exponential(600 * np.exp(-0.8 * x))
        censor = rng.uniform(100, 2000, n)
        split = ["train"] * (n // 2) + ["validation"] * (n // 4) + ["test"] * (n - n // 2 - n // 4)
        frames.append(
            pd.DataFrame(
                {
                    "patient_id": [f"P{i:03d}" for i in range(n)],
                    "split": split,
                    "fold": fold,
                    "risk": 0.8 * x + shift * fold,
                    "time_days": np.ceil(np.minimum(death, censor)),
                    "event": (death <= censor).astype(int),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def test_k_fold_probabilities_use_each_folds_own_baseline():
    """Three fold models whose risks differ by 3 in location: under each fold's own baseline
    the pooled test probabilities are calibrated; under one baseline for all they are not."""
    table = predictions(0, folds=3)
    block, saved, written = evaluate_survival_probabilities(table, CONFIG)
    # 100 validation patients a fold: each baseline's S(730) is known to about +-0.05
    assert block["raw"]["730d"]["smoothed"]["ici"] < 0.1
    assert block["raw"]["d_calibration"]["p_value"] > 0.01
    test = written[written.split == "test"]
    one = {fold: baselines_of(saved)[0] for fold in range(3)}
    p_one = 1 - survival_at(test, one, 730.0)
    pooled = smoothed_calibration(p_one, test.time_days, test.event, 730.0)
    assert pooled["ici"] > 2 * block["raw"]["730d"]["smoothed"]["ici"]
    # the written column is S(730) of each row under its fold's baseline
    for fold, rows in written.groupby("fold"):
        expected = baselines_of(saved)[fold].survival(rows.risk, [730.0])[:, 0]
        np.testing.assert_allclose(rows.survival_730d, expected)


def test_baselines_and_threshold_never_read_test_outcomes():
    table = predictions(1)
    block, saved, written = evaluate_survival_probabilities(table, CONFIG)
    scrambled = table.copy()
    test = scrambled.split == "test"
    scrambled.loc[test, "time_days"] = scrambled.loc[test, "time_days"].to_numpy()[::-1]
    scrambled.loc[test, "event"] = 1 - scrambled.loc[test, "event"]
    again, saved_again, written_again = evaluate_survival_probabilities(scrambled, CONFIG)
    assert saved_again == saved
    np.testing.assert_array_equal(written_again.survival_730d, written.survival_730d)
    assert again["threshold"]["thresholds"] == block["threshold"]["thresholds"]
    # the baseline is Breslow's on the validation rows
    validation = table[table.split == "validation"]
    expected = fit_baseline(validation.time_days, validation.event, validation.risk)
    np.testing.assert_allclose(baselines_of(saved)[0].cumulative_hazard, expected.cumulative_hazard)


def test_threshold_is_youden_on_validation_and_test_is_called_at_it():
    table = predictions(2, folds=2)
    block, _, written = evaluate_survival_probabilities(table, CONFIG)
    threshold = block["threshold"]
    assert threshold["horizon_days"] == 730.0
    cut = {}
    for fold, rows in written[written.split == "validation"].groupby("fold"):
        p = 1 - rows.survival_730d.to_numpy()
        outcome = outcome_of(written, rows, 730.0)
        # Youden's J by brute force over the predicted values
        best = max(
            np.unique(p),
            key=lambda c: (
                (outcome.weight * outcome.case * (p >= c)).sum()
                / (outcome.weight * outcome.case).sum()
                + (outcome.control * (p < c)).sum() / outcome.control.sum(),
                c,
            ),
        )
        assert fit_horizon_threshold(outcome, p) == pytest.approx(best)
        cut[fold] = best
    assert {e["fold"]: e["threshold"] for e in threshold["thresholds"]} == pytest.approx(cut)
    test = written[written.split == "test"]
    counts = horizon_counts(
        outcome_of(written, test, 730.0), 1 - test.survival_730d, test.fold.map(cut).to_numpy()
    )
    assert threshold["held_out"]["counts"] == counts


def test_ici_in_metrics_equals_lifelines_on_the_written_column():
    """The issue's check: lifelines' survival_probability_calibration on predictions.csv's
    survival_730d column (times in years: lifelines' own optimiser does not converge from its
    start in days) matches the ICI in the metrics within 0.01 (here: 0.003)."""
    import matplotlib

    matplotlib.use("Agg")
    from lifelines.calibration import survival_probability_calibration
    from lifelines.utils import CensoringType

    table = predictions(3)
    block, _, written = evaluate_survival_probabilities(table, CONFIG)
    test = written[written.split == "test"].reset_index(drop=True)

    class WrittenColumn:
        """The one thing lifelines asks of a model: its survival function at t0."""

        duration_col, event_col = "years", "event"
        _censoring_type = CensoringType.RIGHT

        def predict_survival_function(self, df, times):
            return pd.DataFrame([df.survival_730d.to_numpy()], index=list(times))

    frame = test.assign(years=test.time_days / 365.25)
    _, ici, e50 = survival_probability_calibration(WrittenColumn(), frame, t0=730 / 365.25)
    assert block["raw"]["730d"]["smoothed"]["ici"] == pytest.approx(ici, abs=3e-3)
    assert block["raw"]["730d"]["smoothed"]["e50"] == pytest.approx(e50, abs=3e-3)
