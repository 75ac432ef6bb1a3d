"""Predictions made elsewhere imported as a run (``evaluate --import``): the AUC and CI equal
scikit-learn's and the bootstrap's on the same rows, every bad row is counted and left out,
the threshold comes from its stated source, baselines are fitted out of fold on exactly the
imported patients, and the published CNN's real file reproduces its AUC."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from nsclc_engine.cohort.clinical import add_labels, read_clinical_csv
from nsclc_engine.evaluate.__main__ import main as evaluate_main
from nsclc_engine.evaluate.config import EvaluateConfig
from nsclc_engine.evaluate.crossfit import out_of_fold, radiomics_columns
from nsclc_engine.evaluate.imported import ImportConfig, import_predictions
from nsclc_engine.stats.metrics import bootstrap_metrics, choose_threshold
from tests.helpers import LUNG1_CLINICAL, SHARED, require_shared

HOSNY = SHARED / "data" / "hosny2018-lung1-predictions" / "nsclc-radiomics_hosny_baseline.csv"
QUICK = EvaluateConfig(bootstrap_resamples=300)


@pytest.fixture(scope="module")
def labelled(tiny_source) -> pd.DataFrame:
    """The tiny synthetic cohort's clinical table with its os_2y labels."""
    table, _ = add_labels(read_clinical_csv(tiny_source / "clinical.csv"))
    return table[table.os_2y.notna()].reset_index(drop=True)


def scored(labelled: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """A predictions file of another tool: its own column names, a score that carries the
    label plus noise (probability of os_2y = 1)."""
    rng = np.random.default_rng(seed)
    signal = labelled.os_2y.astype(float).to_numpy() + rng.normal(0, 0.8, len(labelled))
    return pd.DataFrame({"Patient": labelled.patient_id, "p_dead": 1 / (1 + np.exp(-signal))})


def config_for(tmp_path, frame, clinical, **changes) -> ImportConfig:
    path = tmp_path / "predictions.csv"
    frame.to_csv(path, index=False)
    fields = dict(
        file=str(path),
        clinical=str(clinical),
        patient_column="Patient",
        score_column="p_dead",
        label="os_2y",
        baselines=False,
    )
    return ImportConfig(**(fields | changes))


def test_imported_auc_and_ci_equal_sklearn_and_the_bootstrap(tmp_path, tiny_source, labelled):
    frame = scored(labelled)
    config = config_for(tmp_path, frame, tiny_source / "clinical.csv")
    run_id, metrics = import_predictions(config, "imported", tmp_path / "art", QUICK)
    block = metrics["splits"]["external"]
    assert set(metrics["splits"]) == {"external"} and block["n"] == len(labelled)
    assert block["auc"]["auc"] == pytest.approx(roc_auc_score(labelled.os_2y, frame.p_dead))
    boot = bootstrap_metrics(labelled.os_2y, frame.p_dead, 0.5, 300, seed=0)
    assert block["auc"]["ci_low"] == pytest.approx(boot["auc"]["ci_low"])
    assert block["auc"]["ci_high"] == pytest.approx(boot["auc"]["ci_high"])
    folder = tmp_path / "art" / "runs" / run_id
    saved = pd.read_csv(folder / "predictions.csv", dtype={"patient_id": str})
    assert list(saved.columns) == ["patient_id", "split", "fold", "y_true", "y_prob"]
    assert json.loads((folder / "threshold.json").read_text())["threshold"] == 0.5
    assert json.loads((folder / "status.json").read_text())["state"] == "finished"
    assert "a stated value (the default)" in metrics["threshold_source"]["text"]


def test_every_bad_row_is_counted_with_examples_and_left_out(tmp_path, tiny_source, labelled):
    frame = scored(labelled).astype({"p_dead": object})
    good = len(frame)
    frame.loc[0, "Patient"] = ""  # no PatientID
    frame.loc[1, "p_dead"] = ""  # missing score
    frame.loc[2, "p_dead"] = "1.5"  # out of range
    frame.loc[3, "p_dead"] = "high"  # not a number
    extra = pd.DataFrame(
        {
            "Patient": ["NOBODY-1", frame.Patient[5], frame.Patient[5]],
            "p_dead": [0.3, 0.2, 0.4],  # an unknown ID; an ID given twice (three rows)
        }
    )
    # a copy of the clinical table in which patient 6 was censored early: no 2-year label
    clinical = pd.read_csv(tiny_source / "clinical.csv", dtype=str, keep_default_na=False)
    censored = clinical.PatientID == frame.Patient[6]
    clinical.loc[censored, ["Survival.time", "deadstatus.event"]] = ["300", "0"]
    # and patient 7 has two clinical rows: its label is ambiguous
    clinical = pd.concat([clinical, clinical[clinical.PatientID == frame.Patient[7]]])
    clinical.to_csv(tmp_path / "clinical.csv", index=False)
    config = config_for(tmp_path, pd.concat([frame, extra]), tmp_path / "clinical.csv")
    _, metrics = import_predictions(config, "bad-rows", tmp_path / "art", QUICK)
    counts = {name: entry["count"] for name, entry in metrics["excluded"].items()}
    assert counts == {
        "no_patient_id": 1,
        "duplicate_id": 3,
        "duplicate_clinical_id": 1,
        "unknown_id": 1,
        "bad_score": 3,
        "no_label": 1,
    }
    assert "NOBODY-1" in metrics["excluded"]["unknown_id"]["examples"][0]
    assert "data row 1" in metrics["excluded"]["no_patient_id"]["examples"][0]
    assert "high" in " ".join(metrics["excluded"]["bad_score"]["examples"])
    assert "before the 730-day horizon" in metrics["excluded"]["no_label"]["examples"][0]
    assert metrics["n_used"] == good - 7  # rows 0-3, patients 5, 6 and 7
    excluded = pd.read_csv(tmp_path / "art" / "runs" / "bad-rows" / "excluded.csv")
    assert len(excluded) == sum(counts.values())


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"file": "missing.csv"}, "missing.csv: does not exist"),
        ({"patient_column": "PatientID"}, "no column 'PatientID' (--patient-column)"),
        ({"score_column": "prob"}, "no column 'prob' (--score-column)"),
        ({"clinical": "nowhere.csv"}, "nowhere.csv: does not exist"),
    ],
)
def test_a_bad_file_or_column_is_named_and_no_run_is_made(
    tmp_path, tiny_source, labelled, changes, message
):
    config = config_for(tmp_path, scored(labelled), tiny_source / "clinical.csv")
    config = ImportConfig(**(config.__dict__ | changes))
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        import_predictions(config, "never", tmp_path / "art", QUICK)
    assert not (tmp_path / "art" / "runs" / "never").exists()


def test_an_inverted_score_is_flagged_and_left_as_it_is(tmp_path, tiny_source, labelled):
    frame = scored(labelled).assign(p_dead=lambda f: 1 - f.p_dead)  # in fact P(alive)
    config = config_for(tmp_path, frame, tiny_source / "clinical.csv")
    _, metrics = import_predictions(config, "inverted", tmp_path / "art", QUICK)
    auc = metrics["splits"]["external"]["auc"]
    assert auc["ci_high"] < 0.5
    assert auc["auc"] == pytest.approx(roc_auc_score(labelled.os_2y, frame.p_dead))  # not flipped
    assert any("probably ranks the other class" in w for w in metrics["warnings"])
    fixed = ImportConfig(**(config.__dict__ | {"invert_score": True}))
    _, metrics = import_predictions(fixed, "fixed", tmp_path / "art", QUICK)
    assert metrics["splits"]["external"]["auc"]["auc"] == pytest.approx(1 - auc["auc"])
    assert not any("other class" in w for w in metrics["warnings"])


def test_the_threshold_comes_from_its_stated_source(tmp_path, tiny_source, labelled):
    clinical = tiny_source / "clinical.csv"
    art = tmp_path / "art"
    split = config_for(tmp_path, scored(labelled), clinical, validation_fraction=0.4, seed=3)
    run_id, metrics = import_predictions(split, "split", art, QUICK)
    predictions = pd.read_csv(art / "runs" / run_id / "predictions.csv")
    validation = predictions[predictions.split == "validation"]
    assert (
        0 < len(validation) < len(predictions)
        and "validation part" in metrics["threshold_source"]["text"]
    )
    expected = choose_threshold(validation.y_true, validation.y_prob, "youden").threshold
    assert metrics["thresholds"][0]["threshold"] == pytest.approx(expected)
    assert metrics["splits"]["external"]["n"] == len(predictions) - len(validation)

    carried = config_for(tmp_path, scored(labelled, 1), clinical, threshold_from=run_id)
    _, metrics = import_predictions(carried, "carried", art, QUICK)
    assert metrics["thresholds"][0]["threshold"] == pytest.approx(expected)
    assert f"frozen from run {run_id}" in metrics["threshold_source"]["text"]
    # the other run changes its mind later: a re-evaluation keeps the rule resolved at import
    from nsclc_engine.evaluate.run import write_threshold_file

    write_threshold_file(art / "runs" / run_id, operating_point={"threshold": 0.9})
    assert evaluate_main(["carried", "--artifacts", str(art)]) == 0
    again = json.loads((art / "runs" / "carried" / "metrics.json").read_text())
    assert again["thresholds"][0]["threshold"] == pytest.approx(expected)
    assert evaluate_main([run_id, "--artifacts", str(art)]) == 0  # refits on its validation part
    refitted = json.loads((art / "runs" / run_id / "metrics.json").read_text())
    assert refitted["thresholds"][0]["threshold"] == pytest.approx(expected)

    stated = config_for(tmp_path, scored(labelled), clinical, threshold=0.3)
    _, metrics = import_predictions(stated, "stated", art, QUICK)
    assert metrics["thresholds"][0]["threshold"] == 0.3
    with pytest.raises(ValueError, match="give one threshold source"):
        config_for(tmp_path, scored(labelled), clinical, threshold=0.3, threshold_from=run_id)


def test_baselines_read_another_features_table(tmp_path, tiny_source, labelled):
    rng = np.random.default_rng(1)
    features = pd.DataFrame({"case": labelled.patient_id})
    features["original_shape_Volume"] = 1000 * np.exp(rng.normal(3 + labelled.os_2y, 0.7))
    for k in range(30):
        features[f"wavelet-LLH_glcm_Noise{k}"] = rng.normal(size=len(labelled))
    features.to_csv(tmp_path / "features.csv", index=False)
    config = config_for(
        tmp_path,
        scored(labelled),
        tiny_source / "clinical.csv",
        baselines=True,
        cv_folds=3,
        features=str(tmp_path / "features.csv"),
        features_patient_column="case",
    )
    _, metrics = import_predictions(config, "with-features", tmp_path / "art", QUICK)
    assert set(metrics["baselines"]) == {"clinical", "volume", "radiomics"}
    for entry in metrics["baselines"].values():
        assert entry["external"]["n"] == len(labelled)
    assert metrics["baselines"]["volume"]["external"]["auc"]["value"] > 0.75  # the planted signal
    wrong = ImportConfig(**(config.__dict__ | {"features_patient_column": "id"}))
    with pytest.raises(ValueError, match="no column 'id' \\(--features-patient-column\\)"):
        import_predictions(wrong, "never", tmp_path / "art", QUICK)


def test_a_repeated_clinical_id_is_excluded_and_the_baseline_fitted_on_the_rest(
    tmp_path, tiny_source, labelled
):
    """Issue 26, item 4: a PatientID on two clinical rows used to cost the imported run its
    clinical baseline ("cannot reindex"). Now the patient is excluded as the cohort builder
    excludes it (duplicate_clinical_id), and the baseline is the one fitted out of fold on
    the other patients alone (oracle: ``out_of_fold`` on the table without that patient)."""
    frame = scored(labelled)
    clinical = pd.read_csv(tiny_source / "clinical.csv", dtype=str, keep_default_na=False)
    twice = frame.Patient[4]
    clinical = pd.concat([clinical, clinical[clinical.PatientID == twice]])
    clinical.to_csv(tmp_path / "clinical.csv", index=False)
    config = config_for(tmp_path, frame, tmp_path / "clinical.csv", baselines=True, cv_folds=3)
    _, metrics = import_predictions(config, "repeated", tmp_path / "art", QUICK)

    assert metrics["excluded"]["duplicate_clinical_id"]["count"] == 1
    excluded = pd.read_csv(tmp_path / "art" / "runs" / "repeated" / "excluded.csv")
    rows = excluded[["patient_id", "reason"]].to_numpy().tolist()
    assert rows == [[twice, "duplicate_clinical_id"]]
    assert "clinical" in metrics["baselines"]
    assert metrics["baselines"]["clinical"]["external"]["n"] == len(labelled) - 1
    assert not any("cannot reindex" in w for w in metrics["warnings"])
    assert any(f"repeats 1 PatientID ({twice} (2 rows))" in w for w in metrics["warnings"])
    saved = pd.read_csv(tmp_path / "art" / "runs" / "repeated" / "baselines.csv", dtype=str)
    saved = saved[saved.model == "clinical"]
    rest = labelled[labelled.patient_id != twice]
    expected = out_of_fold(
        "clinical", rest, None, rest.set_index("patient_id").os_2y, n_folds=3, seed=0
    )
    assert saved.patient_id.tolist() == expected.patient_id.tolist()
    np.testing.assert_allclose(saved.y_prob.astype(float), expected.y_prob, rtol=1e-9)


def test_out_of_fold_names_a_repeated_patient_rather_than_failing_to_reindex(labelled):
    clinical = pd.concat([labelled, labelled.iloc[[2]]])
    with pytest.raises(
        ValueError, match=f"clinical table repeats PatientID {labelled.patient_id[2]}"
    ):
        out_of_fold("clinical", clinical, None, labelled.set_index("patient_id").os_2y, 3)


def test_feature_selection_stays_inside_the_cross_validation():
    """600 noise features and random labels: selecting the best features on all patients
    before cross-validating gives a high AUC by chance every time; selecting inside the
    folds gives chance on average (one draw of 80 patients swings widely)."""
    from sklearn.feature_selection import SelectKBest, f_classif
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    honest, leaky = [], []
    for seed in range(4):
        rng = np.random.default_rng(seed)
        columns = [f"original_firstorder_Noise{k}" for k in range(600)]
        features = pd.DataFrame(rng.normal(size=(80, 600)), columns=columns)
        features.insert(0, "patient_id", [f"P{k:03d}" for k in range(80)])
        labels = pd.Series(rng.integers(0, 2, 80), index=features.patient_id)
        assert radiomics_columns(features) == columns
        frame = out_of_fold("radiomics", pd.DataFrame(), features, labels, n_folds=5, seed=0)
        honest.append(roc_auc_score(frame.y_true, frame.y_prob))
        chosen = SelectKBest(f_classif, k=20).fit_transform(features[columns], labels)
        cv = StratifiedKFold(5, shuffle=True, random_state=0)
        probability = cross_val_predict(
            LogisticRegression(), chosen, labels, cv=cv, method="predict_proba"
        )[:, 1]
        leaky.append(roc_auc_score(labels, probability))
    assert min(leaky) > 0.75
    assert abs(np.mean(honest) - 0.5) < 0.1


@pytest.mark.slow
def test_the_published_cnn_reproduces_its_auc_beside_real_baselines(tmp_path):
    require_shared(HOSNY)
    clinical = require_shared(LUNG1_CLINICAL)
    argv = ["--import", str(HOSNY), "--name", "hosny2018", "--clinical", str(clinical)]
    argv += ["--patient-column", "id", "--score-column", "logit_1", "--label", "os_2y"]
    argv += ["--invert-score", "--artifacts", str(tmp_path), "--set", "bootstrap_resamples=500"]
    assert evaluate_main(argv) == 0
    metrics = json.loads((tmp_path / "runs" / "hosny2018" / "metrics.json").read_text())
    block = metrics["splits"]["external"]
    assert block["n"] == 206 and block["auc"]["auc"] == pytest.approx(0.700, abs=0.001)
    assert metrics["excluded"]["no_patient_id"]["count"] == 5
    assert set(metrics["baselines"]) == {"clinical", "volume", "radiomics"}
    for entry in metrics["baselines"].values():
        assert entry["external"]["n"] == 206 and "delong_image_vs_baseline" in entry
    # the volume baseline equals scikit-learn's own out-of-fold fit on the same folds
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline

    from nsclc_engine.evaluate.baselines import preprocessing

    saved = pd.read_csv(tmp_path / "runs" / "hosny2018" / "baselines.csv")
    volume = saved[saved.model == "volume"].set_index("patient_id")
    table = pd.read_csv(HOSNY).dropna(subset=["id"]).set_index("id").loc[volume.index]
    expected = cross_val_predict(
        make_pipeline(preprocessing("volume"), LogisticRegression(max_iter=1000)),
        table[["original_shape_Volume"]] / 1000.0,
        volume.y_true,
        cv=StratifiedKFold(5, shuffle=True, random_state=0),
        method="predict_proba",
    )[:, 1]
    np.testing.assert_allclose(volume.y_prob, expected, rtol=1e-6)
    auc = roc_auc_score(volume.y_true, volume.y_prob)
    assert metrics["baselines"]["volume"]["external"]["auc"]["value"] == pytest.approx(auc)


# --- survival predictions (issue 27, item 5) ---------------------------------------------

FAST = EvaluateConfig(bootstrap_resamples=20)


@pytest.fixture(scope="module")
def outcomes(tiny_source) -> pd.DataFrame:
    """The tiny cohort's clinical table: survival time and event per patient."""
    return read_clinical_csv(tiny_source / "clinical.csv")


def survival_file(outcomes: pd.DataFrame, path, seed: int = 0) -> pd.DataFrame:
    """A survival tool's file: a risk (higher = earlier death) carrying the outcome plus
    noise, S(730) and P(death by 365) from an exponential model of it, own column names."""
    rng = np.random.default_rng(seed)
    risk = -np.log(outcomes.survival_time_days.to_numpy(float)) + rng.normal(0, 0.7, len(outcomes))
    hazard = np.exp(risk + 5.5) / 1000
    frame = pd.DataFrame(
        {
            "Patient": outcomes.patient_id,
            "hazard": risk,
            "S2y": np.exp(-hazard * 730),
            "P1y": 1 - np.exp(-hazard * 365),
        }
    )
    frame.to_csv(path, index=False)
    return frame


def survival_argv(path, clinical, art, name="surv") -> list[str]:
    argv = ["--import", str(path), "--task", "survival", "--risk-column", "hazard"]
    argv += ["--survival-column", "730=S2y", "--death-column", "365=P1y", "--name", name]
    argv += ["--clinical", str(clinical), "--patient-column", "Patient"]
    return [*argv, "--artifacts", str(art), "--set", "bootstrap_resamples=20"]


def test_imported_survival_metrics_equal_scikit_survival_and_the_smoother(
    tmp_path, tiny_source, outcomes
):
    from sksurv.metrics import concordance_index_censored, cumulative_dynamic_auc
    from sksurv.util import Surv

    from nsclc_engine.stats.survival_calibration import smoothed_calibration

    frame = survival_file(outcomes, tmp_path / "tool.csv")
    art = tmp_path / "art"
    assert (
        evaluate_main(survival_argv(tmp_path / "tool.csv", tiny_source / "clinical.csv", art)) == 0
    )
    folder = art / "runs" / "surv"
    metrics = json.loads((folder / "metrics.json").read_text())
    saved = pd.read_csv(folder / "predictions.csv", dtype={"patient_id": str})
    assert list(saved.columns) == [
        "patient_id", "split", "fold", "risk", "time_days", "event", "survival_365d",
        "survival_730d",
    ]  # fmt: skip
    assert set(saved.split) == {"external"} and set(saved.fold) == {0}
    np.testing.assert_allclose(saved.survival_730d, frame.S2y)
    np.testing.assert_allclose(saved.survival_365d, 1 - frame.P1y)  # a death column, stored as S
    time = outcomes.survival_time_days.to_numpy(float)
    event = outcomes.deadstatus_event.to_numpy(int).astype(bool)
    block = metrics["splits"]["external"]
    assert (block["n"], block["n_events"]) == (len(outcomes), event.sum())
    c_index = concordance_index_censored(event, time, frame.hazard)[0]
    assert block["c_index"]["c_index"] == pytest.approx(c_index)
    assert block["c_index"]["ci_low"] < c_index < block["c_index"]["ci_high"]
    horizons = metrics["horizons"]
    assert horizons["horizons_days"] == [365.0, 730.0] and horizons["held_out"] == "external"
    assert "D-calibration needs" in horizons["raw"]["d_calibration_note"]
    surv = Surv.from_arrays(event, time)  # the censoring of the imported patients themselves
    for horizon, p in ((365, frame.P1y), (730, 1 - frame.S2y)):
        entry = horizons["raw"][f"{horizon}d"]
        auc, _ = cumulative_dynamic_auc(surv, surv, p.to_numpy(), [horizon])
        assert entry["td_auc"] == pytest.approx(auc[0])
        ici = smoothed_calibration(p, time, event, horizon)["ici"]
        assert entry["smoothed"]["ici"] == pytest.approx(ici)
        assert entry["n_deaths_by_horizon"] == int(((time <= horizon) & event).sum())
    config = json.loads((folder / "config.json").read_text())
    assert (config["kind"], config["task"]) == ("imported", "survival")
    assert "Survival report" in (folder / "report.html").read_text()
    # re-evaluated from its saved predictions, at a third horizon with no probability given:
    # the risk's time-dependent AUC there, and no calibration
    again = ["surv", "--artifacts", str(art), "--set", "horizons_days=[365,1000]"]
    again += ["--set", "bootstrap_resamples=20"]
    assert evaluate_main(again) == 0
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["horizons"]["horizons_days"] == [365.0, 730.0, 1000.0]
    entry = metrics["horizons"]["raw"]["1000d"]
    auc, _ = cumulative_dynamic_auc(surv, surv, frame.hazard.to_numpy(), [1000])
    assert entry["td_auc_of"] == "risk" and entry["td_auc"] == pytest.approx(auc[0])
    assert "smoothed" not in entry and "no survival probability" in entry["calibration_note"]
    assert metrics["splits"]["external"]["c_index"]["c_index"] == pytest.approx(c_index)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"S2y": 73.0}, "column 'S2y' (--survival-column 730=S2y) has 1 value outside [0, 1]"),
        ({"P1y": -0.2}, "column 'P1y' (--death-column 365=P1y) has 1 value outside [0, 1]"),
        ("drop S2y", "no column 'S2y' (--survival-column 730=S2y)"),
        ("drop hazard", "no column 'hazard' (--risk-column)"),
    ],
)
def test_a_bad_survival_column_is_named_and_no_run_is_made(
    tmp_path, tiny_source, outcomes, capsys, change, message
):
    frame = survival_file(outcomes, tmp_path / "tool.csv")
    if isinstance(change, dict):
        column, value = next(iter(change.items()))
        frame.loc[3, column] = value
    else:
        frame = frame.drop(columns=change.split()[1])
    frame.to_csv(tmp_path / "tool.csv", index=False)
    art = tmp_path / "art"
    assert (
        evaluate_main(survival_argv(tmp_path / "tool.csv", tiny_source / "clinical.csv", art)) == 2
    )
    error = capsys.readouterr().err
    assert message in error and "tool.csv" in error and error.count("\n") == 1
    if isinstance(change, dict):
        assert f"PatientID {outcomes.patient_id[3]}" in error
    assert not (art / "runs" / "surv").exists()


def test_a_survival_import_screens_rows_and_refuses_a_threshold(tmp_path, tiny_source, outcomes):
    frame = survival_file(outcomes, tmp_path / "tool.csv").astype({"S2y": object, "hazard": object})
    frame.loc[0, "hazard"] = "n/a"  # a risk that is not a number
    frame.loc[1, "S2y"] = ""  # a missing probability
    clinical = pd.read_csv(tiny_source / "clinical.csv", dtype=str, keep_default_na=False)
    clinical.loc[clinical.PatientID == frame.Patient[2], "Survival.time"] = "NA"  # no outcome
    clinical.to_csv(tmp_path / "clinical.csv", index=False)
    fields = dict(
        file=str(tmp_path / "tool.csv"),
        clinical=str(tmp_path / "clinical.csv"),
        patient_column="Patient",
        score_column="hazard",
        task="survival",
        survival_columns=("730=S2y",),
        invert_score=True,
    )
    frame.to_csv(tmp_path / "tool.csv", index=False)
    _, metrics = import_predictions(ImportConfig(**fields), "screened", tmp_path / "art", FAST)
    counts = {name: entry["count"] for name, entry in metrics["excluded"].items()}
    assert counts == {"bad_risk": 1, "no_outcome": 1, "bad_survival": 1}
    assert metrics["n_used"] == len(outcomes) - 3 and metrics["score"] == "-hazard"
    saved = pd.read_csv(tmp_path / "art" / "runs" / "screened" / "predictions.csv")
    kept = frame.iloc[3:]
    np.testing.assert_allclose(saved.risk, -kept.hazard.astype(float))  # negated as asked
    assert any("ranks the other way" in w for w in metrics["warnings"])  # and flagged
    for changes, message in (
        ({"threshold": 0.3}, "a survival import takes no --threshold"),
        ({"survival_columns": ("two years=S2y",)}, "give DAYS=COLUMN"),
        ({"task": "classification"}, "--survival-column and --death-column need --task survival"),
    ):
        with pytest.raises(ValueError, match=message):
            ImportConfig(**(fields | changes))
