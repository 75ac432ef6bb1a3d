"""Evaluate a finished run: ``python -m nsclc_engine.evaluate RUN_ID [--threshold-rule youden]
[--set key=value]`` writes its metrics, threshold, calibration and report
(:mod:`nsclc_engine.evaluate.run`).

Import predictions made elsewhere as a run: ``python -m nsclc_engine.evaluate --import FILE
--name NAME --clinical CSV --patient-column COL --score-column COL --label LABEL
[--invert-score]``, or survival predictions: ``--import FILE --task survival --risk-column COL
[--survival-column 730=COL ...] [--death-column 365=COL ...] --name NAME --clinical CSV
--patient-column COL`` (:mod:`nsclc_engine.evaluate.imported`).

Thresholds and recalibrators are fitted on validation predictions only and applied frozen to
test; test labels are read only to score.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from nsclc_engine import runs
from nsclc_engine.config import add_config_arguments, cli_error, load_config
from nsclc_engine.evaluate.config import EvaluateConfig
from nsclc_engine.evaluate.imported import ImportConfig, import_predictions, reevaluate_imported
from nsclc_engine.evaluate.run import evaluate_run
from nsclc_engine.evaluate.yardstick import best_for, judge_run
from nsclc_engine.paths import artifacts_dir
from nsclc_engine.stats.calibration import RECALIBRATION_METHODS
from nsclc_engine.stats.metrics import THRESHOLD_RULES
from nsclc_engine.task_spec import TASKS, spec_of


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nsclc_engine.evaluate", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("run_id", nargs="?", help="a run in <artifacts>/runs/")
    add_config_arguments(parser, EvaluateConfig)
    add_import_arguments(parser)
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
        if args.import_file:
            return import_main(args, config)
        if not args.run_id:
            parser.error("give a RUN_ID, or --import FILE to import predictions")
        run_dir = runs.run_dir(args.run_id, args.artifacts or artifacts_dir())
        if not run_dir.is_dir():
            raise ValueError(f"no run {args.run_id!r} in {run_dir.parent}")
        run_config = runs.read_config(run_dir)
        if run_config.get("kind") == "external":
            raise ValueError(
                f"{args.run_id} is an external-validation run, evaluated with its source run's "
                "frozen rule; run python -m nsclc_engine.validate again under a new --name"
            )
        if run_config.get("kind") == "imported":
            metrics = reevaluate_imported(run_dir, run_config, config)
        else:
            metrics = evaluate_run(run_dir, config)
    except (ValueError, OSError) as error:
        return cli_error(error)
    print_summary(metrics)
    print(f"report: {run_dir / 'report.html'}")
    return 0


def add_import_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("import predictions made elsewhere as a run")
    group.add_argument("--import", dest="import_file", metavar="FILE", help="predictions CSV")
    group.add_argument("--name", help="the new run's id")
    group.add_argument("--clinical", help="the clinical CSV (Lung1 v3 columns) with the labels")
    group.add_argument("--patient-column", help="the file's PatientID column")
    group.add_argument(
        "--score-column", help="the probability of the label's positive class (see --invert-score)"
    )
    group.add_argument("--label", default="os_2y", help="a label definition (default os_2y)")
    group.add_argument(
        "--invert-score",
        action="store_true",
        help=(
            "use 1 - score (the file scores the other class); survival: use -risk (the file's "
            "column is higher for longer survival, e.g. a predicted survival time)"
        ),
    )
    group.add_argument(
        "--task",
        choices=tuple(TASKS),
        default="classification",
        help=(
            "survival: the outcome is the clinical table's Survival.time and deadstatus.event, "
            "scored by --risk-column (default classification)"
        ),
    )
    group.add_argument(
        "--risk-column", help="survival: the risk, higher = earlier death (see --invert-score)"
    )
    group.add_argument(
        "--survival-column",
        action="append",
        default=[],
        metavar="DAYS=COL",
        help=(
            "survival: COL holds S(DAYS), the probability of being ALIVE on day DAYS (values "
            "in [0, 1]); repeat for more horizons"
        ),
    )
    group.add_argument(
        "--death-column",
        action="append",
        default=[],
        metavar="DAYS=COL",
        help=(
            "survival: COL holds the probability of DEATH by day DAYS (values in [0, 1]; "
            "stored as S(DAYS) = 1 - value); repeat for more horizons"
        ),
    )
    source = group.add_mutually_exclusive_group()
    source.add_argument(
        "--threshold", type=float, help="a stated operating threshold (default 0.5)"
    )
    source.add_argument("--threshold-from", metavar="RUN", help="another run's saved threshold")
    source.add_argument(
        "--validation-fraction",
        type=float,
        default=0.0,
        help="fit threshold and recalibration on a seeded validation part of the rows",
    )
    group.add_argument("--features", help="features CSV (default: the file's pyradiomics columns)")
    group.add_argument("--features-patient-column", help="its PatientID column")
    group.add_argument("--cv-folds", type=int, default=5, help="folds of the baselines' CV")
    group.add_argument("--no-baselines", action="store_true", help="skip the baselines")


def import_main(args: argparse.Namespace, evaluate: EvaluateConfig) -> int:
    survival = args.task == "survival"
    score = (
        ("--risk-column", args.risk_column) if survival else ("--score-column", args.score_column)
    )
    missing = [
        option
        for option, value in (
            ("--name", args.name),
            ("--clinical", args.clinical),
            ("--patient-column", args.patient_column),
            score,
        )
        if not value
    ]
    if missing:
        raise ValueError(
            f"--import{' --task survival' if survival else ''} needs {', '.join(missing)}"
        )
    wrong = "--score-column" if survival else "--risk-column"
    if args.score_column if survival else args.risk_column:
        raise ValueError(
            f"{wrong} is for {'classification' if survival else 'survival'} imports; give "
            f"{score[0]}"
        )
    config = ImportConfig(
        file=args.import_file,
        clinical=args.clinical,
        patient_column=args.patient_column,
        score_column=score[1],
        label=args.label,
        invert_score=args.invert_score,
        threshold=args.threshold,
        threshold_from=args.threshold_from or "",
        validation_fraction=args.validation_fraction,
        seed=evaluate.seed,
        features=args.features or "",
        features_patient_column=args.features_patient_column or "",
        baselines=not args.no_baselines and not survival,
        cv_folds=args.cv_folds,
        task=args.task,
        survival_columns=tuple(args.survival_column),
        death_columns=tuple(args.death_column),
    )
    artifacts = args.artifacts or artifacts_dir()
    run_id, metrics = import_predictions(config, args.name, artifacts, evaluate)
    print_import(metrics)
    print_summary(metrics)
    print(f"report: {runs.run_dir(run_id, artifacts) / 'report.html'}")
    return 0


def print_import(metrics: dict) -> None:
    """What was used, what was left out and why, and where the threshold came from."""
    print(f"used {metrics['n_used']} of {metrics['n_rows']} rows; score: {metrics['score']}")
    for entry in metrics["excluded"].values():
        print(f"left out {entry['count']}: {entry['meaning']}, e.g. {'; '.join(entry['examples'])}")
    print(f"threshold: {metrics['threshold_source']['text']}")
    for name, entry in metrics.get("baselines", {}).items():
        block = entry["external"]["auc"]
        line = f"{name} baseline (out of fold): AUC {block['value']:.3f} "
        line += f"({block['ci_low']:.3f}-{block['ci_high']:.3f})"
        if "delong_image_vs_baseline" in entry:
            d = entry["delong_image_vs_baseline"]
            line += f"; imported - baseline {d['difference']:+.3f}, p = {d['p_value']:.3f}"
        print(line)


def print_summary(metrics: dict) -> None:
    """Per split the headline metric with its CI and, on the synthetic cohort, the best
    achievable on the same patients; on test the verdict (learns, no leak, share)."""

    name, key = spec_of(metrics).metric_name, spec_of(metrics).metric_key
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
        if verdict.share is not None and verdict.share_ci_low is not None:
            share += f" (95% CI {verdict.share_ci_low:.0%}-{verdict.share_ci_high:.0%})"
        print(
            f"test verdict: learns {'yes' if verdict.learns else 'NO'}, no leak "
            f"{'yes' if verdict.no_leak else 'NO'}, share of the image signal recovered {share}"
        )
    if metrics.get("augmentation_warning"):
        print(f"warning: {metrics['augmentation_warning']}")
    for warning in metrics.get("warnings", []):
        print(f"warning: {warning}")


if __name__ == "__main__":
    sys.exit(main())
