"""What a search costs on this machine, on the tiny preset, in one run.

    python benchmarks/bench_tune.py [--trials 6] [--epochs 6]

Prints, on a 40-patient synthetic cohort:
- trials per hour with one worker, and with two workers on one SQLite study (``--no-queue``,
  so they share the device: on one device the ratio says what contention costs);
- the share of epochs that median pruning saved against no pruning, with the same sampler
  seed, and the best validation score each reached;
- a trial's time outside its epochs (start-up, cohort and cache loading, the final
  predictions, the report) against the time in them: the fixed cost a search multiplies;
- the one-off cost of scoring the best trial's test part (prediction and evaluation with its
  bootstraps).
The baseline of each ratio (one worker; no pruning) is measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nsclc_engine.synth.generate import write_cohort
from nsclc_engine.synth.outcome import SynthConfig
from nsclc_engine.tune.study import TuneConfig, run_worker, storage_url

# the tests' tiny cohort (tests/helpers.py), 40 patients
TINY = SynthConfig(
    n_patients=40,
    seed=1,
    rows=48,
    pixel_spacing_mm=8.0,
    n_slices=16,
    slice_thickness_mm=12.0,
    defects="none",
)


def study(root: Path, source: Path, name: str, trials: int, epochs: int, pruner: str, **extra):
    space = root / f"{name}.json"
    space.write_text(
        json.dumps(
            {
                "lr": {"low": 1e-4, "high": 3e-3, "log": True},
                "batch_size": {"choices": [4, 8]},
                "augment": {"choices": ["all", "off"]},
                "epochs": {"choices": [epochs]},
                "early_stopping_patience": {"choices": [epochs]},
            }
        )
    )
    return TuneConfig(
        trials=trials,
        study=name,
        space=str(space),
        preset="tiny",
        pruner=pruner,
        dicom=str(source / "dicom"),
        clinical=str(source / "clinical.csv"),
        **extra,
    )


def trials_of(config: TuneConfig, artifacts: Path) -> list:
    import optuna

    url = storage_url(config, artifacts)
    return optuna.load_study(study_name=config.study, storage=url).get_trials()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        source = root / "source"
        write_cohort(TINY, source, show_progress=False)
        artifacts = root / "artifacts"
        warm = study(root, source, "warm", 1, 1, "none", evaluate_best=False)
        run_worker(warm, artifacts)  # builds the cohort and fills the cache once

        one = study(root, source, "one", args.trials, args.epochs, "none", evaluate_best=False)
        start = time.perf_counter()
        run_worker(one, artifacts)
        single = args.trials / (time.perf_counter() - start) * 3600
        done = trials_of(one, artifacts)

        two = study(root, source, "two", args.trials, args.epochs, "none", evaluate_best=False)
        command = [sys.executable, "-m", "nsclc_engine.tune", "--trials", str(args.trials // 2)]
        command += ["--study", "two", "--preset", "tiny", "--space", two.space, "--no-test"]
        command += ["--pruner", "none", "--no-queue", "--artifacts", str(artifacts)]
        command += ["--dicom", two.dicom, "--clinical", two.clinical]
        start = time.perf_counter()
        workers = [subprocess.Popen(command, stdout=subprocess.DEVNULL) for _ in range(2)]
        for worker in workers:
            worker.wait()
        double = 2 * (args.trials // 2) / (time.perf_counter() - start) * 3600
        print(f"trials/hour, tiny preset, {args.epochs} epochs, 40 patients:")
        print(f"  1 worker  {single:7.1f}")
        print(f"  2 workers {double:7.1f} (x {double / single:.2f}, one shared device)")

        pruned = study(root, source, "pruned", args.trials, args.epochs, "median")
        pruned = replace(pruned, evaluate_best=False)
        run_worker(pruned, artifacts)
        epochs_full = sum(t.user_attrs.get("epochs", 0) for t in done)
        epochs_pruned = sum(t.user_attrs.get("epochs", 0) for t in trials_of(pruned, artifacts))
        best_full = max(t.value for t in done if t.value is not None)
        kept = [t.value for t in trials_of(pruned, artifacts) if t.value is not None]
        print(
            f"epochs: {epochs_full} without pruning, {epochs_pruned} with median pruning "
            f"({1 - epochs_pruned / epochs_full:.0%} saved); best validation AUC "
            f"{best_full:.3f} vs {max(kept):.3f}"
        )

        total = sum(t.user_attrs["seconds"] for t in done)
        inside = sum(t.user_attrs["seconds_in_epochs"] for t in done)
        print(
            f"a trial: {total / len(done):.1f} s, of which {inside / len(done):.1f} s in its "
            f"epochs and {(total - inside) / len(done):.1f} s outside them "
            f"(x {(total - inside) / max(inside, 1e-9):.2f} of the epoch time)"
        )
        from nsclc_engine.tune.study import finish

        start = time.perf_counter()
        finish(replace(one, evaluate_best=True), artifacts)
        print(f"scoring the best trial's test part once: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
