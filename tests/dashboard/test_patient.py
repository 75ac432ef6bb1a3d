"""The Patient page: the patients of a split with their calls under the threshold in force."""

import pandas as pd
import pytest

from nsclc_engine.dashboard import patient as patient_view
from nsclc_engine.dashboard import run_view


def _view(predictions: pd.DataFrame, threshold: dict | None = None, task: str = "classification"):
    return run_view.RunView("r", None, {"task": task}, {}, predictions, None, threshold)


def test_patient_table_calls_sorts_errors_first_and_filters():
    predictions = pd.DataFrame(
        {
            "patient_id": [f"P{i}" for i in range(8)],
            "split": ["validation"] * 4 + ["test"] * 4,
            "fold": 0,
            "y_true": [0, 1, 0, 1, 1, 0, 1, 0],
            "y_prob": [0.2, 0.7, 0.4, 0.9, 0.3, 0.8, 0.6, 0.1],
        }
    )
    view = _view(predictions, {"fitted": {"thresholds": [{"fold": 0, "threshold": 0.5}]}})
    table = patient_view.patient_table(view, "test", "platt")
    # P4: 1 called 0 (FN); P5: 0 called 1 (FP); P6: TP; P7: TN
    assert table.patient_id.tolist() == ["P4", "P5", "P6", "P7"]
    assert table.outcome.tolist() == ["FN", "FP", "TP", "TN"]
    assert (table.threshold == 0.5).all()
    assert table.y_prob_recalibrated.between(0, 1).all()
    assert patient_view.patient_table(view, "test", "platt", true_label=1).patient_id.tolist() == [
        "P4",
        "P6",
    ]
    assert patient_view.patient_table(view, "test", "platt", predicted=1).outcome.tolist() == [
        "FP",
        "TP",
    ]
    saved = {"operating_point": {"threshold": 0.25, "recalibration": "none", "rule": "manual"}}
    table = patient_view.patient_table(_view(predictions, saved), "test", "platt")
    assert table.call.tolist() == [1, 1, 1, 0] and table.outcome.tolist()[0] == "FP"
    assert (
        "saved operating point"
        in patient_view.threshold_in_force(_view(predictions, saved))["source"]
    )
    # a threshold saved on recalibrated probabilities calls on that scale, not on the raw one
    platt = {"operating_point": {"threshold": 0.5, "recalibration": "platt", "rule": "manual"}}
    table = patient_view.patient_table(_view(predictions, platt), "test", "isotonic")
    scaled = run_view.part_predictions(predictions, "test", "platt").set_index("patient_id")
    expected = (scaled.loc[table.patient_id, "y_prob"] >= 0.5).astype(int).tolist()
    assert table.call.tolist() == expected


def test_patient_table_of_a_survival_run_ranks_by_risk():
    predictions = pd.DataFrame(
        {
            "patient_id": ["A", "B", "C"],
            "split": "test",
            "fold": 0,
            "risk": [0.1, 2.0, -1.0],
            "time_days": [100, 50, 900],
            "event": [1, 1, 0],
        }
    )
    table = patient_view.patient_table(_view(predictions, task="survival"), "test")
    assert table.patient_id.tolist() == ["B", "A", "C"]
    assert table.risk_percentile.tolist() == pytest.approx([100, 200 / 3, 100 / 3])
