"""A run as the pages see it: a split's recalibrated predictions and the test verdict."""

import numpy as np
import pytest

from nsclc_engine.dashboard import run_view


def test_recalibrated_test_probabilities_do_not_depend_on_test_labels(view):
    flipped = view.predictions.copy()
    is_test = flipped.split == "test"
    flipped.loc[is_test, "y_true"] = 1 - flipped.loc[is_test, "y_true"]
    a = run_view.part_predictions(view.predictions, "test", "platt")
    b = run_view.part_predictions(flipped, "test", "platt")
    np.testing.assert_allclose(a.y_prob, b.y_prob)


def test_test_verdict_against_the_best_achievable_on_the_same_patients():
    metrics = {
        "splits": {"test": {"auc": {"auc": 0.69, "ci_low": 0.57, "ci_high": 0.80}}},
        "best_achievable": {"splits": {"test": {"n": 84, "eta": 0.742, "eta_image": 0.739}}},
    }
    verdict = run_view.test_verdict(metrics)
    assert verdict["learns"] and verdict["no_leak"]
    assert verdict["share"] == pytest.approx(0.19 / 0.239)
    text = run_view.verdict_text(verdict)
    assert "0.739" in text and "79% of the achievable signal" in text and "leak" not in text
    leak = dict(metrics, splits={"test": {"auc": {"auc": 0.97, "ci_low": 0.93, "ci_high": 1.0}}})
    assert "leak" in run_view.verdict_text(run_view.test_verdict(leak))
    assert run_view.test_verdict({"splits": metrics["splits"]}) == {}  # real data


def test_the_verdict_states_the_shares_ci_and_the_paired_difference():
    paired = {
        "difference": {"value": -0.047, "ci_low": -0.132, "ci_high": 0.030},
        "share": {"value": 0.80, "ci_low": 0.45, "ci_high": 1.15},
    }
    metrics = {
        "splits": {"test": {"auc": {"auc": 0.692, "ci_low": 0.575, "ci_high": 0.799}}},
        "best_achievable": {
            "splits": {"test": {"n": 84, "eta": 0.76, "eta_image": 0.739}},
            "paired": {"test": paired},
        },
    }
    text = run_view.verdict_text(run_view.test_verdict(metrics))
    assert "(95% CI 45%-115%)" in text and "-0.047 (-0.132 to +0.030)" in text
    assert "leak" not in text
    paired["difference"] |= {"value": 0.06, "ci_low": 0.01, "ci_high": 0.11}
    assert "leak" in run_view.verdict_text(run_view.test_verdict(metrics))


def test_training_curves_show_the_c_index_of_a_survival_run(survival_view, view):
    from nsclc_engine.evaluate.figures import training_curves_figure

    figure = training_curves_figure(survival_view.history)
    assert figure.layout.annotations[1].text == "Validation C-index"
    assert list(figure.data[2].y) == [line["val_c_index"] for line in survival_view.history]
    assert training_curves_figure(view.history).layout.annotations[1].text == "Validation AUC"
