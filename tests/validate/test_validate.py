"""External validation of a frozen run (``python -m nsclc_engine.validate``): the model,
preprocessing, threshold and recalibration applied unchanged, on a synthetic cohort written
with another seed and other scanner settings and on the real LUNG1-001."""

import json
import os
import shutil
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from nsclc_engine.stats.calibration import calibration_intercept_slope, recalibrator_from_dict
from nsclc_engine.synth.generate import write_cohort
from nsclc_engine.validate.__main__ import main as validate_main
from nsclc_engine.validate.external import ValidateConfig, validate_run
from tests.helpers import TINY


@pytest.fixture()
def artifacts(dashboard_artifacts, tmp_path):
    """This test's own copy of the finished runs (checkpoints hard-linked)."""

    def link_checkpoints(source: str, target: str) -> None:
        (os.link if source.endswith(".pt") else shutil.copy2)(source, target)

    root = tmp_path / "artifacts"
    shutil.copytree(dashboard_artifacts / "runs", root / "runs", copy_function=link_checkpoints)
    return root


@pytest.fixture(scope="module")
def shifted(tmp_path_factory):
    """Another site: another seed and ID prefix, noisier images, other slice thickness and
    pixel spacing than the tiny development cohort (12 mm slices, 8 mm pixels, 10 HU)."""
    root = tmp_path_factory.mktemp("shifted")
    config = replace(
        TINY,
        n_patients=24,
        seed=11,
        noise_hu=30.0,
        slice_thickness_mm=10.0,
        pixel_spacing_mm=7.0,
        patient_id_prefix="SITE",
    )
    write_cohort(config, root, show_progress=False)
    return root


def test_a_frozen_run_on_a_shifted_cohort(artifacts, shifted, capsys):
    argv = ["fixture", "--name", "site-b", "--cohort", str(shifted), "--artifacts", str(artifacts)]
    assert validate_main([*argv, "--recalibrate-intercept", "--bootstrap-resamples", "300"]) == 0
    assert "external: n=" in capsys.readouterr().out
    folder = artifacts / "runs" / "site-b"
    metrics = json.loads((folder / "metrics.json").read_text())
    predictions = pd.read_csv(folder / "predictions.csv")
    assert (
        set(predictions.split) == {"external"} and predictions.patient_id.str[:4].eq("SITE").all()
    )
    block = metrics["splits"]["external"]
    assert block["n"] == len(predictions) > 10
    assert block["auc"]["auc"] == pytest.approx(
        roc_auc_score(predictions.y_true, predictions.y_prob)
    )
    # the frozen threshold, not one fitted here
    source = json.loads((artifacts / "runs" / "fixture" / "threshold.json").read_text())
    assert metrics["thresholds"][0]["threshold"] == pytest.approx(source["threshold"])
    assert json.loads((folder / "threshold.json").read_text())["threshold"] == pytest.approx(
        source["threshold"]
    )
    # calibration on the new cohort, against the stats oracle; the in-the-large update is
    # labelled and leaves no intercept
    # (the probabilities as deployed: the source run's validation-fitted recalibrator applied)
    saved = json.loads((artifacts / "runs" / "fixture" / "calibration.json").read_text())
    recalibrator = recalibrator_from_dict(saved["recalibrators"][0])
    expected = calibration_intercept_slope(
        predictions.y_true, recalibrator.apply(predictions.y_prob)
    )
    deployed = metrics["calibration_external"]["deployed"]
    assert deployed["intercept"] == pytest.approx(expected["intercept"])
    updated = metrics["calibration_external"]["recalibrated_in_the_large"]
    assert "in-sample" in updated["label"] and abs(updated["intercept"]) < 1e-6
    assert len(metrics["decision_curve"]["model"]) == len(metrics["decision_curve"]["threshold"])
    mix = pd.read_csv(folder / "case_mix.csv").set_index("characteristic")
    assert mix.loc["slice thickness, mm: median", "development"].startswith("12.00")
    assert mix.loc["slice thickness, mm: median", "external"].startswith("10.00")
    assert mix.loc["pixel spacing, mm: median", "external"].startswith("7.00")
    assert "age, years: mean (SD)" in mix.index and "GTV volume, cm3: median" in mix.index
    config = json.loads((folder / "config.json").read_text())
    assert config["kind"] == "external" and config["source_run"] == "fixture"


def test_applied_to_its_own_cohort_the_frozen_run_reproduces_its_predictions(artifacts):
    """The same model and preprocessing on the development patients give the run's own
    probabilities: nothing is refitted or re-preprocessed differently."""
    source_config = json.loads((artifacts / "runs" / "fixture" / "config.json").read_text())
    cohort = source_config["resolved"]["cohort_dir"]
    config = ValidateConfig(cohort=cohort, bootstrap_resamples=50)
    validate_run("fixture", "again", config, artifacts)
    again = pd.read_csv(artifacts / "runs" / "again" / "predictions.csv").set_index("patient_id")
    own = pd.read_csv(artifacts / "runs" / "fixture" / "predictions.csv").set_index("patient_id")
    assert set(again.index) == set(own.index)
    np.testing.assert_allclose(again.y_prob, own.loc[again.index].y_prob, atol=1e-5)
    metrics = json.loads((artifacts / "runs" / "again" / "metrics.json").read_text())
    assert any(
        f"{len(own)} of these patients" in w and "not an external validation" in w
        for w in metrics["warnings"]
    )
    # its rule is the frozen one: evaluating it as a trained run would refit on nothing
    from nsclc_engine.evaluate.__main__ import main as evaluate_main

    assert evaluate_main(["again", "--artifacts", str(artifacts)]) == 2


@pytest.mark.slow
def test_one_real_patient_is_predicted_and_called_too_few(
    artifacts, lung1_dir, lung1_clinical, capsys
):
    argv = ["fixture", "--name", "lung1-001", "--dicom", str(lung1_dir)]
    argv += ["--clinical", str(lung1_clinical), "--artifacts", str(artifacts)]
    assert validate_main(argv) == 0
    assert "too few patients" in capsys.readouterr().out
    folder = artifacts / "runs" / "lung1-001"
    predictions = pd.read_csv(folder / "predictions.csv")
    assert predictions.patient_id.tolist() == ["LUNG1-001"]
    assert 0 <= predictions.y_prob[0] <= 1 and predictions.y_true[0] == 0  # alive at 2 years
    metrics = json.loads((folder / "metrics.json").read_text())
    assert "too few patients" in metrics["too_few_patients"] and metrics["splits"] == {}
    mix = pd.read_csv(folder / "case_mix.csv").set_index("characteristic")
    assert mix.loc["patients", "external"] == "1"
    assert json.loads((folder / "status.json").read_text())["state"] == "finished"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["fixture", "--name", "x"], "give either --dicom DIR --clinical CSV, or --cohort DIR"),
        (["nothing", "--name", "x", "--cohort", "."], "no run 'nothing'"),
        (["fixture", "--name", "fixture", "--cohort", "."], "run 'fixture' already exists"),
        (["fixture", "--name", "x", "--dicom", "missing"], "--dicom needs --clinical"),
        (["fixture", "--name", "x", "--cohort", "missing"], "--cohort missing: not a folder"),
        (
            ["fixture", "--name", "x", "--cohort", "."],
            "neither a cohort folder (cohort.csv) nor a source folder",
        ),
    ],
)
def test_bad_input_gets_one_line_and_no_run(artifacts, argv, message, capsys, monkeypatch):
    monkeypatch.chdir(artifacts)
    assert validate_main([*argv, "--artifacts", str(artifacts)]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
    assert not (artifacts / "runs" / "x").exists()


@pytest.mark.parametrize(("kind", "what"), [("imported", "an imported"), ("features", "a frozen")])
def test_a_run_without_a_network_of_its_own_is_refused(artifacts, shifted, kind, what):
    from nsclc_engine.runs import create_run, update_status

    create_run({"kind": kind, "task": "classification"}, artifacts, kind)
    update_status(artifacts / "runs" / kind, state="finished")
    with pytest.raises(ValueError, match=f"is {what}.*no network checkpoint of its own"):
        validate_run(kind, "never", ValidateConfig(cohort=str(shifted)), artifacts)
    assert not (artifacts / "runs" / "never").exists()


def test_each_fold_model_is_scored_on_its_own_with_mean_and_spread():
    """Issue 26, item 10: a k-fold run's external figures were only those of an ensemble (mean
    probability, mean threshold) never evaluated internally. Each fold model's own AUC and
    calls at its own validation threshold, against scikit-learn and hand counts; Harrell's C
    against scikit-survival."""
    from sksurv.metrics import concordance_index_censored

    from nsclc_engine.validate.external import fold_model_metrics

    y_true = np.array([0, 0, 0, 1, 1, 1, 0, 1])
    fold0 = np.array([0.1, 0.4, 0.35, 0.8, 0.7, 0.3, 0.2, 0.9])
    fold1 = np.array([0.6, 0.2, 0.5, 0.4, 0.9, 0.7, 0.1, 0.3])
    frame = pd.DataFrame(
        {"os_2y": y_true, "score_fold0": fold0, "score_fold1": fold1, "score": (fold0 + fold1) / 2}
    )
    result = fold_model_metrics(frame, "classification", "os_2y", {0: 0.5, 1: 0.5})
    aucs = [roc_auc_score(y_true, fold0), roc_auc_score(y_true, fold1)]
    assert [entry["auc"] for entry in result["folds"]] == pytest.approx(aucs)
    # fold 0 at 0.5: positives 0.8, 0.7, 0.9 called (3 of 4), no negative called (0 of 4)
    assert result["folds"][0]["sensitivity"] == pytest.approx(3 / 4)
    assert result["folds"][0]["specificity"] == pytest.approx(1.0)
    summary = result["summary"]["auc"]
    assert summary["mean"] == pytest.approx(np.mean(aucs))
    assert summary["sd"] == pytest.approx(np.std(aucs, ddof=1))
    assert (summary["min"], summary["max"], summary["n_folds"]) == (min(aucs), max(aucs), 2)

    time = np.array([100.0, 300, 250, 800, 50, 400, 900, 120])
    event = np.array([1, 1, 0, 1, 1, 0, 0, 1])
    frame = frame.assign(survival_time_days=time, deadstatus_event=event)
    result = fold_model_metrics(frame, "survival", "deadstatus_event", {})
    expected = [concordance_index_censored(event.astype(bool), time, s)[0] for s in (fold0, fold1)]
    assert [entry["c_index"] for entry in result["folds"]] == pytest.approx(expected)
    assert result["summary"]["c_index"]["mean"] == pytest.approx(np.mean(expected))


@pytest.mark.slow
def test_a_k_fold_run_says_its_ensemble_was_never_evaluated_and_scores_each_fold(
    tiny_source, shifted, tmp_path
):
    from nsclc_engine.train.__main__ import main as train_main
    from nsclc_engine.validate.external import external_cohort, predict_frozen

    args = ["--dicom", str(tiny_source / "dicom"), "--clinical", str(tiny_source / "clinical.csv")]
    args += ["--label", "os_2y", "--preset", "smoke", "--epochs", "1", "--folds", "2", "--quiet"]
    args += ["--set", "model=resnet10", "--artifacts", str(tmp_path), "--run-id", "cv"]
    assert train_main(args) == 0
    config = ValidateConfig(cohort=str(shifted), bootstrap_resamples=100)
    _, metrics = validate_run("cv", "cv-site-b", config, tmp_path)
    assert any("never evaluated on the run's own patients" in w for w in metrics["warnings"])
    folds = metrics["fold_models"]["folds"]
    assert [entry["fold"] for entry in folds] == [0, 1]
    # oracle: each fold model's own scores, and the ensemble as their mean
    source = tmp_path / "runs" / "cv"
    source_config = json.loads((source / "config.json").read_text())
    scores, _ = predict_frozen(
        source, source_config, external_cohort(config, tmp_path), tmp_path / "cache"
    )
    predictions = pd.read_csv(tmp_path / "runs" / "cv-site-b" / "predictions.csv")
    scores = scores.set_index("patient_id").loc[predictions.patient_id]
    np.testing.assert_allclose(
        predictions.y_prob, scores[["score_fold0", "score_fold1"]].mean(axis=1), atol=1e-6
    )
    for entry in folds:
        auc = roc_auc_score(predictions.y_true, scores[f"score_fold{entry['fold']}"])
        assert entry["auc"] == pytest.approx(auc)
    fitted = json.loads((source / "threshold.json").read_text())["fitted"]["thresholds"]
    assert [entry["threshold"] for entry in folds] == [t["threshold"] for t in fitted]


def test_a_frozen_survival_run_gives_probabilities_from_its_frozen_baseline(artifacts, shifted):
    """Issue 27, items 1 and 5: an external survival run applies the source's Breslow
    baseline (fitted on its validation rows) unchanged to the new risks; every figure equals
    its oracle on the external patients (censoring weights from them: there is no training
    split)."""
    from sksurv.metrics import concordance_index_censored, cumulative_dynamic_auc
    from sksurv.util import Surv

    from nsclc_engine.stats.survival_calibration import d_calibration, smoothed_calibration
    from nsclc_engine.stats.survival_probability import Baseline

    config = ValidateConfig(cohort=str(shifted), bootstrap_resamples=20)
    _, metrics = validate_run("fixture-survival", "site-b-survival", config, artifacts)
    source = artifacts / "runs" / "fixture-survival"
    folder = artifacts / "runs" / "site-b-survival"
    saved = json.loads((source / "survival_baseline.json").read_text())
    baseline = Baseline.from_dict(saved["folds"][0]["raw"])
    predictions = pd.read_csv(folder / "predictions.csv")
    risk, time = predictions.risk.to_numpy(), predictions.time_days.to_numpy()
    event = predictions.event.to_numpy().astype(bool)
    for horizon in (365, 730):
        expected = baseline.survival(risk, [horizon])[:, 0]
        np.testing.assert_allclose(predictions[f"survival_{horizon}d"], expected)
    copy = json.loads((folder / "survival_baseline.json").read_text())
    assert copy["fitted_on"] == "validation of run fixture-survival (frozen)"
    assert copy["folds"] == saved["folds"]

    c_index = concordance_index_censored(event, time, risk)[0]
    assert metrics["splits"]["external"]["c_index"]["c_index"] == pytest.approx(c_index)
    horizons = metrics["horizons"]
    assert horizons["horizons_days"] == [365.0, 730.0] and horizons["held_out"] == "external"
    own = baseline.survival_at_own_times(risk, time)
    assert horizons["raw"]["d_calibration"] == pytest.approx(d_calibration(own, event))
    surv = Surv.from_arrays(event, time)
    for horizon in (365, 730):
        entry, p = horizons["raw"][f"{horizon}d"], 1 - predictions[f"survival_{horizon}d"]
        auc, _ = cumulative_dynamic_auc(surv, surv, p.to_numpy(), [horizon])
        assert entry["td_auc"] == pytest.approx(auc[0])
        ici = smoothed_calibration(p, time, event, horizon)["ici"]
        assert entry["smoothed"]["ici"] == pytest.approx(ici)
    # the threshold frozen from the source: its fitted value, at its horizon, never refitted
    fitted = json.loads((source / "threshold.json").read_text())["fitted"]
    threshold, horizon = fitted["thresholds"][0]["threshold"], fitted["horizon_days"]
    block = horizons["threshold"]
    assert block["thresholds"] == [{"fold": 0, "threshold": threshold}]
    assert (
        block["horizon_days"] == horizon
        and "frozen from run fixture-survival" in block["fitted_on"]
    )
    called = baseline.death_probability(risk, horizon) >= threshold
    died, alive = event & (time <= horizon), time > horizon
    counts = block["held_out"]["counts"]
    assert (counts["tp"], counts["fn"]) == ((died & called).sum(), (died & ~called).sum())
    assert (counts["fp"], counts["tn"]) == ((alive & called).sum(), (alive & ~called).sum())
    assert json.loads((folder / "threshold.json").read_text())["threshold"] == threshold
    assert "Survival report" in (folder / "report.html").read_text()


def test_a_k_fold_survival_ensemble_is_the_mean_of_each_models_own_curve(tmp_path):
    """A k-fold source: S(t) of a new patient is the mean over the fold models of each one's
    S(t) under its own frozen baseline, from its own risk (oracle: each ``Baseline`` by hand);
    the calls at the frozen threshold and D-calibration are of that ensemble; no single
    baseline is copied. A threshold saved with a horizon outranks the fitted one. A source
    evaluated before baselines were saved gets the risk's td-AUC and a warning."""
    from sksurv.metrics import cumulative_dynamic_auc
    from sksurv.util import Surv

    from nsclc_engine.atomic import write_json
    from nsclc_engine.evaluate.config import EvaluateConfig
    from nsclc_engine.evaluate.survival_frozen import (
        external_baseline_payload,
        external_survival_horizons,
        frozen_survival_rule,
        with_frozen_survival,
    )
    from nsclc_engine.stats.survival_calibration import d_calibration
    from nsclc_engine.stats.survival_probability import fit_baseline

    rng = np.random.default_rng(0)
    time = np.ceil(rng.exponential(500, 40))
    event = (rng.random(40) < 0.8).astype(int)
    risks = np.c_[rng.normal(size=40), rng.normal(1.0, 0.5, 40)]  # no common location
    fits = [fit_baseline(time, event, risks[:, k]) for k in (0, 1)]
    source = tmp_path / "cv"
    source.mkdir()
    saved = [{"fold": k, "raw": fits[k].to_dict()} for k in (0, 1)]
    write_json(source / "survival_baseline.json", {"fitted_on": "validation", "folds": saved})
    write_json(source / "metrics.json", {"horizons": {"horizons_days": [365.0, 730.0]}})
    fitted = {"horizon_days": 730.0, "thresholds": [{"fold": 0, "threshold": 0.4}]}
    fitted["thresholds"].append({"fold": 1, "threshold": 0.6})
    write_json(source / "threshold.json", {"fitted": fitted})
    rule = frozen_survival_rule(source)
    assert (rule.threshold, rule.threshold_horizon) == (pytest.approx(0.5), 730.0)  # the mean
    predictions = pd.DataFrame(
        {"patient_id": [f"P{k}" for k in range(40)], "split": "external", "fold": 0}
    ).assign(risk=risks.mean(axis=1), time_days=time, event=event)
    predictions = with_frozen_survival(predictions, risks, rule)
    for horizon in (365, 730):
        each = [fits[k].survival(risks[:, k], [horizon])[:, 0] for k in (0, 1)]
        np.testing.assert_allclose(predictions[f"survival_{horizon}d"], np.mean(each, axis=0))
    block, warnings = external_survival_horizons(
        predictions, risks, rule, EvaluateConfig(bootstrap_resamples=20)
    )
    assert warnings == [] and "mean over run cv's 2 fold models" in block["baselines"]["raw"]
    own = np.mean([fits[k].survival_at_own_times(risks[:, k], time) for k in (0, 1)], axis=0)
    assert block["raw"]["d_calibration"] == pytest.approx(d_calibration(own, event))
    called = 1 - predictions.survival_730d >= 0.5
    died = (event == 1) & (time <= 730)
    assert block["threshold"]["held_out"]["counts"]["tp"] == (died & called).sum()
    payload = external_baseline_payload(rule, 2)
    assert payload["folds"] == [] and payload["fold_models"] == saved
    assert "no single baseline applies" in payload["note"]

    # a source evaluated before baselines were saved: C and the risk's td-AUC only
    (source / "survival_baseline.json").unlink()
    old = frozen_survival_rule(source)
    unscored = predictions.drop(columns=["survival_365d", "survival_730d"])
    block, warnings = external_survival_horizons(
        unscored, risks, old, EvaluateConfig(bootstrap_resamples=20)
    )
    assert "re-evaluate run cv to get its baseline" in warnings[0] and block["baselines"] == {}
    surv = Surv.from_arrays(event.astype(bool), time)
    auc, _ = cumulative_dynamic_auc(surv, surv, predictions.risk.to_numpy(), [730])
    entry = block["raw"]["730d"]
    assert entry["td_auc_of"] == "risk" and entry["td_auc"] == pytest.approx(auc[0])
    assert "smoothed" not in entry and "re-evaluate" in entry["calibration_note"]

    point = {"threshold": 0.3, "horizon_days": 365.0}
    write_json(source / "threshold.json", {"fitted": fitted, "operating_point": point})
    rule = frozen_survival_rule(source)
    assert (rule.threshold, rule.threshold_horizon) == (0.3, 365.0)
    assert "saved operating point" in rule.threshold_text
