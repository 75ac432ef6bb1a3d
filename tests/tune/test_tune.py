"""The search: trials are ordinary runs, the objective is validation only, the test part is
scored once for the best trial, and several workers share one study."""

import json

import optuna
import pandas as pd
import pytest

from nsclc_engine.tune.__main__ import main
from nsclc_engine.tune.space import load_space
from nsclc_engine.tune.study import TuneConfig, run_worker, study_table

SPACE = {"lr": {"low": 1e-4, "high": 3e-3, "log": True}, "batch_size": {"choices": [4, 8]}}


def tiny_study(tiny_source, tmp_path, name="s", trials=3, **extra) -> TuneConfig:
    space = tmp_path / "space.json"
    space.write_text(json.dumps(SPACE))
    return TuneConfig(
        trials=trials,
        study=name,
        space=str(space),
        preset="tiny",
        pruner="none",
        dicom=str(tiny_source / "dicom"),
        clinical=str(tiny_source / "clinical.csv"),
        **extra,
    )


@pytest.mark.slow
def test_a_study_on_sqlite_runs_trials_as_runs_and_scores_only_the_best_on_test(
    tiny_source, tmp_path, capsys
):
    artifacts = tmp_path / "artifacts"
    space = tmp_path / "space.json"
    space.write_text(json.dumps(SPACE))
    argv = ["--trials", "3", "--study", "s", "--preset", "tiny", "--space", str(space)]
    argv += ["--dicom", str(tiny_source / "dicom"), "--clinical", str(tiny_source / "clinical.csv")]
    assert main([*argv, "--artifacts", str(artifacts), "--pruner", "none"]) == 0
    printed = capsys.readouterr().out
    assert "test, scored once: auc" in printed and "inflates it" in printed
    report = json.loads((artifacts / "studies" / "s.json").read_text())
    assert report["trials"]["complete"] == 3 and report["storage"].startswith("sqlite:///")
    best = report["best"]["run_id"]
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{artifacts}/studies/optuna.db")
    table = study_table(study)
    assert sorted(table.run_id) == [f"s-t000{n}" for n in range(3)]
    for run_id in table.run_id:
        folder = artifacts / "runs" / run_id
        config = json.loads((folder / "config.json").read_text())
        assert (config["study"], config["hold_out_test"]) == ("s", True)
        assert config["trial"] == int(run_id[-4:]) and config["preset"] == "smoke"
        parts = set(pd.read_csv(folder / "predictions.csv").split)
        # only the best trial's test part is ever predicted, and only it is evaluated
        assert ("test" in parts) == (run_id == best)
        assert (folder / "metrics.json").exists() == (run_id == best)
    assert set(table["param lr"]) and set(table["param batch_size"]) <= {4, 8}
    assert study.best_value == pytest.approx(report["best"]["validation"])
    # a second worker adds trials to the same study; the best is never scored twice
    assert main([*argv, "--artifacts", str(artifacts), "--pruner", "none", "--trials", "1"]) == 0
    report = json.loads((artifacts / "studies" / "s.json").read_text())
    assert report["trials"]["complete"] == 4
    scored = [
        r
        for r in table.run_id
        if "test" in set(pd.read_csv(artifacts / "runs" / r / "predictions.csv").split)
    ]
    assert len(scored) <= 1


@pytest.mark.slow
def test_the_test_labels_cannot_influence_the_search(tiny_source, tmp_path, monkeypatch):
    """The same split, every test patient's label flipped: the same trials, the same values,
    the same best trial."""
    from nsclc_engine.cohort import splits as split_module
    from nsclc_engine.cohort.splits import load_splits
    from nsclc_engine.train import runner

    def trials_and_best(folder) -> tuple[list, int]:
        run_worker(tiny_study(tiny_source, tmp_path, evaluate_best=False), folder)
        study = optuna.load_study(study_name="s", storage=f"sqlite:///{folder}/studies/optuna.db")
        return [(t.number, t.params, t.value) for t in study.trials], study.best_trial.number

    first, best = trials_and_best(tmp_path / "a")
    splits = load_splits(tmp_path / "a" / "runs" / "s-t0000" / "splits.json")[0]
    test = set(splits[0]["test"])
    prepare = runner.prepare_data

    def flipped(*args, **kwargs):
        data = prepare(*args, **kwargs)
        data.labels = {p: 1 - y if p in test else y for p, y in data.labels.items()}
        return data

    monkeypatch.setattr(runner, "prepare_data", flipped)
    monkeypatch.setattr(split_module, "splits_for", lambda *args: splits)  # the same split
    second, best_again = trials_and_best(tmp_path / "b")
    assert len(first) == 3 and all(value is not None for _, _, value in first)
    assert second == first and best_again == best


def test_a_space_is_checked_before_any_trial(tmp_path):
    bad = tmp_path / "space.json"
    for space, message in [
        ({"lr": {"low": 1, "high": 0}}, "needs 'low' < 'high'"),
        ({"augment": {"choices": ["minority", "all"]}}, "label cue"),
        ({"seed": {"choices": [1, 2]}}, "fixed for a whole study"),
        ({"colour": {"choices": [1]}}, "not a training setting"),
    ]:
        bad.write_text(json.dumps(space))
        with pytest.raises(ValueError, match=message):
            load_space(bad)
    assert "lr" in load_space()


@pytest.mark.slow
def test_two_workers_share_one_study_on_postgresql(postgres_url, tiny_source, tmp_path):
    """Two worker processes started with the same command against one PostgreSQL study:
    every trial once, none lost, and the best trial's test part scored exactly once."""
    import subprocess
    import sys

    space = tmp_path / "space.json"
    space.write_text(json.dumps(SPACE))
    artifacts = tmp_path / "artifacts"
    command = [sys.executable, "-m", "nsclc_engine.tune", "--trials", "2", "--study", "pg"]
    command += ["--storage", postgres_url, "--preset", "tiny", "--space", str(space)]
    command += [
        "--dicom",
        str(tiny_source / "dicom"),
        "--clinical",
        str(tiny_source / "clinical.csv"),
    ]
    command += ["--artifacts", str(artifacts), "--pruner", "none"]
    workers = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for _ in range(2)
    ]
    outputs = [worker.communicate(timeout=600)[0].decode() for worker in workers]
    assert all(worker.returncode == 0 for worker in workers), [o[-3000:] for o in outputs]
    study = optuna.load_study(study_name="pg", storage=postgres_url)
    trials = study.get_trials()
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs["run_id"] for t in trials}) == 4
    scored = [
        t.user_attrs["run_id"]
        for t in trials
        if "test"
        in set(pd.read_csv(artifacts / "runs" / t.user_attrs["run_id"] / "predictions.csv").split)
    ]
    assert scored == [study.best_trial.user_attrs["run_id"]]
    assert study.user_attrs["best_test"]["run_id"] == scored[0]
    assert "postgres@127.0.0.1" in outputs[0] and "password" not in " ".join(outputs)
