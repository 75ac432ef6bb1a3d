"""The search's winner confirmed (``python -m nsclc_engine.tune --confirm-seeds N``): the best
trial's configuration re-run as an experiment over ``N`` new seeds
(:mod:`nsclc_engine.evaluate.experiment`), each with its test part held out; only when every
seed has finished is each run's test part scored, once. The report puts the experiment's mean
validation score beside the search's optimistic one (the best of many noisy estimates)."""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path

from nsclc_engine import runs
from nsclc_engine.atomic import write_json
from nsclc_engine.evaluate.experiment import run_id_of, spread_text, write_summary
from nsclc_engine.runs import read_predictions
from nsclc_engine.task_spec import task_spec
from nsclc_engine.tune.study import TuneConfig, storage_url, trial_config

log = logging.getLogger("nsclc_engine.tune")


def confirmation_name(study: str) -> str:
    return f"{study}-confirm"


def confirmation_seeds(config: TuneConfig, n_seeds: int) -> list[int]:
    """``n_seeds`` seeds the search never used (the study's is ``config.seed``)."""
    if n_seeds < 2:
        raise ValueError(f"confirm-seeds {n_seeds}: a confirmation needs two seeds or more")
    return [config.seed + 1 + i for i in range(n_seeds)]


def confirm_best(
    config: TuneConfig, artifacts: str | os.PathLike, n_seeds: int, show_progress: bool = False
) -> dict:
    """Re-run the study's best trial over ``n_seeds`` new seeds, test held out, then score
    each run's test part once; returns (and writes ``studies/<study>-confirm.json``) the
    report. Runs of an earlier, interrupted confirmation are continued, not repeated."""
    import optuna
    from optuna.trial import TrialState

    from nsclc_engine.train.jobs import train_in_turn
    from nsclc_engine.train.runner import create_run, evaluate_test, run_training

    artifacts = Path(artifacts)
    study = optuna.load_study(study_name=config.study, storage=storage_url(config, artifacts))
    if not any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
        raise ValueError(f"study {config.study!r} has no completed trial to confirm")
    best = study.best_trial
    name = confirmation_name(config.study)
    base = trial_config(config, best.params, best.number)
    # the experiment's runs are not trials of the study: its test parts are their own
    base = replace(base, study="", trial=-1, hold_out_test=True, experiment=name)
    run_ids = []
    for seed in confirmation_seeds(config, n_seeds):
        run_id = run_id_of(name, seed)
        if not runs.run_dir(run_id, artifacts).exists():
            create_run(replace(base, seed=seed), artifacts, run_id)
        run_ids.append(run_id)
    write_summary(artifacts, name)
    for run_id in run_ids:  # each seed in turn; a finished one is not trained again
        if runs.status(runs.run_dir(run_id, artifacts)).get("state") == "finished":
            continue
        if config.queue:
            train_in_turn(run_id, artifacts, show_progress=show_progress)
        else:
            run_training(run_id, artifacts, show_progress=show_progress)
    states = {r: runs.status(runs.run_dir(r, artifacts)).get("state") for r in run_ids}
    if any(state != "finished" for state in states.values()):
        raise ValueError(f"confirmation of {config.study!r}: not every seed finished ({states})")
    for run_id in run_ids:  # the confirmation has ended: each test part, once
        folder = runs.run_dir(run_id, artifacts)
        if "test" not in set(read_predictions(folder).split):
            evaluate_test(run_id, artifacts)
    summary = write_summary(artifacts, name)
    key = task_spec(config.task).metric_key
    report = {
        "study": config.study,
        "experiment": name,
        "best_trial": best.number,
        "params": best.params,
        "search_validation": best.value,
        "search_note": "the best of the study's trials by validation: optimistic",
        "confirmed_validation": summary["splits"].get("validation", {}).get(key),
        "confirmed_test": summary["splits"].get("test", {}).get(key),
        "runs": run_ids,
    }
    write_json(artifacts / "studies" / f"{name}.json", report)
    study.set_user_attr("confirmation", {"experiment": name, "runs": run_ids})
    return report


def report_lines(report: dict) -> list[str]:
    return [
        f"confirmation of study {report['study']}'s best trial (#{report['best_trial']}) over "
        f"{len(report['runs'])} new seeds (experiment {report['experiment']}):",
        f"  validation: search {report['search_validation']:.3f} (optimistic), over the new "
        f"seeds {spread_text(report['confirmed_validation'] or {})}",
        f"  test, scored once after every seed finished: "
        f"{spread_text(report['confirmed_test'] or {})}",
    ]
