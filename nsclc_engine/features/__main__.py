"""Frozen-feature model: ``python -m nsclc_engine.features --weights FILE --recipe
fmcib|medicalnet [--name NAME] [--cohort DIR]`` extracts one feature vector per patient with a
pretrained encoder (its own preprocessing), fits a penalised logistic model (a Cox model with
``--task survival``) on the training patients, its penalty chosen by cross-validation among
them, and writes a run that the dashboard shows like any other
(:mod:`nsclc_engine.features.run`). The embedded demo cohort is the default, as for training.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from nsclc_engine.config import add_config_arguments, cli_error, load_config
from nsclc_engine.features.run import FeatureConfig, feature_run
from nsclc_engine.paths import artifacts_dir
from nsclc_engine.task_spec import LABEL_CHOICES, TASKS, metric_of


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nsclc_engine.features", description=__doc__.split("\n\n")[0]
    )
    add_config_arguments(parser, FeatureConfig)
    parser.add_argument("--weights", required=True, help="the encoder's local weights file")
    parser.add_argument("--recipe", required=True, choices=["fmcib", "medicalnet"])
    parser.add_argument("--name", default="", help="the run's id (default: a time stamp)")
    parser.add_argument("--cohort", help="a built cohort folder (default: the demo cohort)")
    parser.add_argument("--label", choices=list(LABEL_CHOICES))
    parser.add_argument("--task", choices=list(TASKS))
    parser.add_argument(
        "--artifacts", help="artifacts folder (default $NSCLC_ARTIFACTS_DIR or ./artifacts)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress messages")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(message)s"
    )
    overrides = [*args.set, f"weights={args.weights}", f"recipe={args.recipe}"]
    for key in ("cohort", "label", "task"):
        if getattr(args, key) is not None:
            overrides.append(f"{key}={getattr(args, key)}")
    artifacts = Path(args.artifacts or artifacts_dir())
    try:
        config = load_config(FeatureConfig, args.config, overrides)
        run_id, metrics = feature_run(config, artifacts, args.name, not args.quiet)
    except (ValueError, OSError) as error:
        return cli_error(error)
    print_summary(run_id, metrics)
    return 0


def print_summary(run_id: str, metrics: dict) -> None:
    test = metrics.get("splits", {}).get("test", {})
    name, key = metric_of(test).metric_name, metric_of(test).metric_key
    value = test.get(key, {})
    if value:
        interval = f"{value['ci_low']:.3f}-{value['ci_high']:.3f}"
        print(f"run {run_id}: test {name} {value[key]:.3f} (95% CI {interval}), n={test['n']}")
    else:
        print(f"run {run_id}: finished; see its report")
    for warning in metrics.get("warnings", []):
        print(f"warning: {warning}")


if __name__ == "__main__":
    sys.exit(main())
