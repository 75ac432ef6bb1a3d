"""Experiments over seeds on the pages (nsclc_engine.dashboard.experiments), against the
runs' own files."""

import numpy as np
import pytest

from nsclc_engine.dashboard import experiments
from nsclc_engine.dashboard import runs as runs_view
from nsclc_engine.dashboard.run_view import load_run, part_predictions
from nsclc_engine.evaluate.experiment import write_summary
from nsclc_engine.runs import run_dir
from nsclc_engine.stats.metrics import metrics_at_threshold
from tests.evaluate.test_experiment import seeded_copies


@pytest.fixture()
def experiment(shown_artifacts, tmp_path):
    """Three seeds of the fixture run whose held-out AUCs differ (0.6, 0.7, 0.8)."""
    artifacts = tmp_path / "artifacts"

    def change(metrics, seed):
        metrics["splits"]["test"]["auc"]["auc"] = 0.6 + 0.1 * seed

    runs = seeded_copies(shown_artifacts, artifacts, "fixture", "exp", (0, 1, 2), change)
    write_summary(artifacts, "exp")
    return artifacts, runs


def test_an_experiment_is_one_row_that_expands_to_its_runs(experiment):
    artifacts, runs = experiment
    overview = runs_view.runs_overview(artifacts)
    summaries = {"exp": experiments.read_summary(artifacts, "exp")}
    folded = experiments.experiment_rows(overview, summaries)
    assert folded.run_id.tolist() == ["exp"] and folded.kind.tolist() == ["experiment"]
    row = folded.iloc[0]
    assert row[runs_view.TEST_AUC] == "0.700 ± 0.100 (n=3)" and row.seeds == "3 / 3"
    opened = experiments.experiment_rows(overview, summaries, expanded=["exp"])
    assert opened.run_id.iloc[0] == "exp"
    assert sorted(opened.run_id.str.strip().tolist()[1:]) == sorted(runs)


def test_the_threshold_spread_and_a_patients_seeds_are_each_runs_own(experiment):
    artifacts, runs = experiment
    views = [load_run(run_dir(run_id, artifacts)) for run_id in runs]
    spread = experiments.threshold_spread(views, "validation", 0.5, "none")
    fitted = [v.threshold["fitted"]["thresholds"][0]["threshold"] for v in views]
    assert spread["fitted"]["mean"] == pytest.approx(np.mean(fitted))
    for name in ("sensitivity", "specificity"):
        values = [
            metrics_at_threshold(f.y_true, f.y_prob, 0.5)[name]
            for f in (part_predictions(v.predictions, "validation", "none") for v in views)
        ]
        assert spread["metrics"][name]["mean"] == pytest.approx(np.mean(values))
    patient = str(views[0].predictions.patient_id.iloc[0])
    by_seed = experiments.patient_by_seed(views, patient)
    assert by_seed.seed.tolist() == [0, 1, 2] and by_seed.run_id.tolist() == runs
    own = views[1].predictions[views[1].predictions.patient_id.astype(str) == patient]
    assert by_seed.value.iloc[1] == pytest.approx(own.y_prob.iloc[0])
    figure = experiments.seed_strip_figure(by_seed, "predicted probability")
    assert list(figure.data[0].x) == by_seed.value.tolist()


def test_the_survival_table_gains_the_spread_over_seeds(shown_artifacts, tmp_path):
    from nsclc_engine.dashboard.survival import c_index_table

    artifacts = tmp_path / "artifacts"

    def change(metrics, seed):
        metrics["models"]["c_index"]["image"]["test"]["c_index"] = 0.6 + 0.1 * seed

    runs = seeded_copies(shown_artifacts, artifacts, "fixture-survival", "s", (0, 1), change)
    summary = write_summary(artifacts, "s")
    view = load_run(run_dir(runs[0], artifacts))
    table = experiments.with_seed_spread(c_index_table(view), summary)
    image_test = table[(table.model == "image") & (table.split == "test")].iloc[0]
    assert image_test["over seeds (mean ± SD, 95% CI)"].startswith("0.650 ± 0.071")
    assert experiments.with_seed_spread(c_index_table(view), None).equals(c_index_table(view))
