"""Hyperparameter search: ``python -m nsclc_engine.tune --trials N [--storage URL] [--study
NAME] [--space FILE] [--preset tiny|demo|paper]`` runs trials of an Optuna study over the
training config (:mod:`nsclc_engine.tune.study`). Start the same command on several machines
with one PostgreSQL ``--storage`` to share the study; ``--nproc-per-trial N`` trains each trial
under torchrun on N GPUs."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from nsclc_engine.config import cli_error
from nsclc_engine.paths import artifacts_dir
from nsclc_engine.task_spec import LABEL_CHOICES, TASKS, metric_of
from nsclc_engine.tune.study import PRUNERS, STUDY_PRESETS, TuneConfig, run_worker


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nsclc_engine.tune", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--trials",
        type=int,
        default=10,
        help="trials this worker runs (0: only score the best trial's test part and report)",
    )
    parser.add_argument("--study", default="tune", help="the study's name (shared by workers)")
    parser.add_argument(
        "--storage",
        default=os.environ.get("NSCLC_TUNE_STORAGE", ""),
        help="an Optuna storage URL (postgresql+psycopg2://user:password@host/db; better in "
        "$NSCLC_TUNE_STORAGE, out of the process list); default: a SQLite file under "
        "<artifacts>/studies/",
    )
    parser.add_argument("--space", default="", help="a JSON search space (default: the house one)")
    parser.add_argument("--preset", default="demo", choices=list(STUDY_PRESETS))
    parser.add_argument("--pruner", default="median", choices=list(PRUNERS))
    parser.add_argument("--task", default="classification", choices=list(TASKS))
    parser.add_argument("--label", default="", choices=["", *LABEL_CHOICES])
    parser.add_argument("--folds", type=int, default=0, help="k-fold trials: the mean over folds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dicom", default="", help="real data (with --clinical); default: demo")
    parser.add_argument("--clinical", default="")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--nproc-per-trial", type=int, default=0, help="torchrun ranks per trial")
    parser.add_argument(
        "--no-test", action="store_true", help="do not score the best trial's test part yet"
    )
    parser.add_argument(
        "--resume", action="store_true", help="start trials again in a study that was stopped"
    )
    parser.add_argument(
        "--no-queue",
        action="store_true",
        help="start each trial at once instead of in turn on the device (one worker per GPU, "
        "each with its own CUDA_VISIBLE_DEVICES)",
    )
    parser.add_argument(
        "--heartbeat",
        type=int,
        default=60,
        metavar="SECONDS",
        help="a running trial's heartbeat in the study's storage: a trial silent for twice "
        "this is taken as lost (its worker killed), failed and its settings run again once "
        "(default 60; the study keeps its first worker's)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        metavar="N",
        help="CPU threads of this worker and its trials (default: torch's, all cores); with "
        "several workers on one machine, cores divided among them",
    )
    parser.add_argument(
        "--confirm-seeds",
        type=int,
        default=0,
        metavar="N",
        help="then re-run the best trial's settings as an experiment over N new seeds (test "
        "held out until every seed has finished, then scored once each), its mean validation "
        "score beside the search's optimistic one",
    )
    parser.add_argument(
        "--artifacts", help="artifacts folder (default $NSCLC_ARTIFACTS_DIR or ./artifacts)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        config = TuneConfig(
            trials=args.trials,
            study=args.study,
            storage=args.storage,
            space=args.space,
            preset=args.preset,
            pruner=args.pruner,
            task=args.task,
            label=args.label,
            seed=args.seed,
            folds=args.folds,
            dicom=args.dicom,
            clinical=args.clinical,
            device=args.device,
            nproc_per_trial=args.nproc_per_trial,
            evaluate_best=not args.no_test,
            queue=not args.no_queue,
            resume=args.resume,
            confirm_seeds=args.confirm_seeds,
            heartbeat=args.heartbeat,
            threads=args.threads,
        )
        artifacts = Path(args.artifacts or artifacts_dir())
        report = run_worker(config, artifacts)
        if config.confirm_seeds:
            from nsclc_engine.tune.confirm import confirm_best

            report["confirmation"] = confirm_best(config, artifacts, config.confirm_seeds)
    except (ValueError, OSError) as error:
        return cli_error(error)
    print_report(report)
    return 0


def print_report(report: dict) -> None:
    counts = ", ".join(f"{n} {state}" for state, n in report["trials"].items() if n)
    print(f"study {report['study']} ({report['storage']}): {counts or 'no trials'}")
    best = report.get("best")
    if not best:
        print("no completed trial yet")
        return
    print(f"best: trial {best['trial']}, run {best['run_id']}, validation {best['validation']:.3f}")
    print(f"  params: {json.dumps(best['params'])}")
    print(f"  note: {report['selection_note']}")
    test = report.get("test")
    if report.get("test_note"):
        print(f"  test: {report['test_note']}")
    if test and test.get("error"):
        print(f"  test: scoring run {test['run_id']} failed: {test['error']}")
    elif test:
        key = metric_of(test).metric_key
        value = test[key]
        print(
            f"  test, scored once: {key} {value[key]:.3f} "
            f"(95% CI {value['ci_low']:.3f}-{value['ci_high']:.3f})"
        )
    elif report.get("waiting"):
        print(f"  test: {report['waiting']}")
    if report.get("confirmation"):
        from nsclc_engine.tune.confirm import report_lines

        print("\n".join(report_lines(report["confirmation"])))


if __name__ == "__main__":
    sys.exit(main())
