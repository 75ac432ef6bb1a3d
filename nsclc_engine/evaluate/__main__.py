"""Evaluate a finished run: ``python -m nsclc_engine.evaluate RUN_ID [--threshold-rule youden]
[--set key=value]`` writes its metrics, threshold, calibration and report
(:mod:`nsclc_engine.evaluate.run`).

Thresholds and recalibrators are fitted on validation predictions only and applied frozen to
test; test labels are read only to score.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from nsclc_engine import runs
from nsclc_engine.config import add_config_arguments, load_config, one_line
from nsclc_engine.evaluate.config import EvaluateConfig
from nsclc_engine.evaluate.run import evaluate_run
from nsclc_engine.evaluate.yardstick import best_for, judge_run
from nsclc_engine.paths import artifacts_dir
from nsclc_engine.stats.calibration import RECALIBRATION_METHODS
from nsclc_engine.stats.metrics import THRESHOLD_RULES


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nsclc_engine.evaluate", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("run_id", help="a run in <artifacts>/runs/")
    add_config_arguments(parser, EvaluateConfig)
    parser.add_argument("--threshold-rule", choices=THRESHOLD_RULES)
    parser.add_argument(
        "--threshold-target", type=float, help="for spec_at_sens, sens_at_spec, fixed"
    )
    parser.add_argument("--recalibration", choices=RECALIBRATION_METHODS)
    parser.add_argument(
        "--artifacts", help="artifacts folder (default $NSCLC_ARTIFACTS_DIR or ./artifacts)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    overrides = list(args.set)
    for key in ("threshold_rule", "threshold_target", "recalibration"):
        if getattr(args, key) is not None:
            overrides.append(f"{key}={getattr(args, key)}")
    try:
        config = load_config(EvaluateConfig, args.config, overrides)
        run_dir = runs.run_dir(args.run_id, args.artifacts or artifacts_dir())
        if not run_dir.is_dir():
            raise ValueError(f"no run {args.run_id!r} in {run_dir.parent}")
        metrics = evaluate_run(run_dir, config)
    except (ValueError, OSError) as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2
    print_summary(metrics)
    print(f"report: {run_dir / 'report.html'}")
    return 0


def print_summary(metrics: dict) -> None:
    """Per split the headline metric with its CI and, on the synthetic cohort, the best
    achievable on the same patients; on test the verdict (learns, no leak, share)."""

    survival = metrics.get("task") == "survival"
    name, key = ("C-index", "c_index") if survival else ("AUC", "auc")
    for part, values in metrics["splits"].items():
        block = values[key]
        line = (
            f"{part}: n={values['n']}, {name} {block[key]:.3f} "
            f"(95% CI {block['ci_low']:.3f}-{block['ci_high']:.3f})"
        )
        best, best_image = best_for(metrics, part, "eta"), best_for(metrics, part, "eta_image")
        if best is not None and best_image is not None:
            line += f"; best achievable {best:.3f}, image part {best_image:.3f}"
        print(line)
    verdict = judge_run(metrics)
    if verdict is not None and verdict.best is not None:
        share = "n/a" if verdict.share is None else f"{verdict.share:.0%}"
        print(
            f"test verdict: learns {'yes' if verdict.learns else 'NO'}, no leak "
            f"{'yes' if verdict.no_leak else 'NO'}, share of the image signal recovered {share}"
        )
    if metrics.get("augmentation_warning"):
        print(f"warning: {metrics['augmentation_warning']}")


if __name__ == "__main__":
    sys.exit(main())
