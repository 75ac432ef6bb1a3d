"""Headless training: ``python -m nsclc_engine.train`` (or under ``torchrun`` for several GPUs).

With no arguments it builds the embedded demo cohort if absent, preprocesses it with the
``demo`` preset, splits it, trains the 3D ResNet-18 and writes a complete run folder (the
layout is in :mod:`nsclc_engine.runs`): the resolved config, splits, per-epoch history,
checkpoints, predictions, and the evaluation (``nsclc_engine.evaluate``: metrics with
bootstrap CIs, the threshold fitted on validation, calibration, the HTML report).
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

from nsclc_engine.config import add_config_arguments
from nsclc_engine.paths import artifacts_dir
from nsclc_engine.runs import new_run_id, run_dir, runs_dir, validate_run_id
from nsclc_engine.train.config import PROTOCOLS, TrainConfig, build_config
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
    parser.add_argument("--label", choices=["deadstatus_event", "os_2y"])
    parser.add_argument(
        "--task",
        choices=["classification", "survival"],
        help="survival: a Cox head on survival time with deadstatus_event as the event",
    )
    parser.add_argument("--preset", choices=["demo", "paper", "smoke"])
    parser.add_argument("--folds", type=int, help="k-fold cross-validation (0 = one split)")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--pretrained", help="local MedicalNet ResNet-18 weights")
    parser.add_argument("--shuffle-labels", action="store_true", help="negative control")
    parser.add_argument("--deterministic", action="store_true")
    parser.add_argument(
        "--artifacts", help="artifacts folder (default $NSCLC_ARTIFACTS_DIR or ./artifacts)"
    )
    parser.add_argument("--run-id", help="name of the new run (default: time stamp)")
    parser.add_argument("--resume", metavar="RUN_ID", help="continue a run from checkpoint_last")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    artifacts = Path(args.artifacts or artifacts_dir())
    dist = Distributed.from_environment()
    try:
        if args.resume:
            run_id = validate_run_id(args.resume)
            if not (run_dir(run_id, artifacts) / "config.json").exists():
                raise ValueError(f"no run {run_id!r} in {runs_dir(artifacts)}")
        else:
            config = config_from_args(args)
            run_id = args.run_id or os.environ.get("NSCLC_RUN_ID") or new_run_id()
            if dist.is_main:
                create_run(config, artifacts, run_id)
            elif dist.world_size > 1:
                _wait_for(run_dir(run_id, artifacts) / "config.json")
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"run {run_id}: {run_dir(run_id, artifacts)}")
    try:
        metrics = run_training(run_id, artifacts, show_progress=not args.quiet)
    except Cancelled:
        return 3
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


def _wait_for(path: Path, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise ValueError(f"{path} did not appear: rank 0 failed to create the run")
        time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(main())
