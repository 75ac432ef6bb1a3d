"""The search: trials are ordinary runs, the objective is validation only, the test part is
scored once for the best trial, and several workers share one study."""

import json
from dataclasses import replace

import optuna
import pandas as pd
import pytest
import torch

from nsclc_engine.tune.__main__ import main
from nsclc_engine.tune.space import load_space
from nsclc_engine.tune.study import TuneConfig, run_worker, study_table

# the small ViT: a tenth of a ResNet-18 to train and to checkpoint; the search is what is tested
SPACE = {
    "lr": {"low": 1e-4, "high": 3e-3, "log": True},
    "batch_size": {"choices": [4, 8]},
    "model": {"choices": ["vit"]},
}


def tiny_study(tiny_source, tmp_path, name="s", trials=2, **extra) -> TuneConfig:
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
    tiny_source, tmp_path, capsys, monkeypatch
):
    artifacts = tmp_path / "artifacts"
    space = tmp_path / "space.json"
    space.write_text(json.dumps(SPACE))
    argv = ["--trials", "2", "--study", "s", "--preset", "tiny", "--space", str(space)]
    argv += ["--dicom", str(tiny_source / "dicom"), "--clinical", str(tiny_source / "clinical.csv")]
    # the worker that scores the best trial's test part is lost between predicting and
    # evaluating it; the next worker evaluates those predictions and predicts nothing again
    from nsclc_engine.evaluate import run as evaluate_module
    from nsclc_engine.train import runner

    predicted, real_predict = [], runner._predict_test
    monkeypatch.setattr(
        runner, "_predict_test", lambda *a: predicted.append(a[0].name) or real_predict(*a)
    )

    def lost(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as scorer:
        scorer.setattr(evaluate_module, "evaluate_run", lost)
        with pytest.raises(KeyboardInterrupt):
            main([*argv, "--artifacts", str(artifacts), "--pruner", "none"])
    assert main([*argv, "--artifacts", str(artifacts), "--pruner", "none", "--trials", "0"]) == 0
    printed = capsys.readouterr().out
    assert len(predicted) == 1
    assert "test, scored once: auc" in printed and "inflates it" in printed
    report = json.loads((artifacts / "studies" / "s.json").read_text())
    assert report["trials"]["complete"] == 2 and report["storage"].startswith("sqlite:///")
    best = report["best"]["run_id"]
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{artifacts}/studies/optuna.db")
    table = study_table(study)
    assert sorted(table.run_id) == [f"s-t000{n}" for n in range(2)]
    for run_id in table.run_id:
        folder = artifacts / "runs" / run_id
        config = json.loads((folder / "config.json").read_text())
        assert (config["study"], config["hold_out_test"]) == ("s", True)
        assert config["trial"] == int(run_id[-4:]) and config["preset"] == "smoke"
        # a trial is never resumed: its best weights, written once, and no resume checkpoint
        assert sorted(path.name for path in folder.glob("checkpoint*")) == ["checkpoint_best.pt"]
        best_epoch = max(
            (line for line in map(json.loads, (folder / "history.jsonl").open()) if line["best"]),
            key=lambda line: line["epoch"],
        )["epoch"]
        assert torch.load(folder / "checkpoint_best.pt", weights_only=True)["epoch"] == best_epoch
        parts = set(pd.read_csv(folder / "predictions.csv").split)
        # only the best trial's test part is ever predicted, and only it is evaluated
        assert ("test" in parts) == (run_id == best)
        assert (folder / "metrics.json").exists() == (run_id == best)
    assert set(table["param lr"]) and set(table["param batch_size"]) <= {4, 8}
    assert study.best_value == pytest.approx(report["best"]["validation"])
    # a second worker adds trials to the same study; the best is never scored twice
    assert main([*argv, "--artifacts", str(artifacts), "--pruner", "none", "--trials", "1"]) == 0
    report = json.loads((artifacts / "studies" / "s.json").read_text())
    assert report["trials"]["complete"] == 3
    scored = [
        r
        for r in table.run_id
        if "test" in set(pd.read_csv(artifacts / "runs" / r / "predictions.csv").split)
    ]
    assert len(scored) <= 1
    # the winner confirmed over two new seeds: no seed's test part is looked at before both
    # have finished, then each once; the seeds' mean validation beside the search's best
    confirm_winner(argv, artifacts, monkeypatch, capsys)


def confirm_winner(argv, artifacts, monkeypatch, capsys) -> None:
    from nsclc_engine.evaluate.experiment import read_summary
    from nsclc_engine.runs import read_config, run_dir, status
    from nsclc_engine.train import runner

    seeds = ["s-confirm-seed1", "s-confirm-seed2"]  # the study's seed is 0
    scored_when = []
    real = runner.evaluate_test

    def watched(run_id, root):
        if run_id in seeds:
            scored_when.append([status(run_dir(r, root)).get("state") for r in seeds])
        return real(run_id, root)

    monkeypatch.setattr(runner, "evaluate_test", watched)
    confirm = ["--trials", "0", "--confirm-seeds", "2", "--artifacts", str(artifacts)]
    assert main([*argv, "--pruner", "none", *confirm]) == 0
    assert scored_when == [["finished", "finished"]] * 2  # test once each, after both ended
    for seed, run_id in zip((1, 2), seeds, strict=True):
        config = read_config(run_dir(run_id, artifacts))
        assert (config["seed"], config["experiment"], config["study"]) == (seed, "s-confirm", "")
    report = json.loads((artifacts / "studies" / "s-confirm.json").read_text())
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{artifacts}/studies/optuna.db")
    assert report["search_validation"] == pytest.approx(study.best_value)
    validation = read_summary(artifacts, "s-confirm")["splits"]["validation"]["auc"]
    assert report["confirmed_validation"]["mean"] == pytest.approx(validation["mean"])
    assert report["confirmed_test"]["n"] == 2
    assert "over the new seeds" in capsys.readouterr().out


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
    assert len(first) == 2 and all(value is not None for _, _, value in first)
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


def test_k_fold_studies_cannot_claim_an_honest_test_score_and_settings_must_match(tmp_path):
    with pytest.raises(ValueError, match="every label"):
        TuneConfig(folds=3)
    TuneConfig(folds=3, evaluate_best=False)  # a k-fold search, confirmed elsewhere
    first = TuneConfig(trials=0, study="fixed", preset="tiny")
    run_worker(first, tmp_path)  # creates the study, runs nothing, reports
    with pytest.raises(ValueError, match=r"other settings \(preset\)"):
        run_worker(TuneConfig(trials=0, study="fixed", preset="demo"), tmp_path)


def test_the_test_part_is_looked_at_once_even_when_a_later_trial_does_better(tmp_path):
    from optuna.distributions import FloatDistribution

    from nsclc_engine.tune.study import finish, open_study

    config = TuneConfig(trials=0, study="once", preset="tiny")
    study = open_study(config, tmp_path)
    for number, value in enumerate((0.61, 0.74)):
        study.add_trial(
            optuna.trial.create_trial(
                params={"lr": 1e-3},
                distributions={"lr": FloatDistribution(1e-5, 1e-2, log=True)},
                value=value,
                user_attrs={"run_id": f"once-t000{number}", "host": "elsewhere"},
            )
        )
    study.set_user_attr("best_test", {"run_id": "once-t0000", "auc": {"auc": 0.6}})
    report = finish(config, tmp_path)
    assert report["best"]["run_id"] == "once-t0001" and report["test"]["run_id"] == "once-t0000"
    assert "not scored" in report["test_note"]
    study.set_user_attr("best_test", None)
    report = finish(config, tmp_path)  # the best's run is on another machine: say where
    assert "is on elsewhere" in report["waiting"] and "--trials 0" in report["waiting"]


@pytest.mark.slow
def test_a_trial_on_two_processes_runs_the_trainer_under_torchrun(
    tiny_source, tmp_path, monkeypatch
):
    """DDP on gloo (the CPU's backend) stands in for several GPUs: rank 0 reports each epoch
    to the study, and the trial's outcome is read from its run."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    config = tiny_study(tiny_source, tmp_path, name="ddp", trials=1, nproc_per_trial=2)
    report = run_worker(replace(config, device="cpu"), tmp_path / "artifacts")
    study = optuna.load_study(
        study_name="ddp", storage=f"sqlite:///{tmp_path}/artifacts/studies/optuna.db"
    )
    (trial,) = study.get_trials()
    assert trial.state == optuna.trial.TrialState.COMPLETE, trial.user_attrs
    assert sorted(trial.intermediate_values) == [1, 2]  # both epochs reported, from rank 0
    assert report["test"]["run_id"] == "ddp-t0000"


def test_the_studies_page_confirms_with_the_studys_own_settings(tmp_path):
    from nsclc_engine.dashboard.studies import confirmation_config
    from nsclc_engine.tune.study import settings_mismatch, settings_of

    space = tmp_path / "space.json"
    space.write_text(json.dumps(SPACE))
    started = TuneConfig(study="s", space=str(space), preset="tiny", task="survival", seed=3)
    saved = settings_of(started)
    config = confirmation_config("s", "sqlite:///x.db", saved, tmp_path, 5)
    assert settings_mismatch(saved, config) == ""
    assert (config.trials, config.confirm_seeds, config.seed) == (0, 5, 3)
