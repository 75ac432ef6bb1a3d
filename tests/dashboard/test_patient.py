"""The Patient page: the patients of a split with their calls under the threshold in force."""

import pandas as pd
import pytest

from nsclc_engine.dashboard import patient as patient_view
from nsclc_engine.dashboard import run_view
from nsclc_engine.explain.gradcam import ExplainConfig


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


def test_a_survival_patients_curve_is_their_fold_baseline_and_percentile_by_hand(survival_view):
    import numpy as np
    from sksurv.nonparametric import kaplan_meier_estimator

    from nsclc_engine.runs import read_survival_baselines
    from nsclc_engine.stats.survival_probability import Baseline

    test = survival_view.predictions[survival_view.predictions.split == "test"]
    row = test.iloc[len(test) // 2]
    for kind in ("raw", "recalibrated"):
        state = patient_view.patient_survival(survival_view, "test", row.patient_id, 0, kind)
        baseline = Baseline.from_dict(read_survival_baselines(survival_view.run_dir)[0][kind])
        curve = state["curve"]
        assert curve["time"][0] == 0 and curve["time"][-1] >= test.time_days.max()
        np.testing.assert_allclose(
            curve["survival"], baseline.survival([row.risk], curve["time"])[0]
        )
        assert state["risk"] == row.risk
    # raw: the survival columns evaluation wrote into predictions.csv
    state = patient_view.patient_survival(survival_view, "test", row.patient_id, 0)
    assert [h["horizon_days"] for h in state["horizons"]] == [365.0, 730.0]
    for entry in state["horizons"]:
        column = test[f"survival_{entry['horizon_days']:g}d"]
        assert entry["survival"] == pytest.approx(row[f"survival_{entry['horizon_days']:g}d"])
        below = sum(value <= entry["survival"] + 1e-12 for value in column)
        assert entry["percentile"] == pytest.approx(100 * below / len(test))
    # the split's Kaplan-Meier curve, against scikit-survival's
    time, survival = kaplan_meier_estimator(test.event.astype(bool), test.time_days)
    np.testing.assert_allclose(state["km"]["time"], np.r_[0, time])
    np.testing.assert_allclose(state["km"]["survival"], np.r_[1, survival])
    text = patient_view.survival_text(state["horizons"][-1], "test")
    assert text.startswith("Survival at 2 years: ") and "in the test split)" in text
    figure = patient_view.survival_curve_figure(state)
    assert len(figure.data) == 3  # the split, the patient, the horizons marked


def test_a_survival_patient_without_a_saved_baseline_gets_the_columns_only():
    predictions = pd.DataFrame(
        {
            "patient_id": ["A", "B", "C", "D"],
            "split": "external",
            "fold": 0,
            "risk": [0.1, 2.0, -1.0, 0.5],
            "time_days": [100, 50, 900, 400],
            "event": [1, 1, 0, 1],
            "survival_730d": [0.6, 0.2, 0.9, 0.6],
        }
    )
    view = _view(predictions, task="survival")
    state = patient_view.patient_survival(view, "external", "A", 0)
    assert state["curve"] is None and "fixed horizons" in state["curve_note"]
    # A: 0.6; at or below it: B 0.2, A and D 0.6
    assert state["horizons"] == [
        {"horizon_days": 730.0, "label": "2 years", "survival": 0.6, "percentile": 75.0, "n": 4}
    ]
    assert patient_view.survival_text(state["horizons"][0], "external") == (
        "Survival at 2 years: 60 % (percentile 75 in the external split)"
    )
    recalibrated = patient_view.patient_survival(view, "external", "A", 0, "recalibrated")
    assert (
        recalibrated["horizons"] == [] and "no recalibrated baseline" in recalibrated["curve_note"]
    )
    assert patient_view.patient_splits(view) == ["external"]
    assert patient_view.split_of(view, "C", "test") == "external"
    assert patient_view.split_of(view, "Z") is None
    with pytest.raises(ValueError, match="no external row of patient Z"):
        patient_view.patient_survival(view, "external", "Z", 0)


def test_pages_a_run_cannot_answer_offer_the_runs_that_can(shown_artifacts, survival_view):
    survival = patient_view.why_not_classification(survival_view)
    assert "survival run" in survival
    answering = patient_view.runs_answering(shown_artifacts, patient_view.why_not_classification)
    assert answering == ["fixture"]
    assert patient_view.runs_answering(shown_artifacts, patient_view.why_not_survival) == [
        "fixture-survival"
    ]
    assert patient_view.why_not_survival(survival_view) == ""
    patient = str(survival_view.predictions.patient_id.iloc[0])
    case = patient_view.case_of(patient)
    assert patient_view.runs_answering(shown_artifacts, case, exclude="fixture-survival") == [
        "fixture"
    ]
    assert "did not score nobody" in patient_view.case_of("nobody")(survival_view)
    imported = run_view.RunView("imp", None, {"kind": "imported"}, {}, survival_view.predictions)
    assert "an imported run" in patient_view.why_no_case(imported)
    assert patient_view.why_no_case(survival_view) == ""
    assert "an imported run" in case(imported)


def test_a_comparison_runs_map_takes_the_method_and_layer_its_network_has():
    pv = patient_view
    vit = run_view.RunView("vit", None, {"model": "vit"}, {})
    resnet = run_view.RunView("old", None, {}, {})  # before networks had names: a ResNet-18
    assert pv.method_choices(vit) == ("saliency",) and pv.layer_choices(vit) == ("none",)
    assert "gradcam" in pv.method_choices(resnet)
    assert pv.layer_choices(resnet) == ("layer3", "layer4")
    assert pv.comparison_config(vit, "gradcam", "layer3") == ExplainConfig("saliency", "none")
    assert pv.comparison_config(resnet, "gradcam", "layer3") == ExplainConfig("gradcam", "layer3")
