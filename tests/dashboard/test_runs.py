"""The Runs page: the overview, comparing runs, and the first start."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from nsclc_engine.dashboard import runs as runs_view
from nsclc_engine.train.config import TrainConfig


def test_runs_overview_lists_the_finished_run(shown_artifacts, view):
    table = runs_view.runs_overview(shown_artifacts)
    row = table.set_index("run_id").loc["fixture"]
    assert row.state == "finished" and row.label == "os_2y" and row.preset == "smoke"
    assert row[runs_view.TEST_AUC] == pytest.approx(view.metrics["splits"]["test"]["auc"]["auc"])
    assert "held out, not for choosing" in runs_view.TEST_AUC
    assert view.finished and view.history
    assert row.threshold == pytest.approx(view.threshold["threshold"])  # the one in force
    # runs are ranked on validation: sklearn on the validation rows is the oracle
    validation = view.predictions[view.predictions.split == "validation"]
    assert row["validation AUC"] == pytest.approx(
        roc_auc_score(validation.y_true, validation.y_prob)
    )
    assert row[runs_view.VALIDATION_RANK] == 1
    assert pd.isna(row["validation C-index"])


def overview(rows: list[dict]) -> pd.DataFrame:
    base = {"state": "finished", "task": "classification", "label": "os_2y"}
    frame = pd.DataFrame([base | r for r in rows])
    frame["validation AUC"] = frame.get("validation AUC", np.nan)
    frame["validation C-index"] = frame.get("validation C-index", np.nan)
    frame[runs_view.TEST_AUC] = frame.get(runs_view.TEST_AUC, np.nan)
    frame.insert(0, runs_view.VALIDATION_RANK, runs_view.validation_rank(frame))
    return frame


def test_runs_are_ranked_by_validation_never_by_test():
    frame = overview(
        [
            {"run_id": "newest", "validation AUC": 0.60, runs_view.TEST_AUC: 0.90},
            {"run_id": "queued", "state": "queued"},
            {"run_id": "best", "validation AUC": 0.80, runs_view.TEST_AUC: 0.55},
            {"run_id": "other label", "label": "x", "validation AUC": 0.70},
            {"run_id": "cox", "task": "survival", "validation C-index": 0.65},
            {"run_id": "imported", runs_view.TEST_AUC: 0.99},  # no validation: not ranked
        ]
    )
    ranks = frame.set_index("run_id")[runs_view.VALIDATION_RANK]
    assert ranks["best"] == 1 and ranks["newest"] == 2  # test 0.90 does not lift it
    assert ranks["other label"] == 1 and ranks["cox"] == 1  # ranked within task and label
    assert pd.isna(ranks["imported"]) and pd.isna(ranks["queued"])
    ordered = runs_view.ranked_by_validation(frame).run_id.tolist()
    assert ordered == ["queued", "best", "newest", "other label", "cox", "imported"]


def test_baselines_carry_holm_adjusted_p_values(view):
    multipletests = pytest.importorskip("statsmodels.stats.multitest").multipletests
    table = runs_view.baseline_table(view)
    if table.empty:
        pytest.skip("the fixture run has no baselines")
    tested = table["p (DeLong)"].notna()
    assert table.attrs["n_comparisons"] == tested.sum()
    expected = multipletests(table.loc[tested, "p (DeLong)"].astype(float), method="holm")[1]
    np.testing.assert_allclose(table.loc[tested, "p (Holm)"].astype(float), expected)


def test_pairwise_tests_adjust_over_every_pair_shown(view):
    from dataclasses import replace

    from nsclc_engine.stats.metrics import delong_test

    multipletests = pytest.importorskip("statsmodels.stats.multitest").multipletests
    rng = np.random.default_rng(0)
    noisy = [
        replace(
            view,
            run_id=f"noisy{i}",
            predictions=view.predictions.assign(
                y_prob=lambda f: np.clip(f.y_prob + rng.normal(0, 0.2, len(f)), 0, 1)
            ),
        )
        for i in range(2)
    ]
    views = [view, *noisy]
    tests = runs_view.pairwise_tests(views)
    assert len(tests) == 3  # every pair of three runs
    first = tests.iloc[0]
    test_a = view.predictions[view.predictions.split == "test"]
    test_b = noisy[0].predictions[noisy[0].predictions.split == "test"]
    oracle = delong_test(test_a.y_true, test_a.y_prob, test_b.y_prob)
    assert (first.a, first.b) == ("fixture", "noisy0")
    assert first.p == pytest.approx(oracle["p_value"])
    np.testing.assert_allclose(tests["p (Holm)"], multipletests(tests.p, method="holm")[1])
    line = runs_view.pair_line(tests, "noisy0", "fixture")
    assert line.startswith("One of 3 pairwise comparisons") and "Holm-adjusted" in line


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


def test_sessions_starting_at_once_launch_the_demo_once(tmp_path, monkeypatch):
    """Streamlit sessions are threads of one process; eight open the app at the same moment."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    monkeypatch.delenv("NSCLC_NO_AUTOSTART", raising=False)
    monkeypatch.setattr("nsclc_engine.dashboard.runs.launch", lambda config, root, run_id: run_id)
    for round_ in range(25):
        root = tmp_path / str(round_)
        together = Barrier(8)

        def open_app(_, root=root, together=together):
            together.wait()
            return runs_view.first_start(root)

        with ThreadPoolExecutor(8) as pool:
            started = list(pool.map(open_app, range(8)))
        assert started.count("demo") == 1 and started.count(None) == 7


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


def test_k_fold_survival_runs_are_compared_within_folds(survival_view):
    """A k-fold run's test risks come from one Cox model per fold, each on its own location:
    the paired difference counts only pairs scored by one fold model in each run (oracle: the
    same-fold pairs counted by hand with harrell_c_index per fold)."""
    from dataclasses import replace

    from nsclc_engine.stats.survival import concordance_pairs

    test = survival_view.predictions[survival_view.predictions.split == "test"]
    fold = np.arange(len(test)) % 2
    k_fold = test.assign(fold=fold, risk=test.risk + np.where(fold == 1, 5.0, 0.0))
    a = replace(survival_view, predictions=k_fold)
    b = replace(survival_view, predictions=k_fold.assign(risk=-k_fold.risk))
    comparable, concordant_a = concordance_pairs(k_fold.time_days, k_fold.event, k_fold.risk, fold)
    _, concordant_b = concordance_pairs(k_fold.time_days, k_fold.event, -k_fold.risk, fold)
    expected = (concordant_a.sum() - concordant_b.sum()) / comparable.sum()
    difference = runs_view.compare_survival_runs(a, b)["difference"]["difference"]
    assert difference == pytest.approx(expected)
    # pooling the shifted fold's risks with the other's would rank folds, not patients
    pooled = runs_view.compare_survival_runs(
        replace(a, predictions=k_fold.assign(fold=0)), replace(b, predictions=k_fold.assign(fold=0))
    )["difference"]["difference"]
    assert abs(pooled - difference) > 0.05


def test_compare_roc_draws_each_runs_test_curve(view):
    curves = runs_view.compare_roc(view, view)
    test = view.predictions[view.predictions.split == "test"]
    expected = roc_auc_score(test.y_true, test.y_prob)
    assert [c["name"] for c in curves] == [f"{view.run_id} (test)"] * 2
    assert curves[0]["auc"] == pytest.approx(expected)
    assert curves[0]["fpr"][0] == 0 and curves[0]["tpr"][-1] == 1
