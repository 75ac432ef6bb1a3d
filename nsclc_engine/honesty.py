"""The honest-result check on the synthetic demo cohort, whose best achievable AUC is known.

For each seed it trains one demo run on the real labels and one with ``--shuffle-labels`` (the
negative control) and checks, on the test split:

* the real run is clearly above chance: the lower end of its 95 % bootstrap CI is above 0.5;
* its CI contains the cohort's best achievable AUC (a CI wholly above it is a leak, not skill);
* the shuffled run's CI contains 0.5 (a shuffled run "learning" is the report's AUC 1.00 bug).

``python -m nsclc_engine.honesty [--seeds 0 1 2] [--set key=value ...]``

The defaults are the settings we found to learn on the 240-patient demo (``CHECK_SETTINGS``):
5-fold cross-validation, judged on the pooled out-of-fold test predictions (every patient tested
once by a model that never saw it: n = 228 instead of one 46-patient test split, whose 95 % CI
spans about +-0.16, so that one split is above chance or not by the luck of the draw), label
``os_2y`` (deceased-at-last-follow-up leaves ~5 survivors per 46 test patients), Adam lr 1e-4,
class weights without the balanced sampler (one imbalance correction, not two), early-stopping
patience 8 of at most 40 epochs.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nsclc_engine.config import load_config
from nsclc_engine.paths import artifacts_dir

CHECK_SETTINGS = (
    "label=os_2y",
    "folds=5",
    "lr=1e-4",
    "use_sampler=false",
    "early_stopping_patience=8",
    "epochs=40",
)


@dataclass(frozen=True)
class Verdict:
    seed: int
    auc: float
    ci: tuple[float, float]
    oracle_auc: float | None
    shuffled_auc: float
    shuffled_ci: tuple[float, float]

    @property
    def above_chance(self) -> bool:
        return self.ci[0] > 0.5

    @property
    def contains_oracle(self) -> bool:
        return self.oracle_auc is not None and self.ci[0] <= self.oracle_auc <= self.ci[1]

    @property
    def shuffled_contains_chance(self) -> bool:
        return self.shuffled_ci[0] <= 0.5 <= self.shuffled_ci[1]

    @property
    def passed(self) -> bool:
        return self.above_chance and self.contains_oracle and self.shuffled_contains_chance


def verdict(seed: int, metrics: dict, shuffled_metrics: dict) -> Verdict:
    """The checks above from two runs' ``metrics.json`` payloads (test split)."""
    test, control = metrics["splits"]["test"]["auc"], shuffled_metrics["splits"]["test"]["auc"]
    return Verdict(
        seed,
        test["auc"],
        (test["ci_low"], test["ci_high"]),
        metrics.get("oracle_auc"),
        control["auc"],
        (control["ci_low"], control["ci_high"]),
    )


def format_verdicts(verdicts: Sequence[Verdict]) -> str:
    def mark(ok: bool) -> str:
        return "yes" if ok else "NO"

    lines = [
        "seed  test AUC (95% CI)     best achievable  above chance  CI has best  "
        "shuffled AUC (95% CI)  shuffled CI has 0.5"
    ]
    for v in verdicts:
        oracle = f"{v.oracle_auc:.3f}" if v.oracle_auc is not None else "n/a"
        lines.append(
            f"{v.seed:>4}  {v.auc:.3f} ({v.ci[0]:.3f}-{v.ci[1]:.3f})  {oracle:>15}  "
            f"{mark(v.above_chance):>12}  {mark(v.contains_oracle):>11}  "
            f"{v.shuffled_auc:.3f} ({v.shuffled_ci[0]:.3f}-{v.shuffled_ci[1]:.3f})  "
            f"{mark(v.shuffled_contains_chance):>19}"
        )
    passed = sum(v.passed for v in verdicts)
    lines.append(f"{passed} of {len(verdicts)} seeds pass every check")
    return "\n".join(lines)


def run_pair(seed: int, overrides: Sequence[str], artifacts: Path, prefix: str) -> Verdict:
    """Train the real and the shuffled run for one seed (new run folders) and judge them."""
    from nsclc_engine.train import TrainConfig, create_run, run_training

    metrics = {}
    for shuffle in (False, True):
        config = load_config(
            TrainConfig,
            None,
            [*CHECK_SETTINGS, *overrides, f"seed={seed}", f"shuffle_labels={shuffle}"],
        )
        run_id = f"{prefix}-s{seed}" + ("-shuffled" if shuffle else "")
        create_run(config, artifacts, run_id)
        metrics[shuffle] = run_training(run_id, artifacts, show_progress=False)
    return verdict(seed, metrics[False], metrics[True])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nsclc_engine.honesty", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="TrainConfig override on top of the check's settings " + " ".join(CHECK_SETTINGS),
    )
    parser.add_argument("--artifacts", help="artifacts folder (default $NSCLC_ARTIFACTS_DIR)")
    parser.add_argument("--prefix", default="honesty", help="run id prefix (default honesty)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    artifacts = Path(args.artifacts or artifacts_dir())
    try:
        verdicts = [run_pair(seed, args.set, artifacts, args.prefix) for seed in args.seeds]
    except (ValueError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_verdicts(verdicts))
    return 0 if all(v.passed for v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
