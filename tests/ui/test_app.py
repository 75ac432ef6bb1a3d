"""The dashboard's pages with Streamlit's AppTest against a finished tiny run."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from nsclc_engine import runs
from nsclc_engine.stats.metrics import metrics_at_threshold
from nsclc_engine.train import jobs
from tests.helpers import open_app

PAGES = ("ui/runs.py", "ui/dataset.py", "ui/train.py", "ui/threshold.py")
PAGES += ("ui/calibration.py", "ui/patient.py", "ui/survival.py")


@pytest.fixture()
def app(own_artifacts, monkeypatch):
    at = open_app(monkeypatch, own_artifacts)
    at.session_state["run_id"] = "fixture"
    at.run()
    assert not at.exception
    return at


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_without_an_exception(app, page):
    app.switch_page(page).run()
    assert not app.exception, [e.value for e in app.exception]
    assert not app.error, [e.value for e in app.error]


def explorer_data(app) -> dict:
    """What the threshold explorer was given to draw in the browser."""
    return json.loads(app.get("bidi_component")[0].proto.json)


def test_the_threshold_explorer_draws_the_counts_at_the_threshold_in_force(app, own_artifacts):
    """The browser draws the row of the explorer's table that the threshold selects (the
    scores at or above it); those counts are exactly the validation predictions' at that
    threshold, and the exact-threshold box moves it (so does a link, and the slider)."""
    app.switch_page("ui/threshold.py").run()
    predictions = pd.read_csv(own_artifacts / "runs" / "fixture" / "predictions.csv")
    validation = predictions[predictions.split == "validation"]
    seen = set()
    for threshold in (0.0, 0.3, float(np.median(validation.y_prob)), 1.0):
        app.number_input(key="threshold").set_value(round(threshold, 3)).run()
        data = explorer_data(app)
        assert data["threshold"] == round(threshold, 3)
        row = sum(score >= data["threshold"] for score in data["scores"])
        shown = tuple(data["counts"][name][row] for name in ("tp", "fp", "fn", "tn"))
        expected = metrics_at_threshold(validation.y_true, validation.y_prob, round(threshold, 3))
        assert shown == (expected["tp"], expected["fp"], expected["fn"], expected["tn"])
        assert app.query_params["threshold"] == f"{threshold:.3f}"
        seen.add(shown)
    assert len(seen) > 1  # the threshold really moved the counts


def test_saving_a_threshold_writes_it_into_the_run(app, own_artifacts):
    app.switch_page("ui/threshold.py").run()
    app.number_input(key="threshold").set_value(0.42).run()
    app.button(key="save_threshold").click().run()
    saved = json.loads((own_artifacts / "runs" / "fixture" / "threshold.json").read_text())
    assert saved["threshold"] == 0.42 and saved["operating_point"]["source"] == "dashboard"
    assert saved["operating_point"]["split_used"] == "validation"
    assert saved["operating_point"]["rule"] == "manual"
    assert "fitted" in saved  # evaluation's thresholds are kept


def test_train_form_rejects_bad_input_and_launches_a_queued_job(app, own_artifacts, tiny_source):
    app.switch_page("ui/train.py").run()
    app.radio[0].set_value("dicom")  # inside a form: values go in with the submit
    app.text_input[0].set_value("/no/such/folder")
    app.button[0].click().run()  # the form's submit button
    assert any("not a folder" in e.value for e in app.error)
    before = {run["run_id"] for run in runs.list_runs(own_artifacts)}
    app.radio[0].set_value("dicom")
    app.text_input[0].set_value(str(tiny_source / "dicom"))
    app.text_input[1].set_value(str(tiny_source / "clinical.csv"))
    app.number_input[0].set_value(1)
    app.button[0].click().run()
    assert not app.error and not app.exception
    new = [r for r in runs.list_runs(own_artifacts) if r["run_id"] not in before]
    assert len(new) == 1 and new[0]["state"] in ("queued", "running")
    assert jobs.cancel(new[0]["run_id"], own_artifacts)["state"] in ("cancelled", "running")


def test_pages_wait_for_a_queued_run_without_errors(tmp_path, monkeypatch):
    from nsclc_engine.train.config import TrainConfig
    from nsclc_engine.train.runner import create_run

    create_run(TrainConfig(), tmp_path, "waiting")
    at = open_app(monkeypatch, tmp_path)
    at.run()
    assert at.session_state["run_id"] == "waiting"
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception, (page, [e.value for e in at.exception])
    at.session_state["run_id"] = "waiting"  # AppTest's page switch drops app-set widget state
    at.switch_page("ui/threshold.py").run()
    assert any("fills in when it finishes" in info.value for info in at.info)


def viewer_payload(at) -> dict:
    """What the page's case viewer draws: the payload inside its iframe's script."""
    frames = at.get("iframe")
    assert len(frames) == 1, [f.proto for f in frames]
    html = frames[0].proto.srcdoc
    start = html.index("const P = ") + len("const P = ")
    return json.loads(html[start : html.index(";\nconst [D, H, W]")].replace("<\\/", "</"))


def test_patient_page_follows_the_patient_the_overlay_and_a_second_run(app):
    app.switch_page("ui/patient.py").run()
    first = viewer_payload(app)
    assert first["maps"] == [] and first["ct"] and first["gtv"]
    options = app.selectbox(key="pt_row").options
    assert len(options) > 1
    app.selectbox(key="pt_row").set_value(1).run()
    assert not app.exception
    second = viewer_payload(app)
    assert second["patient_id"] != first["patient_id"]
    app.toggle(key="pt_cam").set_value(True).run()
    assert not app.exception, [e.value for e in app.exception]
    assert [m["label"] for m in viewer_payload(app)["maps"]] == ["fixture · Grad-CAM layer3"]
    app.selectbox(key="pt_method").set_value("saliency").run()
    assert not app.exception
    assert [m["label"] for m in viewer_payload(app)["maps"]] == ["fixture · saliency"]
    # the same patient's map from the survival run (same data), side by side
    app.selectbox(key="pt_method").set_value("gradcam").run()
    app.selectbox(key="pt_compare").set_value(0).run()
    assert not app.exception, [e.value for e in app.exception]
    both = viewer_payload(app)
    assert [m["label"] for m in both["maps"]] == [
        "fixture · Grad-CAM layer3",
        "fixture-survival · Grad-CAM layer3",
    ]
    assert both["maps"][0]["data"] != both["maps"][1]["data"]
    app.toggle(key="pt_tta").set_value(True).run()
    assert not app.exception
    assert any("TTA" in metric.label for metric in app.metric)
    # away and back
    app.switch_page("ui/runs.py").run()
    app.switch_page("ui/patient.py").run()
    assert not app.exception, [e.value for e in app.exception]
    assert viewer_payload(app)["patient_id"]


def test_a_confusion_cell_lists_its_patients_and_opens_one(app, own_artifacts):
    from nsclc_engine.dashboard.threshold import cell_patients

    app.switch_page("ui/threshold.py").run()
    app.number_input(key="threshold").set_value(0.0).run()  # everyone called positive
    app.get("button_group")[0].set_value("FP").run()
    predictions = pd.read_csv(own_artifacts / "runs" / "fixture" / "predictions.csv")
    validation = predictions[predictions.split == "validation"].reset_index(drop=True)
    expected = cell_patients(validation, 0.0)["FP"]
    assert len(expected) == (validation.y_true == 0).sum() > 0
    shown = app.dataframe[-1].value
    assert shown.patient_id.tolist() == expected.patient_id.tolist()
    # what a click on a row hands to the Patient page (the click itself: the browser test)
    patient = str(expected.patient_id.iloc[-1])
    app.session_state["pt_open"] = patient
    app.session_state["pt_split"] = "validation"
    app.switch_page("ui/patient.py").run()
    assert viewer_payload(app)["patient_id"] == patient


def test_survival_page_shows_every_model_and_a_live_risk_cut(own_artifacts, monkeypatch):
    app = open_app(monkeypatch, own_artifacts)
    app.session_state["run_id"] = "fixture-survival"
    app.run()
    app.switch_page("ui/survival.py").run()
    assert not app.exception, [e.value for e in app.exception]
    models = set(app.dataframe[0].value.model)
    assert models == {"image", "clinical", "volume", "fusion"}
    sizes, frozen = [], []
    for quantile in (0.2, 0.8):
        app.slider(key="sv_cut").set_value(quantile).run()
        assert not app.exception
        shown = {m.label: m.value for m in app.metric}
        sizes.append(int(app.metric[1].value))
        frozen.append((shown["Log-rank p (test, frozen cut)"], app.metric[4].value))
        assert "Log-rank p (validation)" in shown
    assert sizes[0] > sizes[1]  # a higher cut leaves fewer validation patients at high risk
    assert frozen[0] == frozen[1]  # the slider never moves a test number
    app.selectbox(key="sv_model").set_value("clinical").run()
    assert not app.exception
    app.switch_page("ui/patient.py").run()  # survival runs open in case review too
    assert not app.exception and any("Risk" in m.label for m in app.metric)
    for page in PAGES:  # and no page breaks on a survival run
        app.switch_page(page).run()
        assert not app.exception, (page, [e.value for e in app.exception])


def test_calibration_method_is_compared_on_validation_and_test_shows_the_one_in_force(app):
    app.switch_page("ui/calibration.py").run()
    assert not app.exception
    choice = app.dataframe[0].value
    assert choice.method.tolist() == ["none", "platt", "temperature", "isotonic"]
    held_out = app.dataframe[1].value
    assert held_out.probabilities.tolist() == ["raw", "platt"]  # the evaluation's method only
    assert any("method in force only (platt)" in h.value for h in app.subheader)


@pytest.fixture(scope="module")
def outside_runs(dashboard_artifacts, tiny_source, tmp_path_factory):
    """Beside the trained "fixture": "imported", a tool's predictions for the fixture's own
    test patients (so the two share patients and labels), and "external", the fixture frozen
    and applied to its own cohort. Made once for this module's tests, which only read it."""
    from nsclc_engine.evaluate.config import EvaluateConfig
    from nsclc_engine.evaluate.imported import ImportConfig, import_predictions
    from nsclc_engine.validate.external import ValidateConfig, validate_run
    from tests.ui.conftest import copy_runs

    own_artifacts = copy_runs(dashboard_artifacts, tmp_path_factory.mktemp("outside"))

    fixture = pd.read_csv(own_artifacts / "runs" / "fixture" / "predictions.csv")
    test = fixture[fixture.split == "test"]
    rng = np.random.default_rng(0)
    scores = np.clip(0.5 + 0.3 * (test.y_true - 0.5) + rng.normal(0, 0.2, len(test)), 0, 1)
    path = own_artifacts.parent / "tool.csv"
    pd.DataFrame({"PatientID": test.patient_id, "risk": scores}).to_csv(path, index=False)
    config = ImportConfig(
        str(path), str(tiny_source / "clinical.csv"), "PatientID", "risk", "os_2y", cv_folds=2
    )
    import_predictions(config, "imported", own_artifacts, EvaluateConfig(bootstrap_resamples=200))
    cohort = json.loads((own_artifacts / "runs" / "fixture" / "config.json").read_text())
    own_cohort = ValidateConfig(cohort=cohort["resolved"]["cohort_dir"], bootstrap_resamples=200)
    validate_run("fixture", "external", own_cohort, own_artifacts)
    validate_run("fixture-survival", "external-survival", own_cohort, own_artifacts)
    return own_artifacts


@pytest.mark.parametrize("run_id", ["imported", "external", "external-survival"])
def test_every_page_works_on_imported_and_external_runs(outside_runs, monkeypatch, run_id):
    at = open_app(monkeypatch, outside_runs)
    at.run()
    for page in PAGES:
        at.session_state["run_id"] = run_id
        at.switch_page(page).run()
        assert not at.exception, (page, [e.value for e in at.exception])
        assert not at.error, (page, [e.value for e in at.error])
    at.session_state["run_id"] = run_id
    if run_id == "external-survival":  # its one-split source's frozen baseline: any horizon
        at.switch_page("ui/threshold.py").run()
        assert at.radio(key="thr_s_horizon").options == ["365 days", "730 days", "other"]
        assert at.radio(key="thr_s_split").options == ["external"]
        return
    at.switch_page("ui/threshold.py").run()
    assert at.radio(key="thr_split").options == ["external"]
    assert any("frozen from run fixture" in i.value or "stated value" in i.value for i in at.info)


def test_runs_page_compares_a_trained_and_an_imported_run_on_shared_patients(
    outside_runs, monkeypatch
):
    from nsclc_engine.stats.metrics import delong_test

    at = open_app(monkeypatch, outside_runs)
    at.session_state["run_id"] = "imported"
    at.run()
    table = at.dataframe[0].value.set_index("run_id")
    assert table.loc["imported", "kind"] == "imported"
    assert table.loc["external", "held-out part"] == "external"
    assert table.loc["fixture", "network"] == "resnet10" and table.loc["imported", "network"] == ""
    assert table.loc["fixture", "parameters (M)"] == "14.4"  # 14 356 546, as shown
    beside = at.dataframe[1].value
    assert beside.model.tolist()[0] == "imported (this run)" and "clinical baseline" in set(
        beside.model
    )
    at.multiselect(key="compare").set_value(["fixture", "imported"]).run()
    fixture = pd.read_csv(outside_runs / "runs" / "fixture" / "predictions.csv")
    test = fixture[fixture.split == "test"].set_index("patient_id")
    imported = pd.read_csv(outside_runs / "runs" / "imported" / "predictions.csv")
    imported = imported.set_index("patient_id").loc[test.index]
    expected = delong_test(test.y_true, test.y_prob, imported.y_prob)
    text = " ".join(m.value for m in at.markdown)
    assert f"Paired DeLong test on {len(test)} shared held-out patients" in text
    assert f"AUC difference {expected['difference']:+.3f}" in text


@pytest.fixture()
def feature_runs(feature_artifacts, tiny_cohort, tmp_path):
    """The classification run "fmcib-features" and, beside it, "medicalnet-survival": a Cox
    model on a (random) MedicalNet ResNet-10's features."""
    import torch

    from nsclc_engine.features.__main__ import main
    from tests.helpers import medicalnet_state

    artifacts = tmp_path / "artifacts"
    shutil.copytree(feature_artifacts / "runs", artifacts / "runs")
    weights = tmp_path / "resnet_10.pth"
    torch.save({"state_dict": medicalnet_state(10)}, weights)
    argv = ["--weights", str(weights), "--recipe", "medicalnet", "--cohort", str(tiny_cohort)]
    argv += ["--task", "survival", "--set", "preset=smoke", "--set", "bootstrap_resamples=200"]
    assert main([*argv, "--name", "medicalnet-survival", "--artifacts", str(artifacts)]) == 0
    return artifacts


def test_every_page_works_on_frozen_feature_runs(feature_runs, monkeypatch):
    at = open_app(monkeypatch, feature_runs)
    at.run()
    for run_id in ("fmcib-features", "medicalnet-survival"):
        for page in PAGES:
            at.session_state["run_id"] = run_id
            at.switch_page(page).run()
            assert not at.exception, (run_id, page, [e.value for e in at.exception])
            assert not at.error, (run_id, page, [e.value for e in at.error])
    at.session_state["run_id"] = "fmcib-features"
    at.switch_page("ui/runs.py").run()
    table = next(f.value for f in at.dataframe if "kind" in f.value.columns).set_index("run_id")
    assert table.loc["fmcib-features", "kind"] == "frozen features"
    assert table.loc["fmcib-features", "network"] == "fmcib (frozen)"
    assert table.loc["medicalnet-survival", "network"] == "resnet10 (frozen)"
    assert table.loc["fmcib-features", "preset"] == "fmcib"
    assert table.loc["medicalnet-survival", "preset"] == "medicalnet, smoke"
    at.switch_page("ui/patient.py").run()
    assert any("is a frozen-feature run" in i.value for i in at.info)


@pytest.mark.slow
def test_studies_page_shows_the_trials_the_best_and_optunas_figures(
    tiny_source, tmp_path, monkeypatch
):
    from nsclc_engine.tune.study import TuneConfig, run_worker

    artifacts = tmp_path / "artifacts"
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"lr": {"low": 1e-4, "high": 3e-3, "log": True}}))
    config = TuneConfig(
        trials=2,
        study="page",
        space=str(space),
        preset="tiny",
        pruner="none",
        dicom=str(tiny_source / "dicom"),
        clinical=str(tiny_source / "clinical.csv"),
    )
    report = run_worker(config, artifacts)
    at = open_app(monkeypatch, artifacts)
    at.run()
    at.switch_page("ui/studies.py").run()
    assert not at.exception, [e.value for e in at.exception]
    table = at.dataframe[0].value
    assert sorted(table.run_id) == ["page-t0000", "page-t0001"]
    assert set(table.state) == {"complete"} and "param lr" in table.columns
    best = report["best"]
    shown = table.set_index("trial").validation[best["trial"]]  # as the page writes it
    assert shown == f"{best['validation']:.4f}"
    text = " ".join(m.value for m in at.markdown)
    assert f"trial {best['trial']}" in text and "scored once" in text
    assert len(at.get("plotly_chart")) >= 2  # history and parallel coordinates
    # one click from a trial to its run; a trial that was not the best says on the pages
    # that need a test part that its test part is held out
    other = next(r for r in table.run_id if r != best["run_id"])
    at.selectbox(key="study_run").set_value(other).run()
    at.button(key="open_run").click().run()
    assert at.session_state["run_id"] == other
    runs = next(f.value for f in at.dataframe if "kind" in f.value.columns).set_index("run_id")
    assert runs.loc[other, "study"] == f"page #{int(other[-4:])}"
    at.switch_page("ui/threshold.py").run()
    assert not at.exception and any("held out" in i.value for i in at.info)


def test_threshold_page_calls_deaths_by_the_horizon_on_a_survival_run(own_artifacts, monkeypatch):
    from nsclc_engine.dashboard import run_view
    from nsclc_engine.dashboard.threshold import survival_threshold_state

    app = open_app(monkeypatch, own_artifacts)
    app.session_state["run_id"] = "fixture-survival"
    app.run()
    app.switch_page("ui/threshold.py").run()
    assert not app.exception, [e.value for e in app.exception]
    assert not any("is a survival run" in i.value for i in app.info)
    assert app.radio(key="thr_s_horizon").value == 730.0  # the run's last horizon
    view = run_view.load_run(own_artifacts / "runs" / "fixture-survival")
    validation = view.predictions[view.predictions.split == "validation"]
    p = 1 - validation.survival_730d
    seen = set()
    for threshold in (0.0, round(float(np.median(p)), 3), 1.0):
        app.slider(key="thr_s_threshold").set_value(threshold).run()
        expected = survival_threshold_state(view, "validation", 730.0, threshold, n_resamples=10)
        shown = app.table[0].value
        assert shown.index.tolist() == expected["confusion"].index.tolist()
        assert shown.to_numpy().astype(int).tolist() == expected["confusion"].to_numpy().tolist()
        assert int(shown["predicted death"].sum()) == int((p >= threshold).sum())  # by hand
        sensitivity = f"{expected['metrics']['sensitivity']:.3f}"
        assert app.metric[0].label == "Sensitivity at day 730"
        assert app.metric[0].value == sensitivity
        seen.add(str(shown.to_numpy().tolist()))
    assert len(seen) > 1  # the slider really moved the counts
    assert any("neither positive nor negative" in c.value for c in app.caption)
    app.slider(key="thr_s_threshold").set_value(0.42).run()
    app.button(key="thr_s_save").click().run()
    assert not app.exception, [e.value for e in app.exception]
    saved = json.loads((own_artifacts / "runs" / "fixture-survival" / "threshold.json").read_text())
    point = saved["operating_point"]
    assert saved["threshold"] == 0.42 and point["horizon_days"] == 730.0
    assert point["split_used"] == "validation" and point["baseline"] == "raw"
    assert "fitted" in saved  # evaluation's threshold is kept
    app.radio(key="thr_s_split").set_value("test").run()
    assert app.button(key="thr_s_save").disabled  # held-out predictions only read a threshold off


def test_survival_run_calibration_and_patient_pages_speak_in_probabilities(
    own_artifacts, monkeypatch
):
    app = open_app(monkeypatch, own_artifacts)
    app.session_state["run_id"] = "fixture-survival"
    app.run()
    app.switch_page("ui/calibration.py").run()
    assert not app.exception, [e.value for e in app.exception]
    assert not app.error and not any("survival run" in i.value for i in app.info)
    saved = json.loads((own_artifacts / "runs" / "fixture-survival" / "metrics.json").read_text())
    at_730 = saved["horizons"]["raw"]["730d"]
    assert app.selectbox(key="cal_horizon").value == 730.0  # the run's last horizon
    shown = {m.label: m.value for m in app.metric}
    assert shown["ICI"] == f"{at_730['smoothed']['ici']:.3f}"  # the held-out part: metrics.json
    assert shown["Mean predicted"] == f"{100 * at_730['in_the_large']['predicted']:.0f} %"
    assert len(app.get("plotly_chart")) == 2  # predicted vs observed, D-calibration
    assert any("Points on the diagonal" in c.value for c in app.caption)
    app.switch_page("ui/patient.py").run()
    assert not app.exception, [e.value for e in app.exception]
    lines = [m.value for m in app.markdown if m.value.startswith("Survival at")]
    assert [line.split(":")[0] for line in lines] == ["Survival at 1 year", "Survival at 2 years"]
    assert "in the test split)" in lines[-1]


def test_a_survival_run_without_probabilities_offers_the_runs_that_have_them(
    own_artifacts, monkeypatch
):
    source, bare = own_artifacts / "runs" / "fixture-survival", own_artifacts / "runs" / "bare"
    shutil.copytree(source, bare, ignore=shutil.ignore_patterns("*.pt", "survival_baseline.json"))
    status = json.loads((bare / "status.json").read_text())
    (bare / "status.json").write_text(json.dumps(status | {"run_id": "bare"}))
    predictions = pd.read_csv(bare / "predictions.csv")
    predictions.drop(columns=["survival_365d", "survival_730d"]).to_csv(
        bare / "predictions.csv", index=False
    )
    app = open_app(monkeypatch, own_artifacts)
    app.session_state["run_id"] = "bare"
    app.run()
    app.switch_page("ui/calibration.py").run()
    assert not app.exception, [e.value for e in app.exception]
    assert any("no survival probabilities" in i.value for i in app.info)
    offered = [b.key for b in app.button if b.key.startswith("offer_")]
    assert set(offered) == {"offer_calibration_fixture-survival", "offer_calibration_fixture"}
    app.button(key="offer_calibration_fixture").click().run()  # one click selects the run
    assert not app.exception, [e.value for e in app.exception]
    assert app.session_state["run_id"] == "fixture"
    assert any("method in force only" in h.value for h in app.subheader)


def test_an_unreachable_study_database_is_one_line_naming_it_without_its_password(
    own_artifacts, monkeypatch
):
    """Issue 28 (8, 9): a study server that is down crashed the Studies page."""
    url = "postgresql://reader:pw1@127.0.0.1:1/studies?password=pw2"
    monkeypatch.setenv("NSCLC_TUNE_STORAGE", url)
    at = open_app(monkeypatch, own_artifacts)
    at.run()
    at.switch_page("ui/studies.py").run()
    assert not at.exception, [e.value for e in at.exception]
    [error] = at.error
    assert "127.0.0.1:1/studies" in error.value and "cannot be read" in error.value
    assert "pw1" not in error.value and "pw2" not in error.value


def test_a_link_opens_its_run_and_case_and_a_wrong_one_is_one_line(own_artifacts, monkeypatch):
    at = open_app(monkeypatch, own_artifacts)
    at.query_params.update(run="fixture-survival")
    at.run()
    assert at.selectbox(key="run_id").value == "fixture-survival" and not at.warning
    assert at.query_params["run"] == "fixture-survival"
    wrong = open_app(monkeypatch, own_artifacts)
    wrong.query_params.update(run="no-such-run")
    wrong.run()
    assert not wrong.exception
    assert "The link names run 'no-such-run', which is not here" in wrong.warning[0].value
    predictions = pd.read_csv(
        own_artifacts / "runs" / "fixture" / "predictions.csv", dtype={"patient_id": str}
    )
    patient = sorted(predictions.patient_id[predictions.split == "validation"])[-1]
    case = open_app(monkeypatch, own_artifacts, "ui/patient.py")
    case.session_state["run_id"] = "fixture"
    case.query_params.update(patient=patient, split="validation")
    case.run()
    assert not case.exception and case.subheader[0].value == patient
    assert (case.query_params["patient"], case.query_params["split"]) == (patient, "validation")
    unknown = open_app(monkeypatch, own_artifacts, "ui/patient.py")
    unknown.session_state["run_id"] = "fixture"
    unknown.query_params.update(patient="NOBODY")
    unknown.run()
    assert not unknown.exception
    assert "The link names patient 'NOBODY', which is not here" in unknown.warning[0].value


def test_a_verdict_is_recorded_and_a_contour_problem_waits_for_confirmation(app, own_artifacts):
    from nsclc_engine.review import store

    app.switch_page("ui/patient.py").run()
    app.button(key="queue_split").click().run()
    first = app.subheader[0].value
    app.button(key="q_verdict_contour_problem").click().run()
    url = store.review_url(own_artifacts)
    verdicts = store.verdicts(url, run_id="fixture")
    assert verdicts[["patient_id", "verdict", "author"]].to_numpy().tolist() == [
        [first, "contour_problem", "local"]
    ]
    assert app.subheader[0].value != first  # on to the next case
    app.button(key="q_previous").click().run()
    assert app.subheader[0].value == first
    assert "proposes leaving" in app.warning[-1].value
    app.button(key=f"q_confirm_{verdicts.verdict_id.iloc[0]}").click().run()
    config = json.loads((own_artifacts / "runs" / "fixture" / "config.json").read_text())
    assert first in store.exclusions(url, store.source_of(config))


def test_the_runs_page_folds_an_experiment_into_one_row(own_artifacts, monkeypatch):
    from nsclc_engine.dashboard.runs import TEST_AUC
    from nsclc_engine.evaluate.experiment import write_summary
    from tests.evaluate.test_experiment import seeded_copies

    def change(metrics, seed):
        metrics["splits"]["test"]["auc"]["auc"] = 0.6 + 0.1 * seed

    seeded_copies(own_artifacts, own_artifacts, "fixture", "exp", (0, 1), change)
    write_summary(own_artifacts, "exp")
    at = open_app(monkeypatch, own_artifacts, "ui/runs.py")
    at.session_state["run_id"] = "fixture"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    table = at.dataframe[0].value.set_index("run_id")
    assert table.loc["exp", "kind"] == "experiment" and "exp-seed0" not in table.index
    assert table.loc["exp", TEST_AUC] == "0.650 ± 0.071 (n=2)"
    at.multiselect(key="expand_experiments").set_value(["exp"]).run()
    expanded = at.dataframe[0].value.run_id.str.strip().tolist()
    assert {"exp", "exp-seed0", "exp-seed1"} <= set(expanded)
