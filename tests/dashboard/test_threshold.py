"""The Threshold page: rules fitted on validation, metrics with patient-level CIs, saving."""

import json

import numpy as np
import pytest

from nsclc_engine.dashboard import run_view
from nsclc_engine.dashboard import runs as runs_view
from nsclc_engine.dashboard import threshold as threshold_view
from nsclc_engine.stats.metrics import choose_threshold, metrics_at_threshold


def test_threshold_state_and_rules_come_from_validation(view):
    validation = view.predictions[view.predictions.split == "validation"]
    rules = threshold_view.rule_thresholds(view.predictions)
    assert rules["Youden J"] == choose_threshold(validation.y_true, validation.y_prob).threshold
    frame = run_view.part_predictions(view.predictions, "validation")
    for threshold in (0.0, float(np.median(frame.y_prob)), 1.0):
        state = threshold_view.threshold_state(frame, threshold, n_resamples=100)
        expected = metrics_at_threshold(frame.y_true, frame.y_prob, threshold)
        assert state["metrics"] == pytest.approx(expected, nan_ok=True)


def test_save_threshold_and_compare_a_run_with_itself(view, tmp_path):
    saved = threshold_view.save_threshold(tmp_path, 0.3, "manual", "validation", "none")
    written = json.loads((tmp_path / "threshold.json").read_text())
    assert written["operating_point"] == saved and written["threshold"] == 0.3
    with pytest.raises(ValueError, match="must lie in"):
        threshold_view.save_threshold(tmp_path, 1.5, "manual", "validation", "none")
    with pytest.raises(ValueError, match="validation"):
        threshold_view.save_threshold(tmp_path, 0.3, "manual", "test", "none")
    # evaluation rewriting its fitted thresholds keeps the saved operating point
    from nsclc_engine.evaluate.run import write_threshold_file

    kept = write_threshold_file(tmp_path, fitted={"thresholds": [{"threshold": 0.7}]})
    assert kept["threshold"] == 0.3 and kept["operating_point"] == saved
    comparison = runs_view.compare_runs(view, view)
    if comparison["delong"] is not None:
        assert comparison["delong"]["difference"] == 0
    assert len(comparison["table"]) == 4


def test_threshold_ci_draws_patients_when_pooled_rows_repeat_them(view):
    """Pooled k-fold validation rows repeat patients; a row bootstrap made the CIs too narrow."""
    once = run_view.part_predictions(view.predictions, "validation").sort_values("patient_id")
    repeated = once.loc[once.index.repeat(3)]
    state_once = threshold_view.threshold_state(once, 0.5, n_resamples=300)
    state_repeated = threshold_view.threshold_state(repeated, 0.5, n_resamples=300)
    for key in ("sensitivity", "specificity"):
        assert state_repeated["ci"][key] == pytest.approx(state_once["ci"][key])


def test_operating_point_sits_at_one_minus_specificity():
    point = threshold_view.operating_point(
        {"specificity": 0.75, "sensitivity": 0.6, "precision": 0.5}, 0.4
    )
    assert point == {
        "name": "threshold 0.400",
        "fpr": 0.25,
        "tpr": 0.6,
        "recall": 0.6,
        "precision": 0.5,
    }


def test_each_confusion_cell_lists_exactly_the_patients_it_counts(view):
    frame = run_view.part_predictions(view.predictions, "validation", "none")
    for threshold in (0.0, float(np.median(frame.y_prob)), 1.0):
        cells = threshold_view.cell_patients(frame, threshold)
        counts = metrics_at_threshold(frame.y_true, frame.y_prob, threshold)
        for cell in ("TP", "FP", "FN", "TN"):
            assert len(cells[cell]) == counts[cell.lower()], (threshold, cell)
        everyone = sorted(p for rows in cells.values() for p in rows.patient_id)
        assert everyone == sorted(frame.patient_id)
        assert (cells["FN"].y_true == 1).all() and (cells["FN"].y_prob < threshold).all()
        assert cells["FP"].y_prob.is_monotonic_decreasing  # the most confident mistake first


def test_the_page_opens_a_k_fold_run_on_recalibrated_probabilities():
    from nsclc_engine.dashboard.threshold import default_scale

    assert default_scale({}, 3) == "platt"  # several models' rows: comparable after each fold's fit
    assert default_scale({}, 0) is None and default_scale({}, 1) is None
    assert default_scale({"recalibration": "isotonic"}, 3) == "isotonic"  # the saved point's
