"""The Threshold page: rules fitted on validation, metrics with patient-level CIs, saving."""

import itertools
import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from nsclc_engine.dashboard import run_view
from nsclc_engine.dashboard import runs as runs_view
from nsclc_engine.dashboard import threshold as threshold_view
from nsclc_engine.dashboard.survival_probabilities import (
    death_probability,
    fold_baselines,
    survival_options,
)
from nsclc_engine.runs import read_survival_baselines
from nsclc_engine.stats.metrics import (
    auc_score,
    bootstrap_metrics,
    choose_threshold,
    metrics_at_threshold,
)
from nsclc_engine.stats.survival_probability import Baseline


def test_rules_come_from_validation(view):
    validation = view.predictions[view.predictions.split == "validation"]
    rules = threshold_view.rule_thresholds(view.predictions)
    assert rules["Youden J"] == choose_threshold(validation.y_true, validation.y_prob).threshold


def pooled_frame() -> pd.DataFrame:
    """Pooled k-fold-like predictions: 90 patients, 30 of them in two rows, tied scores."""
    rng = np.random.default_rng(3)
    patients = [f"P{i:03d}" for i in range(90)] + [f"P{i:03d}" for i in range(30)]
    y_true = rng.integers(0, 2, 90)[[int(p[1:]) for p in patients]]
    y_prob = np.round(np.clip(rng.normal(0.35 + 0.25 * y_true, 0.2), 0, 1), 2)
    return pd.DataFrame({"patient_id": patients, "y_true": y_true, "y_prob": y_prob})


@pytest.mark.parametrize("part", ["run validation", "pooled with ties"])
def test_the_explorer_table_equals_the_metrics_at_every_threshold(view, part):
    """What the browser draws at any threshold (a row of the table) is what the evaluation's
    own functions give there: the counts and rates of metrics_at_threshold, the patient-level
    bootstrap CIs of bootstrap_metrics (same seed), and the curves' AUC."""
    if part == "run validation":
        frame = run_view.part_predictions(view.predictions, "validation")
    else:
        frame = pooled_frame()
    table = threshold_view.explorer_table(frame, n_resamples=200)
    scores = table["scores"]
    assert scores == sorted(set(frame.y_prob), reverse=True)
    between = [(a + b) / 2 for a, b in itertools.pairwise(scores)]
    for threshold in [1.01, *scores, *between, 0.0]:
        row = sum(score >= threshold for score in scores)  # what the browser looks up
        expected = metrics_at_threshold(frame.y_true, frame.y_prob, threshold)
        boot = bootstrap_metrics(
            frame.y_true, frame.y_prob, threshold, 200, seed=0, groups=frame.patient_id
        )
        counts = {name: values[row] for name, values in table["counts"].items()}
        assert counts == {name: expected[name] for name in counts}, threshold
        for name, entry in table["metrics"].items():
            value = np.nan if entry["value"][row] is None else entry["value"][row]
            assert value == pytest.approx(expected[name], nan_ok=True), (name, threshold)
            low, high = (np.nan if v is None else v for v in entry["ci"][row])
            wanted = (boot[name]["ci_low"], boot[name]["ci_high"])
            assert (low, high) == pytest.approx(wanted, nan_ok=True), (name, threshold)
    assert table["auc"] == pytest.approx(auc_score(frame.y_true, frame.y_prob))


def test_the_explorer_ci_draws_patients_when_pooled_rows_repeat_them(view):
    """Pooled k-fold validation rows repeat patients; a row bootstrap made the CIs too narrow."""
    once = run_view.part_predictions(view.predictions, "validation").sort_values("patient_id")
    repeated = once.loc[once.index.repeat(3)]
    table_once = threshold_view.explorer_table(once, n_resamples=300)
    table_repeated = threshold_view.explorer_table(repeated, n_resamples=300)
    for key in ("sensitivity", "specificity"):
        repeated_ci = np.array(table_repeated["metrics"][key]["ci"], dtype=float)
        once_ci = np.array(table_once["metrics"][key]["ci"], dtype=float)
        np.testing.assert_allclose(repeated_ci, once_ci)


def test_a_linked_threshold_is_a_number_in_0_1():
    assert threshold_view.parse_threshold("0.4321") == 0.432
    for bad in ("1.5", "-0.1", "nan", "x"):
        with pytest.raises(ValueError):
            threshold_view.parse_threshold(bad)


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


# --- survival runs: a threshold on P(death by a horizon) ---------------------------------


def censored_copy(survival_view):
    """The fixture's predictions with the two earliest validation deaths turned into
    censorings: patients censored before the horizon, whose outcome there is unknown."""
    frame = survival_view.predictions.copy()
    early = frame[(frame.split == "validation") & (frame.event == 1)].nsmallest(2, "time_days")
    frame.loc[early.index, "event"] = 0
    return frame


def test_survival_calls_at_the_horizon_are_hand_counts_and_sksurvs_auc(survival_view):
    from sksurv.metrics import cumulative_dynamic_auc
    from sksurv.nonparametric import CensoringDistributionEstimator
    from sksurv.util import Surv

    frame = censored_copy(survival_view)
    censored_view = replace(survival_view, predictions=frame)
    rows = frame[frame.split == "validation"]
    train = frame[(frame.split == "train") & (frame.fold == 0)]
    # P(death by day 730): the validation baseline by hand, the one evaluation wrote as a column
    baseline = Baseline.from_dict(read_survival_baselines(survival_view.run_dir)[0]["raw"])
    p = 1 - baseline.survival(rows.risk.to_numpy(), [730.0])[:, 0]
    assert p == pytest.approx(1 - rows.survival_730d.to_numpy())
    time, event = rows.time_days.to_numpy(), rows.event.to_numpy().astype(bool)
    case, control = event & (time <= 730), time > 730
    censored = ~event & (time <= 730)
    assert censored.sum() == 2 and case.any() and control.any()
    censoring = CensoringDistributionEstimator().fit(Surv.from_arrays(train.event, train.time_days))
    weight = censoring.predict_ipcw(Surv.from_arrays(np.ones(case.sum(), bool), time[case]))
    auc = cumulative_dynamic_auc(
        Surv.from_arrays(train.event, train.time_days),
        Surv.from_arrays(event, time),
        p,
        [730.0],
    )[0][0]
    for threshold in (0.0, *np.quantile(p, [0.25, 0.5, 0.75]), 1.0):
        state = threshold_view.survival_threshold_state(
            censored_view, "validation", 730, threshold, "raw", 50
        )
        called = p >= threshold
        table = state["confusion"]
        expected = [
            [(case & called).sum(), (case & ~called).sum()],
            [(control & called).sum(), (control & ~called).sum()],
            [(censored & called).sum(), (censored & ~called).sum()],
        ]
        assert table.to_numpy().tolist() == expected, threshold
        assert list(table.index) == [
            "died by day 730",
            "alive after day 730",
            "censored before day 730",
        ]
        assert list(table.columns) == ["predicted death", "predicted survival"]
        # the censored-before-horizon patients are never true or false negatives
        assert state["counts"]["tn"] + state["counts"]["fn"] == (~called & ~censored).sum()
        m = state["metrics"]
        if case.any():
            assert m["sensitivity"] == pytest.approx((weight * called[case]).sum() / weight.sum())
        assert m["specificity"] == pytest.approx((control & ~called).sum() / control.sum())
        assert state["auc"] == pytest.approx(auc)
        assert state["point"]["tpr"] == m["sensitivity"]
        shown = state["patients"]
        assert (shown.call == "predicted death").sum() == called.sum()
        assert sum(c.sum() for c in state["histogram"]["counts"].values()) == len(rows)


def test_survival_probability_at_another_horizon_is_breslows(survival_view):
    """Off the saved columns, P(death by day h) comes from the validation baseline: Breslow's
    H0(h) = sum over validation deaths by h of 1 / sum of exp(risk) still at risk."""
    predictions = survival_view.predictions
    validation = predictions[predictions.split == "validation"]
    time, event, risk = validation.time_days, validation.event, validation.risk
    h0 = sum(1 / np.exp(risk[time >= t]).sum() for t in time[(event == 1) & (time <= 1000)])
    state = threshold_view.survival_threshold_state(
        survival_view, "test", 1000, 0.5, n_resamples=10
    )
    test = predictions[predictions.split == "test"]
    assert state["patients"].p.to_numpy() == pytest.approx(1 - np.exp(-h0 * np.exp(test.risk)))
    assert state["fitted"]["text"].startswith("Youden threshold fitted here on validation")
    # at the evaluated horizon the raw baseline gives the column evaluation wrote, and
    # evaluation's fitted threshold is used
    at_column = threshold_view.survival_threshold_state(
        survival_view, "test", 730, 0.5, n_resamples=10
    )
    column = 1 - test.survival_730d.to_numpy()
    assert at_column["patients"].p.to_numpy() == pytest.approx(column)
    assert at_column["p_source"].startswith("raw baseline")
    fitted = survival_view.threshold["fitted"]["thresholds"][0]["threshold"]
    assert at_column["fitted"]["threshold"] == fitted
    # without a saved baseline: the column itself, and no other horizon
    no_baseline = replace(survival_view, run_dir=None)
    p, source = death_probability(no_baseline, test, 730.0, "raw")
    assert source == "column survival_730d" and p == pytest.approx(column)
    with pytest.raises(ValueError, match="no survival probability at day 1000"):
        threshold_view.survival_threshold_state(no_baseline, "test", 1000, 0.5, n_resamples=10)
    choices = survival_options(survival_view)
    assert choices["horizons"] == [365.0, 730.0] and choices["default"] == 730.0
    assert choices["kinds"] == ["raw", "recalibrated"] and choices["any_horizon"]
    assert threshold_view.why_no_threshold(survival_view) == ""


def test_a_survival_run_without_its_own_baseline_offers_only_its_columns(survival_view):
    predictions = survival_view.predictions
    external = replace(
        survival_view,
        run_dir=None,  # no baseline saved (an external run of a k-fold source has none)
        config=survival_view.config | {"kind": "external"},
        predictions=predictions.assign(split="external"),
    )
    assert fold_baselines(external) == {}
    choices = survival_options(external)
    assert choices["kinds"] == ["raw"] and not choices["any_horizon"]
    assert choices["parts"] == ["external"] and threshold_view.why_no_threshold(external) == ""
    columns = ["survival_365d", "survival_730d"]
    bare = replace(external, predictions=external.predictions.drop(columns=columns))
    assert "no survival probabilities" in threshold_view.why_no_threshold(bare)
    with pytest.raises(ValueError, match="no survival probability at day 730"):
        threshold_view.survival_threshold_state(bare, "external", 730, 0.5, n_resamples=10)


def test_a_survival_operating_point_is_saved_with_its_horizon(tmp_path):
    from nsclc_engine.evaluate.run import write_threshold_file

    write_threshold_file(
        tmp_path, fitted={"horizon_days": 730.0, "thresholds": [{"threshold": 0.3}]}
    )
    saved = threshold_view.save_survival_threshold(tmp_path, 0.42, 730, "raw", "validation")
    written = json.loads((tmp_path / "threshold.json").read_text())
    assert written["operating_point"] == saved and written["threshold"] == 0.42
    assert saved["horizon_days"] == 730.0 and saved["baseline"] == "raw"
    assert saved["scale"] == "probability of death by day 730" and "fitted" in written
    for bad, match in (
        ({"split": "test"}, "validation"),
        ({"threshold": 1.2}, "must lie in"),
        ({"kind": "isotonic"}, "baseline kind"),
        ({"horizon": 0}, "positive number of days"),
    ):
        arguments = {"threshold": 0.4, "horizon": 730, "kind": "raw", "split": "validation"}
        with pytest.raises(ValueError, match=match):
            threshold_view.survival_operating_point(**(arguments | bad))
