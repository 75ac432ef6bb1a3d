"""report.html says what its numbers are: the decision curve of the recalibrated probabilities
(oracle: statsmodels' logistic fit and net benefit by hand), in-sample and optimistic splits
marked, calibration with CIs, TRIPOD's sample size as patients and events, Holm beside DeLong,
and the survival report's shuffled-labels flag and warnings."""

import numpy as np
import pandas as pd
import pytest

from nsclc_engine.evaluate import figures, report
from nsclc_engine.evaluate.classification import evaluate_predictions
from nsclc_engine.evaluate.config import EvaluateConfig
from nsclc_engine.evaluate.report_tables import (
    baseline_rows,
    calibration_rows,
    sample_size_table,
    tripod_table,
)

FAST = EvaluateConfig(bootstrap_resamples=100, recalibration="platt")


def overconfident_predictions(n=300, folds=1, seed=0) -> pd.DataFrame:
    """Probabilities far too low and too extreme (as the demo's: slope ~0.37, in-the-large
    ~-1.4), so raw and recalibrated net benefit differ."""
    rng = np.random.default_rng(seed)
    truth = rng.normal(0, 1.2, n)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-truth))).astype(int)
    p = 1 / (1 + np.exp(-(2.7 * truth - 3.0)))
    frames = []
    for fold in range(folds):
        parts = np.array(["train"] * n, dtype=object)
        step = max(folds, 3)
        parts[np.arange(n) % step == fold] = "test"
        parts[np.arange(n) % step == (fold + 1) % step] = "validation"
        frames.append(
            pd.DataFrame(
                {
                    "patient_id": [f"P{i:03d}" for i in range(n)],
                    "split": parts,
                    "fold": fold,
                    "y_true": y,
                    "y_prob": np.clip(p, 1e-6, 1 - 1e-6),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def net_benefit(y, p, pt):
    called = p >= pt
    n = len(y)
    return np.sum(called & (y == 1)) / n - np.sum(called & (y == 0)) / n * pt / (1 - pt)


def rendered(tmp_path, predictions, monkeypatch, baselines=None):
    """render_report on ``predictions``, with the curves handed to the decision-curve figure."""
    results = evaluate_predictions(predictions, FAST, baselines)
    metrics = results["metrics"] | {
        "label": "os_2y",
        "positive_class": "1 = died within 2 years",
        "shuffled_labels": False,
    }
    drawn = {}
    original = figures.decision_curve_figure

    def spy(curves):
        drawn.update(curves)
        return original(curves)

    monkeypatch.setattr(figures, "decision_curve_figure", spy)
    run_dir = tmp_path / "r1"
    run_dir.mkdir()
    page = report.render_report(
        run_dir, {"preset": "demo"}, metrics, results, predictions, baselines or {}
    )
    return page, drawn, results


def test_decision_curve_draws_the_validation_fitted_recalibrated_probabilities(
    tmp_path, monkeypatch
):
    sm = pytest.importorskip("statsmodels.api")
    predictions = overconfident_predictions()
    page, drawn, _ = rendered(tmp_path, predictions, monkeypatch)
    [name] = drawn
    assert "recalibrated (platt, fitted on validation)" in name
    # oracle: Platt = logistic regression of the validation outcome on the validation logit
    validation = predictions[predictions.split == "validation"]
    test = predictions[predictions.split == "test"]
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    fit = sm.Logit(validation.y_true, sm.add_constant(logit(validation.y_prob))).fit(disp=0)
    a, b = fit.params
    recalibrated = 1 / (1 + np.exp(-(a + b * logit(test.y_prob.to_numpy()))))
    curve = drawn[name]
    at = int(np.argmin(np.abs(curve["threshold"] - 0.7)))
    expected = net_benefit(test.y_true.to_numpy(), recalibrated, curve["threshold"][at])
    assert curve["model"][at] == pytest.approx(expected, abs=1e-3)
    raw = net_benefit(test.y_true.to_numpy(), test.y_prob.to_numpy(), curve["threshold"][at])
    assert abs(raw - expected) > 0.02  # the raw curve, drawn before, reads differently
    assert "Net benefit of the recalibrated probabilities" in page


def test_k_fold_decision_curve_uses_each_folds_recalibrator(tmp_path, monkeypatch):
    predictions = overconfident_predictions(folds=3)
    _, drawn, results = rendered(tmp_path, predictions, monkeypatch)
    [curve] = drawn.values()
    test = predictions[predictions.split == "test"]
    expected = net_benefit(test.y_true.to_numpy(), results["recalibrated"][test.index], 0.3)
    at = int(np.argmin(np.abs(curve["threshold"] - 0.3)))
    assert curve["model"][at] == pytest.approx(expected)


def test_no_recalibration_is_labelled_raw(tmp_path):
    predictions = overconfident_predictions()
    test = predictions[predictions.split == "test"]
    curves = report.report_decision_curves(
        test, test.y_prob, [{"method": "none"}], {}, "test", "image model"
    )
    assert list(curves) == ["image model (raw probabilities: no recalibration in force)"]


def test_train_is_in_sample_validation_optimistic_test_held_out(tmp_path, monkeypatch):
    page, _, _ = rendered(tmp_path, overconfident_predictions(), monkeypatch)
    for words in (
        "in-sample: the model was fitted on these patients",
        "optimistic: the best epoch",
        "held out: no choice was made on these patients",
    ):
        assert words in page, words


def test_calibration_slope_and_intercept_carry_their_ci_or_say_none_was_computed():
    block = {"brier": 0.2, "ece": 0.1, "intercept": -1.447, "slope": 0.367}
    with_ci = block | {"intercept_ci": [-1.8, -1.1], "slope_ci": [0.2, 0.534]}
    rows = calibration_rows({"raw": with_ci, "recalibrated": block})
    assert rows[0]["slope (95% CI)"] == "0.367 (0.200 to 0.534)"
    assert rows[0]["intercept (95% CI)"] == "-1.447 (-1.800 to -1.100)"
    assert rows[1]["slope (95% CI)"] == "0.367 (CI not computed)"
    nan = block | {"slope": float("nan")}
    assert calibration_rows({"raw": nan, "recalibrated": nan})[0]["slope (95% CI)"] == (
        "not estimable"
    )


def test_tripod_sample_size_is_patients_and_events_per_split(tmp_path, monkeypatch):
    predictions = overconfident_predictions()
    page, _, _ = rendered(tmp_path, predictions, monkeypatch)
    sizes = sample_size_table(predictions).set_index("split")
    for part in ("train", "validation", "test"):
        rows = predictions[predictions.split == part]
        assert sizes.loc[part, "patients"] == len(rows)
        assert sizes.loc[part, "events"] == rows.y_true.sum()
    answer = tripod_table("X").set_index("item").loc["Sample size and missing data"].iloc[0]
    assert answer == "X"
    total = predictions.y_true.sum()
    test = predictions[predictions.split == "test"]
    assert f"300 patients, {total} events (os_2y: 1 = died within 2 years)" in page
    assert f"test {len(test)} ({test.y_true.sum()} events)" in page


def test_k_fold_sample_size_counts_each_patient_once_per_part():
    predictions = overconfident_predictions(n=60, folds=3)
    sizes = sample_size_table(predictions)
    pooled = sizes[sizes.fold == "all (out of fold)"].iloc[0]
    assert (
        pooled.patients == 60
        and pooled.events == predictions.drop_duplicates("patient_id").y_true.sum()
    )
    assert sizes.iloc[-1].split == "all patients" and sizes.iloc[-1].patients == 60
    fold1 = sizes[(sizes.fold == 1) & (sizes.split == "validation")].iloc[0]
    assert fold1.patients == 20


def test_baseline_p_values_are_holm_adjusted_over_the_baselines_tested():
    def entry(p):
        delong = {"difference": 0.1, "ci_low": 0.0, "ci_high": 0.2, "p_value": p}
        return {"test": {"auc": {"value": 0.6, "ci_low": 0.5, "ci_high": 0.7}}} | {
            "delong_image_vs_baseline": delong
        }

    metrics = {"baselines": {"clinical": entry(0.02), "volume": entry(0.03), "none": {}}}
    rows = {r["model"]: r for r in baseline_rows(metrics, "test")}
    assert rows["clinical baseline"]["p (DeLong)"] == "0.020"
    assert rows["clinical baseline"]["p (Holm, 2 tests)"] == "0.040"
    assert rows["volume baseline"]["p (Holm, 2 tests)"] == "0.040"
    assert "p (Holm, 2 tests)" not in rows["none baseline"]


def survival_metrics(**extra) -> dict:
    c = {"c_index": 0.6, "ci_low": 0.5, "ci_high": 0.7}
    splits = {
        "train": {"n": 50, "n_events": 30, "c_index": c},
        "validation": {"n": 20, "n_events": 12, "c_index": c},
        "test": {"n": 20, "n_events": 11, "c_index": c},
    }
    return {"splits": splits, "folds": [], "shuffled_labels": False} | extra


def test_survival_report_shows_the_shuffled_flag_warnings_and_sample_size():
    plain = report.render_survival_report("s1", survival_metrics())
    assert "Labels shuffled" not in plain
    assert "train 50 patients, 30 events" in plain and "90 patients, 53 events" in plain
    assert "in-sample" in plain and "optimistic" in plain
    flagged = report.render_survival_report(
        "s1",
        survival_metrics(shuffled_labels=True, warnings=["baselines and fusion skipped: x<y"]),
    )
    assert "Labels shuffled (negative control)" in flagged
    assert "baselines and fusion skipped: x&lt;y" in flagged


def test_survival_paired_differences_are_holm_adjusted():
    comparisons = [
        {"a": "image", "b": m, "difference": 0.05, "ci_low": 0.0, "ci_high": 0.1, "p_value": p}
        for m, p in (("clinical", 0.01), ("volume", 0.04), ("fusion", 0.02))
    ]
    models = {"c_index": {}, "description": {}, "folds": [], "comparisons": comparisons}
    page = report.render_survival_report("s1", survival_metrics(models=models))
    assert "p (Holm, 3 tests)" in page and "3 paired comparisons shown together" in page
    assert "<td>0.030</td>" in page  # 3 x 0.01, shown beside the raw 0.010
