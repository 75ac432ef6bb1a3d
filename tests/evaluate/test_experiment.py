"""Experiments over seeds (nsclc_engine.evaluate.experiment and train --seeds): the summary
against the runs' own files and a t interval by hand; the command's runs, order and refusals."""

import json
import shutil

import numpy as np
import pytest

from nsclc_engine.evaluate import experiment
from nsclc_engine.runs import read_config, run_dir

T_975_2 = 4.302652729911275  # Student's t, 97.5th percentile, 2 degrees of freedom


def seeded_copies(source, artifacts, run_id: str, name: str, seeds, change) -> list[str]:
    """Copies of a finished run as an experiment's runs, one per seed; ``change(metrics,
    seed)`` edits each copy's metrics.json."""
    made = []
    for seed in seeds:
        target = run_dir(f"{name}-seed{seed}", artifacts)
        shutil.copytree(run_dir(run_id, source), target, ignore=shutil.ignore_patterns("*.pt"))
        config = read_config(target) | {"experiment": name, "seed": seed}
        (target / "config.json").write_text(json.dumps(config))
        status = json.loads((target / "status.json").read_text()) | {"run_id": target.name}
        (target / "status.json").write_text(json.dumps(status))
        metrics = json.loads((target / "metrics.json").read_text())
        change(metrics, seed)
        (target / "metrics.json").write_text(json.dumps(metrics))
        made.append(target.name)
    return made


def test_the_summary_is_the_runs_own_numbers_over_seeds(shown_artifacts, tmp_path):
    artifacts = tmp_path / "artifacts"
    aucs = {0: 0.6, 1: 0.7, 2: 0.8}

    def change(metrics, seed):
        metrics["splits"]["test"]["auc"]["auc"] = aucs[seed]
        metrics.setdefault("baselines", {})["volume"] = {
            "delong_image_vs_baseline": {"difference": aucs[seed] - 0.65}
        }

    runs = seeded_copies(shown_artifacts, artifacts, "fixture", "exp", aucs, change)
    summary = experiment.write_summary(artifacts, "exp")
    saved = json.loads(experiment.summary_path(artifacts, "exp").read_text())
    assert saved["splits"]["test"]["auc"] == summary["splits"]["test"]["auc"]
    assert [entry["run_id"] for entry in summary["runs"]] == runs
    test_auc = summary["splits"]["test"]["auc"]
    assert test_auc["values"] == {"0": 0.6, "1": 0.7, "2": 0.8}
    assert test_auc["mean"] == pytest.approx(0.7) and test_auc["sd"] == pytest.approx(0.1)
    half = T_975_2 * 0.1 / np.sqrt(3)
    assert (test_auc["ci_low"], test_auc["ci_high"]) == pytest.approx((0.7 - half, 0.7 + half))
    # every other number is the run's own, recomputed from its files
    for entry in summary["runs"]:
        folder = run_dir(entry["run_id"], artifacts)
        metrics = json.loads((folder / "metrics.json").read_text())
        calibration = json.loads((folder / "calibration.json").read_text())
        seed = str(entry["seed"])
        frozen = metrics["splits"]["validation"]["at_threshold"]
        validation = summary["splits"]["validation"]
        assert validation["at threshold: sensitivity"]["values"][seed] == frozen["sensitivity"]
        slope = calibration["splits"]["test"]["raw"]["slope"]
        assert summary["splits"]["test"]["calibration slope"]["values"][seed] == slope
        # copied from the run's resolved config (what a trained run records there is checked in
        # tests/train/test_train.py)
        assert entry["versions"]["torch"] and entry["threads"] >= 1 and entry["device"] == "cpu"
    volume = summary["against_baselines"]["volume"]
    assert volume["mean"] == pytest.approx(0.05) and volume["wins"] == 2 and volume["n"] == 3
    assert experiment.experiment_names(artifacts) == ["exp"]
    assert "  test AUC: 0.700 ± 0.100" in "\n".join(experiment.summary_lines(summary))


def test_a_survival_experiment_compares_c_index_with_each_baseline(shown_artifacts, tmp_path):
    artifacts = tmp_path / "artifacts"

    def change(metrics, seed):
        c_index = metrics["models"]["c_index"]
        c_index["image"]["test"]["c_index"] = 0.60 + 0.05 * seed
        c_index["clinical"]["test"]["c_index"] = 0.62

    seeded_copies(shown_artifacts, artifacts, "fixture-survival", "surv", (0, 1), change)
    summary = experiment.summarize(artifacts, "surv")
    clinical = summary["against_baselines"]["clinical"]
    assert clinical["differences"] == pytest.approx({"0": -0.02, "1": 0.03})
    assert clinical["wins"] == 1 and "c_index" in summary["splits"]["test"]


def test_one_seed_has_no_interval_and_names_are_checked():
    single = experiment.interval([0.7])
    assert single["mean"] == 0.7 and single["ci_low"] is None and np.isnan(single["sd"])
    assert experiment.default_name({"task": "survival", "label": "deadstatus_event"}) == (
        "survival-deadstatus_event-demo-resnet18"
    )
    for bad in ("", "../up", "a b", "-x"):
        with pytest.raises(ValueError, match="use letters, digits"):
            experiment.check_name(bad)


def test_seeds_make_one_queued_run_each_in_order_and_a_failed_one_does_not_stop_them(
    tmp_path, monkeypatch, capsys
):
    from nsclc_engine.train import __main__ as train_cli

    artifacts = tmp_path / "artifacts"
    trained = []

    def fake_train(run_id, root, show_progress=True):
        trained.append(run_id)
        if run_id.endswith("seed3"):
            raise RuntimeError("out of memory")
        return {}

    monkeypatch.setattr(train_cli, "train_in_turn", fake_train)
    argv = ["--seeds", "4,3,4", "--experiment", "e1", "--artifacts", str(artifacts), "--quiet"]
    assert train_cli.main(argv) == 1
    assert trained == ["e1-seed4", "e1-seed3"]  # as given, once each
    for seed in (4, 3):
        config = read_config(run_dir(f"e1-seed{seed}", artifacts))
        assert (config["seed"], config["experiment"]) == (seed, "e1")
    said = capsys.readouterr()
    assert "not finished: e1-seed3 (RuntimeError: out of memory)" in said.err
    assert experiment.read_summary(artifacts, "e1")["n_finished"] == 0
    # the same experiment again is refused before anything is made
    assert train_cli.main(argv) == 2
    assert "has runs already (e1-seed4, e1-seed3)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--seeds", "3"], "two seeds or more"),
        (["--seeds", "0,x"], "give seeds as 0,1,2,3,4 or 0-4"),
        (["--seeds", "0,1", "--seed", "2"], "leave out --seed"),
        (["--experiment", "e"], "give --seeds too"),
        (["--seeds", "0-2", "--experiment", "a b"], "use letters, digits"),
    ],
)
def test_bad_seed_arguments_are_one_line(tmp_path, capsys, argv, message):
    from nsclc_engine.train.__main__ import main

    assert main([*argv, "--artifacts", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_seed_ranges_expand():
    assert experiment.parse_seeds("0-4") == [0, 1, 2, 3, 4] and experiment.parse_seeds(
        "2, 0,2"
    ) == [2, 0]


def test_a_run_whose_share_of_the_achievable_is_undefined_is_summarised_without_it():
    split = {"auc": {"auc": 0.52}, "at_threshold": {}}
    paired = {"test": {"difference": -0.2, "share": None}}  # best achievable near chance
    metrics = {"splits": {"test": split}, "best_achievable": {"paired": paired}}
    assert experiment.run_values(metrics)["test"] == {"auc": 0.52}
    paired["test"]["share"] = {"value": 0.8}
    assert experiment.run_values(metrics)["test"]["share of achievable"] == 0.8
