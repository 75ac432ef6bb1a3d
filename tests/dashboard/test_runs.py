"""The Runs page: the overview, comparing runs, and the first start."""

import pytest
from sklearn.metrics import roc_auc_score

from nsclc_engine.dashboard import runs as runs_view
from nsclc_engine.train.config import TrainConfig


def test_runs_overview_lists_the_finished_run(dashboard_artifacts, view):
    table = runs_view.runs_overview(dashboard_artifacts)
    row = table.set_index("run_id").loc["fixture"]
    assert row.state == "finished" and row.label == "os_2y" and row.preset == "smoke"
    assert row["test AUC"] == pytest.approx(view.metrics["splits"]["test"]["auc"]["auc"])
    assert view.finished and view.history
    assert row.threshold == pytest.approx(view.threshold["threshold"])  # the one in force


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


def test_compare_roc_draws_each_runs_test_curve(view):
    curves = runs_view.compare_roc(view, view)
    test = view.predictions[view.predictions.split == "test"]
    expected = roc_auc_score(test.y_true, test.y_prob)
    assert [c["name"] for c in curves] == [f"{view.run_id} (test)"] * 2
    assert curves[0]["auc"] == pytest.approx(expected)
    assert curves[0]["fpr"][0] == 0 and curves[0]["tpr"][-1] == 1
