"""What a search costs, in one run: a trial's fixed cost before and after the worker reuses
its data and keeps a trial's best weights in memory, workers' scaling, and where a trial's
wall time goes.

    python benchmarks/bench_tune.py [--trials 8] [--epochs 4] [--workers 1,2] [--threads 1]
    python benchmarks/bench_tune.py --device cuda --preset paper --patients 422 --workers 1

On a synthetic cohort (40 small patients by default, the tests' tiny one; ``--patients 422``
writes a Lung1-sized one at the demo's geometry) it prints:

- **fixed cost**: a trial's wall time outside its epochs, as a ratio to the time in them, for
  the search's trials (one worker: data checked once, a trial's best weights kept in memory
  and written once) against the baseline measured in the same run, the same trial settings
  trained as ordinary runs (data checked each time, two checkpoints written every epoch);
- **scaling**: trials per hour of 1, 2, ... workers (``--workers``) sharing one study, each
  pinned to ``--threads`` CPU threads and trained at once (``--no-queue``), against one worker,
  with every trial checked to have run exactly once;
- **phases**: one trial's wall time split into start-up (a fresh worker's imports and its
  study), data, epochs, evaluation (final predictions and the validation score) and the best
  trial's test scoring, against the 60-second goal for a paper-preset trial on one GPU;
- with ``--pruning``, the epochs median pruning saves against no pruning (same sampler seed).
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nsclc_engine.runs import read_history, run_dir
from nsclc_engine.synth.generate import write_cohort
from nsclc_engine.synth.outcome import SynthConfig
from nsclc_engine.tune.study import (
    STUDY_PRESETS,
    TuneConfig,
    run_worker,
    storage_url,
    trial_config,
)

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
GOAL_S = 60.0  # a paper-preset trial on one H100/H200, evaluation included


def cohort(patients: int) -> SynthConfig:
    if patients == TINY.n_patients:
        return TINY
    return SynthConfig(n_patients=patients, seed=1, defects="none")  # the demo's geometry


def study(root: Path, source: Path, name: str, trials: int, args, pruner="none", **extra):
    space = root / f"{name}.json"
    space.write_text(
        json.dumps(
            {
                "lr": {"low": 1e-4, "high": 3e-3, "log": True},
                "batch_size": {"choices": [4, 8]},
                "augment": {"choices": ["all", "off"]},
                "epochs": {"choices": [args.epochs]},
                "early_stopping_patience": {"choices": [args.epochs]},
            }
        )
    )
    return TuneConfig(
        trials=trials,
        study=name,
        space=str(space),
        preset=args.preset,
        pruner=pruner,
        device=args.device,
        dicom=str(source / "dicom"),
        clinical=str(source / "clinical.csv"),
        evaluate_best=False,
        **extra,
    )


def trials_of(config: TuneConfig, artifacts: Path) -> list:
    import optuna

    url = storage_url(config, artifacts)
    return optuna.load_study(study_name=config.study, storage=url).get_trials()


def as_ordinary_runs(config: TuneConfig, trials: list, artifacts: Path) -> list[tuple]:
    """The baseline: each trial's settings trained as an ordinary run on the study's split
    (not a trial: two checkpoints every epoch; no worker reusing the data)."""
    import optuna

    from nsclc_engine.train.runner import FixedSplit, create_run, run_training

    study = optuna.load_study(study_name=config.study, storage=storage_url(config, artifacts))
    fixed = FixedSplit(excluded={}, **study.user_attrs["split"])
    timings = []
    for trial in trials:
        train = replace(trial_config(config, trial.params, trial.number), study="", trial=-1)
        run_id = create_run(train, artifacts, f"baseline-{config.study}-{trial.number}", fixed)
        started = time.perf_counter()
        run_training(run_id, artifacts, False)
        total = time.perf_counter() - started
        epochs = sum(line["seconds"] for line in read_history(run_dir(run_id, artifacts)))
        timings.append((total, epochs))
    return timings


def fixed_cost(timings: list[tuple]) -> tuple[float, float, float]:
    total = sum(t for t, _ in timings) / len(timings)
    inside = sum(e for _, e in timings) / len(timings)
    return total, inside, (total - inside) / max(inside, 1e-9)


def workers_per_hour(
    config: TuneConfig, artifacts: Path, workers: int, threads: int
) -> tuple[float, float]:
    """Trials per hour of ``workers`` processes sharing one study, and a trial's mean wall
    time; each trial checked to have run exactly once (complete, its own run)."""
    command = [sys.executable, "-m", "nsclc_engine.tune", "--study", config.study]
    command += ["--preset", config.preset, "--space", config.space, "--no-test", "--no-queue"]
    command += ["--pruner", "none", "--artifacts", str(artifacts), "--device", config.device]
    command += ["--dicom", config.dicom, "--clinical", config.clinical]
    command += ["--threads", str(threads), "--trials", str(config.trials // workers)]
    started = time.perf_counter()
    processes = [
        subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(workers)
    ]
    if any(process.wait() for process in processes):
        raise SystemExit(f"a worker of study {config.study} failed")
    wall = time.perf_counter() - started
    trials = trials_of(config, artifacts)
    runs_ = {t.user_attrs.get("run_id") for t in trials}
    if not (all(t.state.name == "COMPLETE" for t in trials) and len(runs_) == len(trials)):
        raise SystemExit(f"study {config.study}: a trial was lost or run twice")
    return len(trials) / wall * 3600, sum(t.user_attrs["seconds"] for t in trials) / len(trials)


def start_up_seconds(config: TuneConfig, artifacts: Path) -> float:
    """A fresh worker's imports and the opening of its study (``--trials 0`` on a new study
    that scores nothing), as a worker pays once."""
    command = [sys.executable, "-m", "nsclc_engine.tune", "--trials", "0", "--study"]
    command += [f"{config.study}-startup", "--preset", config.preset, "--no-test"]
    command += ["--artifacts", str(artifacts), "--space", config.space]
    command += ["--dicom", config.dicom, "--clinical", config.clinical]
    started = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def data_check_seconds(config: TuneConfig, artifacts: Path) -> float:
    """What a worker's first trial pays for its data: the sources' key, the cohort and the
    cache checked (all built already)."""
    from nsclc_engine.train.prepare import prepare_data

    started = time.perf_counter()
    prepare_data(trial_config(config, {}, -1), artifacts, False)
    return time.perf_counter() - started


def phases(config: TuneConfig, trials: list, artifacts: Path) -> dict:
    from nsclc_engine.tune.study import finish

    later = [t for t in trials[1:] if t.state.name == "COMPLETE"] or trials
    mean = lambda key: sum(t.user_attrs.get(key) or 0 for t in later) / len(later)  # noqa: E731
    epochs, total = mean("seconds_in_epochs"), mean("seconds")
    evaluation = mean("seconds_final_predictions") + mean("seconds_scoring")
    data = mean("seconds_data")
    started = time.perf_counter()
    report = finish(replace(config, evaluate_best=True), artifacts)
    scoring = time.perf_counter() - started
    return {
        "start-up (once per worker)": start_up_seconds(config, artifacts),
        "data (checked once per worker)": data_check_seconds(config, artifacts),
        "data (a trial, reusing the worker's)": data,
        "epochs": epochs,
        "evaluation (final predictions, validation score)": evaluation,
        "other (model, checkpoint, bookkeeping)": total - epochs - evaluation - data,
        "a trial (a later one)": total,
        "test scoring (once per study)": scoring if report.get("test") else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--workers", default="1,2", help="worker counts to compare, e.g. 1,2")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per worker")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--preset", default="tiny", choices=list(STUDY_PRESETS))
    parser.add_argument("--patients", type=int, default=TINY.n_patients)
    parser.add_argument("--pruning", action="store_true", help="also measure median pruning")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",") if n]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        source, artifacts = root / "source", root / "artifacts"
        started = time.perf_counter()
        write_cohort(cohort(args.patients), source, show_progress=False)
        written = time.perf_counter() - started
        started = time.perf_counter()
        warm = study(root, source, "warm", 1, args)
        run_worker(warm, artifacts)  # builds the cohort and fills the cache once
        built = time.perf_counter() - started
        print(
            f"{args.patients} synthetic patients, preset {args.preset}, {args.epochs} epochs, "
            f"device {args.device}, host {socket.gethostname()}; one-off: DICOM written in "
            f"{written:.0f} s, cohort and cache built (and one trial) in {built:.0f} s"
        )

        after = study(root, source, "after", args.trials, args)
        run_worker(after, artifacts)
        trials = trials_of(after, artifacts)
        now = fixed_cost(
            [(t.user_attrs["seconds"], t.user_attrs["seconds_in_epochs"]) for t in trials]
        )
        before = fixed_cost(as_ordinary_runs(after, trials, artifacts))
        print("fixed cost of a trial (wall time outside its epochs), mean over trials:")
        for name, (total, inside, ratio) in (("baseline, ordinary runs", before), ("trials", now)):
            print(
                f"  {name:24s} {total:6.1f} s a trial, {inside:6.1f} s in epochs, "
                f"{total - inside:5.1f} s outside: x {ratio:.2f} of the epochs, "
                f"{(total - inside) / total:.0%} of the trial"
            )
        print(f"  fixed cost after / before: x {(now[0] - now[1]) / (before[0] - before[1]):.2f}")

        if counts:
            print(f"trials/hour, {args.trials} trials a study, {args.threads} thread(s) a worker:")
            rates = {}
            for n in counts:
                config = study(root, source, f"w{n}", args.trials, args)
                rates[n], seconds = workers_per_hour(config, artifacts, n, args.threads)
                print(
                    f"  {n} worker(s) {rates[n]:7.1f} (x {rates[n] / rates[counts[0]]:.2f} of "
                    f"{counts[0]}; a trial {seconds:.1f} s; every trial ran exactly once)"
                )

        print("where a trial's wall time goes (seconds):")
        split = phases(after, trials, artifacts)
        for name, seconds in split.items():
            print(f"  {name:52s} {seconds:7.2f}")
        trial = split["a trial (a later one)"] + split["test scoring (once per study)"] / max(
            len(trials), 1
        )
        print(
            f"  a trial with its share of the test scoring: {trial:.1f} s, x {trial / GOAL_S:.2f} "
            f"of the {GOAL_S:.0f}-second goal (set for the paper preset on one GPU)"
        )

        if args.pruning:
            full = study(root, source, "full", args.trials, args)
            run_worker(full, artifacts)
            pruned = study(root, source, "pruned", args.trials, args, pruner="median")
            run_worker(pruned, artifacts)
            epochs = [
                sum(t.user_attrs.get("epochs", 0) for t in trials_of(c, artifacts))
                for c in (full, pruned)
            ]
            best = [
                max(t.value for t in trials_of(c, artifacts) if t.value is not None)
                for c in (full, pruned)
            ]
            print(
                f"epochs: {epochs[0]} without pruning, {epochs[1]} with median pruning "
                f"({1 - epochs[1] / epochs[0]:.0%} saved); best validation "
                f"{best[0]:.3f} vs {best[1]:.3f}"
            )


if __name__ == "__main__":
    main()
