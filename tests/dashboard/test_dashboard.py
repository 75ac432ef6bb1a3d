"""The engine functions behind the dashboard pages, on a finished tiny run."""

import json

import numpy as np
import pytest

from nsclc_engine.dashboard import dataset as dataset_view
from nsclc_engine.dashboard import run_view
from nsclc_engine.dashboard import runs as runs_view
from nsclc_engine.dashboard import survival as survival_logic
from nsclc_engine.dashboard import threshold as threshold_view
from nsclc_engine.dashboard import train as train_view
from nsclc_engine.stats.metrics import choose_threshold, metrics_at_threshold
from nsclc_engine.train.config import TrainConfig


@pytest.fixture()
def view(dashboard_artifacts):
    return run_view.load_run(dashboard_artifacts / "runs" / "fixture")


def test_runs_overview_lists_the_finished_run(dashboard_artifacts, view):
    table = runs_view.runs_overview(dashboard_artifacts)
    row = table.set_index("run_id").loc["fixture"]
    assert row.state == "finished" and row.label == "os_2y" and row.preset == "smoke"
    assert row["test AUC"] == pytest.approx(view.metrics["splits"]["test"]["auc"]["auc"])
    assert view.finished and view.history
    assert row.threshold == pytest.approx(view.threshold["threshold"])  # the one in force


def test_split_overview_is_table_1_with_a_leakage_check(view):
    overview = dataset_view.split_overview(view)
    table = overview["table"]
    assert table.total.sum() == view.predictions.patient_id.nunique()
    assert overview["leaks"] == []
    train = view.predictions[view.predictions.split == "train"]
    share = overview["sampling"].iloc[0]["class 0 share per epoch"]
    assert share == pytest.approx((train.y_true == 0).mean())  # house default: no sampler


def test_threshold_state_and_rules_come_from_validation(view):
    validation = view.predictions[view.predictions.split == "validation"]
    rules = threshold_view.rule_thresholds(view.predictions)
    assert rules["Youden J"] == choose_threshold(validation.y_true, validation.y_prob).threshold
    frame = run_view.part_predictions(view.predictions, "validation")
    for threshold in (0.0, float(np.median(frame.y_prob)), 1.0):
        state = threshold_view.threshold_state(frame, threshold, n_resamples=100)
        expected = metrics_at_threshold(frame.y_true, frame.y_prob, threshold)
        assert state["metrics"] == pytest.approx(expected, nan_ok=True)


def test_recalibrated_test_probabilities_do_not_depend_on_test_labels(view):
    flipped = view.predictions.copy()
    is_test = flipped.split == "test"
    flipped.loc[is_test, "y_true"] = 1 - flipped.loc[is_test, "y_true"]
    a = run_view.part_predictions(view.predictions, "test", "platt")
    b = run_view.part_predictions(flipped, "test", "platt")
    np.testing.assert_allclose(a.y_prob, b.y_prob)


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


def test_train_form_validation_names_what_to_fix(tmp_path):
    config, errors = train_view.validate_train_form(
        {"source": "dicom", "dicom": "/nope", "clinical": "", "lr": 2.0, "folds": 1}
    )
    assert config is None and len(errors) == 4
    config, errors = train_view.validate_train_form({"source": "demo", "label": "os_2y"})
    assert errors == [] and config == TrainConfig(label="os_2y")


def test_first_start_launches_the_demo_job_once(tmp_path, monkeypatch):
    launched = []
    monkeypatch.delenv("NSCLC_NO_AUTOSTART", raising=False)
    monkeypatch.setattr(
        "nsclc_engine.dashboard.runs.launch",
        lambda config, root, run_id: launched.append(config) or run_id,
    )
    assert runs_view.first_start(tmp_path) == "demo"
    # classification first (its results come soonest), then survival: every page has content
    assert launched == [TrainConfig(), TrainConfig(task="survival")]
    assert runs_view.first_start(tmp_path) is None  # the marker stays
    assert len(launched) == 2


def test_train_form_keeps_the_hidden_settings_of_the_chosen_protocol():
    from nsclc_engine.train.config import protocol_config

    config, errors = train_view.validate_train_form(
        {"source": "demo", "protocol": "report", "lr": 1e-3, "folds": 0}
    )
    assert errors == [] and config == protocol_config("report")
    assert config.label == "deadstatus_event" and config.augment == "minority"
    assert config.monitor == "loss"
    assert config.augmentation_warning
    assert train_view.protocol_defaults("house")["augment"] == "all"


def test_threshold_ci_draws_patients_when_pooled_rows_repeat_them(view):
    """Pooled k-fold validation rows repeat patients; a row bootstrap made the CIs too narrow."""
    once = run_view.part_predictions(view.predictions, "validation").sort_values("patient_id")
    repeated = once.loc[once.index.repeat(3)]
    state_once = threshold_view.threshold_state(once, 0.5, n_resamples=300)
    state_repeated = threshold_view.threshold_state(repeated, 0.5, n_resamples=300)
    for key in ("sensitivity", "specificity"):
        assert state_repeated["ci"][key] == pytest.approx(state_once["ci"][key])


@pytest.fixture()
def survival_view(dashboard_artifacts):
    return run_view.load_run(dashboard_artifacts / "runs" / "fixture-survival")


def test_survival_tables_come_from_the_run_metrics(survival_view, dashboard_artifacts):
    table = survival_logic.c_index_table(survival_view)
    assert set(table.model) == {"image", "clinical", "volume", "fusion"}
    assert set(table.split) == {"train", "validation", "test"}
    image_test = table[(table.model == "image") & (table.split == "test")]["C-index"].item()
    assert image_test == pytest.approx(
        survival_view.metrics["splits"]["test"]["c_index"]["c_index"]
    )
    timed = survival_logic.time_dependent_table(survival_view)
    assert {"Uno C", "AUC 365d", "AUC 730d", "IBS"} <= set(timed.columns)
    overview = runs_view.runs_overview(dashboard_artifacts).set_index("run_id")
    assert overview.loc["fixture-survival", "test C-index"] == pytest.approx(image_test)


def test_risk_cut_follows_the_validation_quantile(survival_view):
    from nsclc_engine.stats.survival import groups_at

    models = survival_logic.survival_models(survival_view)
    validation = models[models.split == "validation"].fusion
    test = models[models.split == "test"]
    low = survival_logic.risk_group_state(models, "fusion", "test", 0.2)
    high = survival_logic.risk_group_state(models, "fusion", "test", 0.8)
    assert low["cuts"] == [pytest.approx(float(np.quantile(validation, 0.2)))]
    assert low["n_high"] >= high["n_high"] and low["n_high"] + low["n_low"] == len(test)
    expected = groups_at(test.time_days, test.event, test.fusion > high["cuts"][0])
    assert high["logrank"] == expected["logrank"]
    with pytest.raises(ValueError, match="strictly between"):
        survival_logic.risk_group_state(models, "fusion", "test", 1.0)


def test_compare_survival_runs_pairs_patients_and_keeps_the_sign(survival_view):
    from dataclasses import replace

    from nsclc_engine.stats.survival import harrell_c_index

    result = runs_view.compare_survival_runs(survival_view, survival_view)
    assert len(result["table"]) == 2 * len(survival_view.metrics["splits"])
    assert result["difference"]["difference"] == 0.0
    # b ranks every patient the other way round (and in another row order): a - b = C - (1 - C)
    reversed_rows = survival_view.predictions.assign(risk=lambda f: -f.risk).iloc[::-1]
    flipped = replace(survival_view, predictions=reversed_rows)
    test = survival_view.predictions[survival_view.predictions.split == "test"]
    c = harrell_c_index(test.time_days, test.event, test.risk)
    difference = runs_view.compare_survival_runs(survival_view, flipped)["difference"]
    assert difference["difference"] == pytest.approx(c - (1 - c))
    shifted = survival_view.predictions.assign(time_days=lambda f: f.time_days + 1)
    other_times = replace(survival_view, predictions=shifted)
    assert "differ" in runs_view.compare_survival_runs(survival_view, other_times)["note"]


def test_train_form_survival_task_takes_the_event_as_its_label():
    config, errors = train_view.validate_train_form(
        {"source": "demo", "label": "os_2y", "task": "survival", "lr": 1e-3, "folds": 0}
    )
    assert errors == [] and (config.task, config.label) == ("survival", "deadstatus_event")


def test_training_curves_show_the_c_index_of_a_survival_run(survival_view, view):
    from nsclc_engine.evaluate.figures import training_curves_figure

    figure = training_curves_figure(survival_view.history)
    assert figure.layout.annotations[1].text == "Validation C-index"
    assert list(figure.data[2].y) == [line["val_c_index"] for line in survival_view.history]
    assert training_curves_figure(view.history).layout.annotations[1].text == "Validation AUC"


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
    assert run_view.test_verdict({"splits": metrics["splits"]}) is None  # real data
