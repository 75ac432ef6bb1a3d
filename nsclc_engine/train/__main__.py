"""Headless training: ``python -m nsclc_engine.train`` (or under ``torchrun`` for several GPUs).

With no arguments it builds the embedded demo cohort if absent, preprocesses it with the
``demo`` preset, splits it, trains the 3D ResNet (``model``, ResNet-18 by default) and writes
a complete run folder (the layout is in :mod:`nsclc_engine.runs`): the resolved config,
splits, per-epoch history, checkpoints, predictions, and the evaluation
(``nsclc_engine.evaluate``: metrics with bootstrap CIs, the threshold fitted on validation,
calibration, the HTML report).
Every file is written atomically. ``--resume RUN_ID`` continues from ``checkpoint_last.pt``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from nsclc_engine.config import add_config_arguments, cli_error, one_line
from nsclc_engine.paths import artifacts_dir
from nsclc_engine.runs import (
    RunBusy,
    has_config,
    lock_held,
    never_started,
    new_run_id,
    queue,
    run_dir,
    runs_dir,
    status,
    validate_run_id,
)
from nsclc_engine.task_spec import LABEL_CHOICES, TASKS
from nsclc_engine.train.config import PROTOCOLS, TrainConfig, build_config, load_run_config
from nsclc_engine.train.jobs import train_in_turn
from nsclc_engine.train.loop import Cancelled, Distributed
from nsclc_engine.train.runner import create_run, run_training


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    overrides = list(args.set)
    for key in (
        "dicom",
        "clinical",
        "label",
        "task",
        "preset",
        "folds",
        "device",
        "pretrained",
        "epochs",
        "seed",
    ):
        value = getattr(args, key)
        if value is not None:
            overrides.append(f"{key}={value}")
    if args.shuffle_labels:
        overrides.append("shuffle_labels=true")
    if args.deterministic:
        overrides.append("deterministic=true")
    return build_config(args.config, overrides, args.protocol)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nsclc_engine.train", description=__doc__.split("\n\n")[0]
    )
    add_config_arguments(parser, TrainConfig)
    parser.add_argument("--dicom", help="DICOM folder of the real data (with --clinical)")
    parser.add_argument("--clinical", help="Lung1 clinical CSV")
    parser.add_argument(
        "--protocol",
        choices=sorted(PROTOCOLS),
        default="house",
        help="starting settings: house (default) or report (the technical report's, with its "
        "label-dependent augmentation; for reproducing it only)",
    )
    parser.add_argument("--label", choices=LABEL_CHOICES)
    parser.add_argument(
        "--task",
        choices=list(TASKS),
        help="survival: a Cox head on survival time with deadstatus_event as the event",
    )
    parser.add_argument("--preset", choices=["demo", "paper", "smoke"])
    parser.add_argument("--folds", type=int, help="k-fold cross-validation (0 = one split)")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"])
    parser.add_argument(
        "--pretrained",
        help="a local weights file: MedicalNet's of the chosen depth (--set model=resnet10..50) "
        "or FMCIB's (--set model=fmcib); --set encoder=freeze trains only the new head, the "
        "default fine-tunes the encoder at lr x encoder_lr_scale",
    )
    parser.add_argument("--shuffle-labels", action="store_true", help="negative control")
    parser.add_argument("--deterministic", action="store_true")
    parser.add_argument(
        "--artifacts", help="artifacts folder (default $NSCLC_ARTIFACTS_DIR or ./artifacts)"
    )
    parser.add_argument("--run-id", help="name of the new run (default: time stamp)")
    parser.add_argument("--resume", metavar="RUN_ID", help="continue a run from checkpoint_last")
    parser.add_argument(
        "--no-queue",
        action="store_true",
        help="start at once instead of waiting for the dashboard's jobs and other command-line "
        "runs on this artifacts folder (runs under torchrun never queue)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument(
        "--seeds",
        help="an experiment: the same configuration once per seed, e.g. 0,1,2,3,4 (one "
        "ordinary run per seed, queued in order, and a summary over the seeds)",
    )
    parser.add_argument(
        "--experiment", help="the experiment's name with --seeds (default: from the settings)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    artifacts = Path(args.artifacts or artifacts_dir())
    dist = Distributed.from_environment()
    if args.seeds is not None or args.experiment is not None:
        try:
            run_ids, name = _open_experiment(args, artifacts, dist)
        except (ValueError, OSError) as error:
            return cli_error(error)
        return _train_experiment(run_ids, name, args, artifacts)
    try:
        run_id = _open_run(args, artifacts, dist)
    except (ValueError, OSError) as error:
        return cli_error(error)
    print(f"run {run_id}: {run_dir(run_id, artifacts)}")
    try:
        if args.no_queue or dist.world_size > 1:
            metrics = run_training(run_id, artifacts, show_progress=not args.quiet)
        else:
            metrics = train_in_turn(run_id, artifacts, show_progress=not args.quiet)
    except RunBusy as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Cancelled:
        return 3
    except KeyboardInterrupt:
        print(f"error: interrupted; continue with --resume {run_id}", file=sys.stderr)
        return 130
    except Exception as error:
        print(f"error: training failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    if dist.is_main:
        from nsclc_engine.evaluate.__main__ import print_summary

        if metrics:
            print_summary(metrics)
            print(f"report: {run_dir(run_id, artifacts) / 'report.html'}")
        else:
            print(
                "evaluation failed (see train.log); rerun: "
                f"python -m nsclc_engine.evaluate {run_id}"
            )
    return 0


def _open_run(
    args: argparse.Namespace,
    artifacts: Path,
    dist: Distributed,
    check_only: TrainConfig | None = None,
) -> str:
    """The run to train: ``--resume``'s (checked to exist and to be idle, then queued again)
    or a new one from the arguments. Raises ValueError/OSError with a one-line message.
    ``check_only``: only check these settings (data folder, network, weights)."""
    if args.resume:
        run_id = validate_run_id(args.resume)
        folder = run_dir(run_id, artifacts)
        if folder.is_dir() and never_started(folder):
            raise ValueError(
                f"run {run_id!r} never started (killed before its config.json was written): "
                f"start it again with the same command and --run-id {run_id}"
            )
        if not has_config(folder):
            raise ValueError(f"no run {run_id!r} in {runs_dir(artifacts)}")
        if lock_held(folder):
            pid = status(folder).get("pid", "?")
            raise ValueError(f"run {run_id!r} is being trained by process {pid}; not resuming it")
        load_run_config(folder)  # a config that no longer loads fails here, in one line
        if dist.is_main:
            queue(folder)
        return run_id
    config = check_only or config_from_args(args)
    run_id = validate_run_id(args.run_id or os.environ.get("NSCLC_RUN_ID") or new_run_id())
    if config.dicom:  # a folder without DICOM fails now, before a run folder is made
        from nsclc_engine.cohort.dicom_io import check_has_dicom

        check_has_dicom(config.dicom)
    from nsclc_engine.train.model import check_network

    check_network(config.model, config.norm, config.preset)  # fails now, in one line
    if config.pretrained:  # a file that does not fit fails now, not after the data is built
        from nsclc_engine.preprocess.volumes import PRESETS
        from nsclc_engine.train.weights import network_of

        network_of(config.pretrained, (config.model,), PRESETS[config.preset].out_shape)
    if check_only is not None:  # an experiment's settings, checked before its runs are made
        return ""
    if dist.is_main:
        create_run(config, artifacts, run_id)  # queued, with this process as its runner
    elif dist.world_size > 1:
        _wait_for(run_dir(run_id, artifacts))
    return run_id


def _open_experiment(
    args: argparse.Namespace, artifacts: Path, dist: Distributed
) -> tuple[list[str], str]:
    """The experiment's runs, one per seed, created queued in seed order (nothing is created
    if any of them cannot be)."""
    from dataclasses import asdict, replace

    from nsclc_engine.evaluate.experiment import (
        check_name,
        default_name,
        parse_seeds,
        run_id_of,
        write_summary,
    )

    if args.seeds is None:
        raise ValueError("--experiment names an experiment over seeds: give --seeds too")
    if args.resume or args.run_id or args.seed is not None:
        raise ValueError("--seeds makes one run per seed: leave out --seed, --run-id, --resume")
    if dist.world_size > 1:
        raise ValueError("--seeds runs one process per seed in turn; start it without torchrun")
    seeds = parse_seeds(args.seeds)
    config = config_from_args(args)
    name = check_name(args.experiment or default_name(asdict(config)))
    run_ids = [validate_run_id(run_id_of(name, seed)) for seed in seeds]
    taken = [run_id for run_id in run_ids if run_dir(run_id, artifacts).exists()]
    if taken:
        raise ValueError(
            f"experiment {name!r} has runs already ({', '.join(taken)}); give another "
            "--experiment name"
        )
    args.run_id = None
    _open_run(args, artifacts, dist, check_only=config)
    for seed, run_id in zip(seeds, run_ids, strict=True):
        create_run(replace(config, seed=seed, experiment=name), artifacts, run_id)
    write_summary(artifacts, name)
    return run_ids, name


def _train_experiment(run_ids: list[str], name: str, args, artifacts: Path) -> int:
    """Train the experiment's runs in turn (a failed one is reported and the next goes on),
    then print the summary over the seeds."""
    from nsclc_engine.evaluate.experiment import summary_lines, summary_path, write_summary

    print(f"experiment {name}: {len(run_ids)} runs ({', '.join(run_ids)})")
    failed = []
    for run_id in run_ids:
        print(f"run {run_id}: {run_dir(run_id, artifacts)}")
        try:
            if args.no_queue:
                run_training(run_id, artifacts, show_progress=not args.quiet)
            else:
                train_in_turn(run_id, artifacts, show_progress=not args.quiet)
        except Cancelled:
            failed.append(f"{run_id} (cancelled)")
        except KeyboardInterrupt:
            print(f"error: interrupted; continue with --resume {run_id}", file=sys.stderr)
            return 130
        except Exception as error:
            failed.append(f"{run_id} ({type(error).__name__}: {one_line(error)})")
    summary = write_summary(artifacts, name)
    print("\n".join(summary_lines(summary)))
    print(f"summary: {summary_path(artifacts, name)}")
    if failed:
        print(f"error: not finished: {'; '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _wait_for(folder: Path, timeout_s: float = 60.0) -> None:
    """Until rank 0 has written the run's config (the other ranks of a torchrun start)."""
    deadline = time.monotonic() + timeout_s
    while not has_config(folder):
        if time.monotonic() > deadline:
            raise ValueError(f"run {folder.name} did not appear: rank 0 failed to create it")
        time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(main())
