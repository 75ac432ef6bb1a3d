"""The figure builders draw the numbers they are given: each trace's data is checked against
its input (a figure that plotted the wrong array would still render)."""

import numpy as np
import pytest

from nsclc_engine.evaluate.figures import (
    confusion_matrix_figure,
    covariate_by_class_figure,
    decision_curve_figure,
    kaplan_meier_figure,
    outcome_histogram_figure,
    pr_figure,
    probability_histogram_figure,
    reliability_figure,
    roc_figure,
    training_curves_figure,
)
from nsclc_engine.stats.calibration import (
    decision_curve,
    probability_histograms,
    reliability_curve,
)
from nsclc_engine.stats.survival import kaplan_meier


def by_name(figure) -> dict:
    return {trace.name: trace for trace in figure.data}


def test_roc_traces_carry_the_curves_and_operating_points():
    curve = {"name": "test", "fpr": [0.0, 0.0, 0.5, 1.0], "tpr": [0.0, 0.5, 1.0, 1.0], "auc": 0.875}
    figure = roc_figure([curve], [{"name": "threshold 0.40", "fpr": 0.5, "tpr": 1.0}])
    traces = by_name(figure)
    assert list(traces) == ["chance", "test (AUC 0.875)", "threshold 0.40"]
    assert (traces["chance"].x, traces["chance"].y) == ((0, 1), (0, 1))
    assert traces["test (AUC 0.875)"].x == tuple(curve["fpr"])
    assert traces["test (AUC 0.875)"].y == tuple(curve["tpr"])
    assert (traces["threshold 0.40"].x, traces["threshold 0.40"].y) == ((0.5,), (1.0,))
    assert figure.layout.xaxis.title.text == "1 - specificity"


def test_pr_traces_carry_the_curve_and_the_prevalence_line():
    curve = {"name": "test", "recall": [0.0, 0.5, 1.0], "precision": [1.0, 1.0, 0.5], "ap": 0.75}
    figure = pr_figure([curve], prevalence=0.3)
    reference, drawn = figure.data
    assert reference.name == "prevalence 0.30" and reference.y == (0.3, 0.3)
    assert (drawn.x, drawn.y) == ((0.0, 0.5, 1.0), (1.0, 1.0, 0.5))
    assert drawn.name == "test (AP 0.750)" and drawn.line.shape == "vh"
    assert len(pr_figure([curve]).data) == 1  # no prevalence, no reference line


def test_confusion_matrix_cells_are_row_shares_labelled_with_counts():
    metrics = {"tn": 3, "fp": 1, "fn": 2, "tp": 6, "threshold": 0.4}
    heatmap = confusion_matrix_figure(metrics).data[0]
    np.testing.assert_allclose(heatmap.z, [[3 / 4, 1 / 4], [2 / 8, 6 / 8]])
    assert [[cell.split("<br>")[0] for cell in row] for row in heatmap.text] == [
        ["3", "1"],
        ["2", "6"],
    ]
    assert heatmap.text[1][1] == "6<br>75% of row"
    assert heatmap.y == ("true negative (0)", "true positive (1)")
    assert heatmap.x == ("predicted negative (0)", "predicted positive (1)")
    assert confusion_matrix_figure(metrics).layout.title.text == "Confusion matrix at 0.400"


def test_confusion_matrix_with_an_empty_row_shows_zero_shares():
    heatmap = confusion_matrix_figure({"tn": 0, "fp": 0, "fn": 1, "tp": 3}).data[0]
    np.testing.assert_allclose(heatmap.z, [[0, 0], [1 / 4, 3 / 4]])  # not NaN


def test_probability_histogram_bars_are_the_class_counts():
    y = np.array([0, 0, 1, 1, 1])
    p = np.array([0.1, 0.6, 0.7, 0.8, 0.2])
    figure = probability_histogram_figure(probability_histograms(y, p, n_bins=2), threshold=0.5)
    negatives, positives = figure.data
    np.testing.assert_allclose(negatives.x, [0.25, 0.75])  # the bin centres
    np.testing.assert_array_equal(negatives.y, [1, 1])
    np.testing.assert_array_equal(positives.y, [1, 2])
    assert figure.layout.shapes[0].x0 == 0.5  # the threshold line


def test_outcome_histogram_bars_are_each_groups_counts():
    counts = {"died by day 730": [3, 1], "alive at day 730": [0, 4], "censored before": [1, 1]}
    figure = outcome_histogram_figure([0.0, 0.5, 1.0], counts, threshold=0.4, horizon_days=730)
    assert [bar.name for bar in figure.data] == list(counts)
    np.testing.assert_allclose(figure.data[0].x, [0.25, 0.75])
    for bar, values in zip(figure.data, counts.values(), strict=True):
        np.testing.assert_array_equal(bar.y, values)
    assert figure.layout.shapes[0].x0 == 0.4
    assert "day 730" in figure.layout.title.text


def test_reliability_points_and_error_bars_come_from_the_curve():
    y = np.array([0, 0, 1, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.6, 0.8, 0.9])
    curve = reliability_curve(y, p, n_bins=2)
    perfect, drawn = reliability_figure({"model": curve}).data
    assert perfect.x == perfect.y == (0, 1)
    # bin [0, 0.5): 0.1 0.2 0.3, one positive; bin [0.5, 1]: 0.6 0.8 0.9, two positives
    np.testing.assert_allclose(drawn.x, [0.2, 2.3 / 3])
    np.testing.assert_allclose(drawn.y, [1 / 3, 2 / 3])
    np.testing.assert_allclose(drawn.error_y.array, curve["observed_ci_high"] - curve["observed"])
    np.testing.assert_allclose(
        drawn.error_y.arrayminus, curve["observed"] - curve["observed_ci_low"]
    )
    np.testing.assert_array_equal(drawn.customdata, [3, 3])


def test_decision_curve_traces_carry_the_net_benefits():
    curve = decision_curve([1, 1, 0, 0], [0.9, 0.6, 0.4, 0.1], thresholds=[0.2, 0.5])
    traces = by_name(decision_curve_figure({"model": curve}))
    assert list(traces) == ["treat all", "treat none", "model"]
    np.testing.assert_allclose(traces["model"].y, [0.5 - 0.25 * 0.25, 0.5])
    np.testing.assert_allclose(traces["treat all"].y, [0.5 - 0.5 * 0.25, 0.0])
    np.testing.assert_array_equal(traces["treat none"].y, [0, 0])
    np.testing.assert_allclose(traces["model"].x, [0.2, 0.5])


def test_training_curves_have_one_line_set_per_fold():
    history = [
        {"fold": fold, "epoch": epoch, "train_loss": 1.0 / epoch, "val_loss": 2.0 / epoch}
        | {"val_auc": 0.5 + fold / 10 + epoch / 100}
        for fold in (0, 1)
        for epoch in (1, 2)
    ]
    traces = by_name(training_curves_figure(history))
    assert traces["train loss (fold 1)"].x == (1, 2)
    assert traces["validation loss (fold 0)"].y == (2.0, 1.0)
    assert traces["validation AUC (fold 1)"].y == pytest.approx((0.61, 0.62))
    assert len(traces) == 6


def test_covariate_boxes_leave_missing_values_out():
    figure = covariate_by_class_figure([1.0, np.nan, 3.0, 4.0, 5.0], [0, 0, 0, 1, 1], "age")
    negatives, positives = figure.data
    assert (negatives.name, positives.name) == ("negative (0) (n=2)", "positive (1) (n=2)")
    np.testing.assert_array_equal(negatives.y, [1.0, 3.0])
    np.testing.assert_array_equal(positives.y, [4.0, 5.0])


def test_kaplan_meier_steps_and_numbers_at_risk():
    km = kaplan_meier([1, 2, 3, 3, 5], [1, 0, 1, 1, 0])
    figure = kaplan_meier_figure({"all": km}, {"p_value": 0.01}, tick_days=[0, 2, 4])
    steps, at_risk = figure.data
    # the curve starts at 1 on day 0: 4/5 after day 1, then 4/5 * 1/3 after day 3
    np.testing.assert_allclose(steps.x, [0, 1, 2, 3, 5])
    np.testing.assert_allclose(steps.y, [1, 0.8, 0.8, 0.8 / 3, 0.8 / 3])
    assert steps.line.shape == "hv"
    assert at_risk.text == ("5", "4", "1") and at_risk.y == ("all", "all", "all")
    np.testing.assert_array_equal(at_risk.x, [0, 2, 4])
    assert "p = 0.01" in figure.layout.title.text
