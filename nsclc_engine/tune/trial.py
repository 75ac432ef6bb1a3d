"""One trial under ``torchrun``: ``python -m torch.distributed.run --nproc_per_node N -m
nsclc_engine.tune.trial RUN_ID --artifacts DIR``, started by a study worker with the storage,
study, trial and pruner in ``NSCLC_TUNE_*``. Rank 0 reports each epoch to the study and asks
its pruner; every rank stops together. The outcome is the run's state (``finished``,
``pruned``, ``failed``): torchrun's exit status does not carry it."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> int:
    from nsclc_engine.train.loop import Distributed, Pruned
    from nsclc_engine.train.runner import run_training
    from nsclc_engine.tune.study import epoch_hook, make_pruner

    parser = argparse.ArgumentParser(prog="python -m nsclc_engine.tune.trial")
    parser.add_argument("run_id")
    parser.add_argument("--artifacts", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")

    def hook(fold: int, epoch: int, value: float) -> bool:
        return False  # the other ranks take rank 0's decision (train.loop broadcasts it)

    if Distributed.from_environment().is_main:
        import optuna

        storage = optuna.storages.get_storage(os.environ["NSCLC_TUNE_STORAGE"])
        study = optuna.load_study(
            study_name=os.environ["NSCLC_TUNE_STUDY"],
            storage=storage,
            pruner=make_pruner(os.environ.get("NSCLC_TUNE_PRUNER", "median")),
        )
        trial = optuna.trial.Trial(study, int(os.environ["NSCLC_TUNE_TRIAL"]))
        hook = epoch_hook(trial)
    try:
        run_training(args.run_id, Path(args.artifacts), False, hook)
    except Pruned:  # an outcome, not an error: the run's state says pruned
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
