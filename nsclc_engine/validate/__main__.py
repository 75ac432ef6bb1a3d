"""External validation of a frozen run: ``python -m nsclc_engine.validate RUN_ID --name NAME
(--dicom DIR --clinical CSV | --cohort DIR)`` applies the run's model, preprocessing, threshold
and recalibration unchanged to a new cohort and writes an external-validation run
(:mod:`nsclc_engine.validate.external`)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from nsclc_engine.config import cli_error
from nsclc_engine.run_records import Metrics
from nsclc_engine.validate.external import ValidateConfig, validate_run


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nsclc_engine.validate", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("run_id", help="the frozen run in <artifacts>/runs/")
    parser.add_argument("--name", required=True, help="the external-validation run's id")
    parser.add_argument("--dicom", default="", help="the new cohort's DICOM folder")
    parser.add_argument("--clinical", default="", help="its clinical CSV (Lung1 v3 columns)")
    parser.add_argument(
        "--cohort",
        default="",
        help="a built cohort folder, or a folder with dicom/ and clinical.csv",
    )
    parser.add_argument(
        "--recalibrate-intercept",
        action="store_true",
        help="also report a recalibration-in-the-large fitted on the external cohort itself",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--bootstrap-resamples", type=int, default=2000)
    parser.add_argument(
        "--artifacts", help="artifacts folder (default $NSCLC_ARTIFACTS_DIR or ./artifacts)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        config = ValidateConfig(
            dicom=args.dicom,
            clinical=args.clinical,
            cohort=args.cohort,
            recalibrate_intercept=args.recalibrate_intercept,
            device=args.device,
            bootstrap_resamples=args.bootstrap_resamples,
        )
        run_id, metrics = validate_run(args.run_id, args.name, config, args.artifacts)
    except (ValueError, OSError) as error:
        return cli_error(error)
    print_summary(run_id, metrics)
    return 0


def print_summary(run_id: str, metrics: dict) -> None:
    source, n = metrics["source_run"], metrics["n_predicted"]
    print(f"run {run_id}: run {source} applied unchanged to {n} patients")
    print(f"threshold: {metrics['threshold_source']['text']}")
    if metrics.get("too_few_patients"):
        print(metrics["too_few_patients"])
        return
    block = metrics["splits"]["external"]
    if metrics["task"] == "survival":
        c = block["c_index"]
        interval = f"{c['ci_low']:.3f}-{c['ci_high']:.3f}"
        print(f"external: n={block['n']}, C-index {c['c_index']:.3f} (95% CI {interval})")
        print_horizons(Metrics(metrics))
    else:
        print_classification(metrics)
    for warning in metrics.get("warnings", []):
        print(f"warning: {warning}")


def print_horizons(metrics: Metrics) -> None:
    """Per horizon the time-dependent AUC and ICI, and the calls at the frozen threshold."""
    for key, entry in metrics.horizon_kind("raw").items():
        if not key.endswith("d"):
            continue
        line = f"day {key[:-1]}: time-dependent AUC "
        line += f"{entry['td_auc']:.3f}" if "td_auc" in entry else "n/a"
        if "smoothed" in entry:
            line += f", ICI {entry['smoothed']['ici']:.3f}"
        print(line)
    held = metrics.horizon_threshold.get("held_out")
    if held:
        print(
            f"threshold {held['threshold']:.3f} on P(death by day {held['horizon_days']:g}): "
            f"sensitivity {held['sensitivity']:.3f}, specificity {held['specificity']:.3f}"
        )


def print_classification(metrics: dict) -> None:
    block = metrics["splits"]["external"]
    auc = block["auc"]
    interval = f"{auc['ci_low']:.3f}-{auc['ci_high']:.3f}"
    print(f"external: n={block['n']}, AUC {auc['auc']:.3f} (95% CI {interval})")
    for name, values in metrics["calibration_external"].items():
        extra = f" (shift {values['shift']:+.3f})" if "shift" in values else ""
        fit = f"in the large {values['intercept']:+.3f}, slope {values['slope']:.3f}"
        print(f"calibration {name}{extra}: {fit}")


if __name__ == "__main__":
    sys.exit(main())
