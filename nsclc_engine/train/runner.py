"""Train (or resume) a run folder end to end: data, splits, every fold, then evaluation."""

from __future__ import annotations

import logging
import os
import signal
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pandas as pd

from nsclc_engine import runs
from nsclc_engine.atomic import remove_stale_temporaries, write_json
from nsclc_engine.config import shown_error
from nsclc_engine.runs import (
    has_splits,
    now,
    read_predictions,
    splits_path,
    update_status,
    write_config,
    write_predictions,
)
from nsclc_engine.task_spec import task_spec
from nsclc_engine.train.config import TrainConfig, load_run_config
from nsclc_engine.train.fold import train_fold
from nsclc_engine.train.loop import (
    DATA_SHARE,
    Cancelled,
    Distributed,
    EpochHook,
    Pruned,
    columns_of,
    seed_everything,
    select_device,
)
from nsclc_engine.train.prepare import (
    EXCLUSIONS_FILE,
    PreparedData,
    prepare_data,
    run_exclusions,
    shuffled,
)

log = logging.getLogger("nsclc_engine.train")


@dataclass(frozen=True)
class FixedSplit:
    """Patients and their splits fixed once for several runs (a study's trials): the cohort
    built without the reviewers' ``excluded`` patients (patient -> why) held ``patients``
    (sorted; ``labels_hash`` of their labels), split into ``splits`` with ``seed`` and
    ``folds`` on ``label``. A run created with it (:func:`create_run`) trains, validates and
    tests on exactly these patients."""

    excluded: dict[str, str]
    seed: int
    folds: int
    label: str
    patients: list[str]
    labels_hash: str
    splits: list[dict[str, list[str]]]


def fix_split(config: TrainConfig, artifacts: Path, excluded: dict[str, str]) -> FixedSplit:
    """The patients a run of ``config`` trains on without ``excluded``, split now as the run
    would split them: what a study draws once for all its trials."""
    from nsclc_engine.cohort.splits import SplitConfig, labels_fingerprint, make_splits

    data = prepare_data(config, Path(artifacts), show_progress=False, excluded=excluded)
    labels = shuffled(data.labels, config.seed) if config.shuffle_labels else data.labels
    patients = sorted(labels)
    values = [labels[p] for p in patients]
    splits = make_splits(patients, values, SplitConfig(folds=config.folds, seed=config.seed))
    return FixedSplit(
        dict(excluded),
        config.seed,
        config.folds,
        config.label,
        patients,
        labels_fingerprint(patients, values),
        splits,
    )


def run_training(
    run_id: str, artifacts: Path, show_progress: bool = True, epoch_hook: EpochHook | None = None
) -> dict:
    """Train (or resume) the run in ``<artifacts>/runs/<run_id>`` from its ``config.json``,
    holding its run lock (:func:`nsclc_engine.runs.run_lock`: a second trainer of the same
    run raises :class:`nsclc_engine.runs.RunBusy`). A run cancelled while queued raises
    :class:`Cancelled` without training. ``epoch_hook``: a search's pruner (a pruned trial
    ends ``pruned`` and raises :class:`Pruned`). A trial (``hold_out_test``) is not
    evaluated: its metrics are its validation part's, and :func:`evaluate_test` predicts and
    evaluates its test part once, for the study's best trial."""
    run_dir = runs.run_dir(run_id, artifacts)
    dist = Distributed.from_environment()
    with runs.run_lock(run_dir) if dist.is_main else nullcontext():
        if dist.is_main:
            remove_stale_temporaries(run_dir)
        return _train(run_id, run_dir, Path(artifacts), dist, show_progress, epoch_hook)


def _train(
    run_id: str,
    run_dir: Path,
    artifacts: Path,
    dist: Distributed,
    show_progress: bool,
    epoch_hook: EpochHook | None = None,
) -> dict:
    import torch

    from nsclc_engine.cohort.splits import SplitConfig, splits_for

    try:
        config = load_run_config(run_dir)
    except (ValueError, OSError) as error:  # e.g. its data folder was removed while queued
        if dist.is_main:
            update_status(run_dir, state="failed", finished=now(), error=str(error))
        raise
    if dist.world_size > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if select_device(config, dist).type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend)
    seed_everything(config.seed + dist.rank, config.deterministic)
    handler = _attach_log(run_dir) if dist.is_main else None
    if config.augmentation_warning and dist.is_main:
        log.warning(config.augmentation_warning)
    previous = signal.signal(signal.SIGTERM, _raise_cancelled)
    try:
        if dist.is_main:
            runs.start_running(
                run_dir,
                pid=os.getpid(),
                pid_started=runs.process_started(os.getpid()),
                started=now(),
                error="",
                stage="preparing data (cohort, preprocessing cache)",
            )
            (run_dir / "cancel_requested").unlink(missing_ok=True)  # a resume starts afresh
        # rank 0 builds the cohort and fills the cache; the others then find it all cached
        if dist.is_main:

            def preparing(stage: str, fraction: float) -> None:
                update_status(run_dir, stage=stage, progress=round(DATA_SHARE * fraction, 4))

            excluded = run_exclusions(run_dir, config, artifacts)
            started = time.perf_counter()
            data = prepare_data(config, artifacts, show_progress, preparing, excluded)
            update_status(run_dir, seconds_data=round(time.perf_counter() - started, 3))
        if dist.world_size > 1:
            torch.distributed.barrier()
        if not dist.is_main:
            excluded = run_exclusions(run_dir, config, artifacts)  # written by rank 0
            data = prepare_data(config, artifacts, False, excluded=excluded)
        labels, times = data.labels, data.times
        if config.shuffle_labels:
            labels, times = shuffled(data.labels, config.seed, data.times)
        patients = sorted(labels)
        _check_split_patients(run_dir, patients)
        split_config = SplitConfig(folds=config.folds, seed=config.seed)
        splits = splits_for(
            splits_path(run_dir),
            patients,
            [labels[p] for p in patients],
            split_config,
            config.label,
        )
        if dist.is_main:
            _write_resolved_config(run_dir, config, data, dist)
        history: dict[int, list] = {}
        frames = [
            train_fold(
                run_dir,
                config,
                split,
                fold,
                data,
                labels,
                times,
                dist,
                show_progress,
                history,
                epoch_hook,
            )
            for fold, split in enumerate(splits)
        ]
        predictions = pd.concat(frames, ignore_index=True)[columns_of(config)]
        metrics = _finish(run_id, run_dir, config, predictions, artifacts) if dist.is_main else {}
        return metrics
    except runs.CancelledWhileQueued:
        raise Cancelled() from None
    except Pruned as pruned:
        if dist.is_main:
            stage = f"pruned after fold {pruned.fold} epoch {pruned.epoch}"
            update_status(run_dir, state="pruned", finished=now(), stage=stage)
        raise
    except (Cancelled, KeyboardInterrupt):
        if dist.is_main:
            update_status(run_dir, state="cancelled", finished=now())
            log.info("cancelled; the last checkpoint is kept")
        raise
    except Exception as error:
        if dist.is_main:
            update_status(run_dir, state="failed", finished=now(), error=shown_error(error))
            log.exception("training failed")
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        if handler is not None:
            logging.getLogger("nsclc_engine").removeHandler(handler)
            handler.close()
        if dist.world_size > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _finish(
    run_id: str, run_dir: Path, config: TrainConfig, predictions: pd.DataFrame, artifacts: Path
) -> dict:
    """The trained run's end, on the main process: its predictions written, then (but for a
    search's trial, whose test part is held out) its evaluation; its status finished and its
    experiment's summary updated. Returns its metrics ({} for a trial)."""
    from nsclc_engine.evaluate.config import EvaluateConfig
    from nsclc_engine.evaluate.run import evaluate_run

    write_predictions(run_dir, predictions)
    if config.hold_out_test:  # a trial: validation only, no evaluation
        update_status(
            run_dir, state="finished", progress=1.0, finished=now(), stage="trial: test held out"
        )
        summarize_experiment(config, artifacts)
        return {}
    update_status(run_dir, progress=0.99, stage="evaluating")
    metrics = {}
    try:
        metrics = evaluate_run(
            run_dir,
            EvaluateConfig(bootstrap_resamples=config.bootstrap_resamples, seed=config.seed),
        )
    except Exception as error:  # the trained model and its predictions stay valid
        log.exception("evaluation failed; rerun python -m nsclc_engine.evaluate %s", run_id)
        update_status(run_dir, evaluation_error=f"{type(error).__name__}: {error}")
    update_status(run_dir, state="finished", progress=1.0, finished=now(), stage="done")
    summarize_experiment(config, artifacts)
    spec = task_spec(config.task)
    test = metrics.get("splits", {}).get("test", {}).get(spec.metric_key, {})
    log.info(
        "finished: test %s %.3f (95%% CI %.3f-%.3f)",
        spec.metric_name,
        test.get(spec.metric_key, float("nan")),
        test.get("ci_low", float("nan")),
        test.get("ci_high", float("nan")),
    )
    return metrics


def summarize_experiment(config: TrainConfig, artifacts: Path) -> None:
    """After a run of an experiment finishes: its summary again, with this run (a summary
    that cannot be written is logged; the run stands)."""
    if not config.experiment:
        return
    from nsclc_engine.evaluate.experiment import write_summary

    try:
        write_summary(artifacts, config.experiment)
    except (OSError, ValueError) as error:
        log.error("experiment %s: summary not written: %s", config.experiment, error)


def _raise_cancelled(signum, frame):
    raise Cancelled()


def _attach_log(run_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(run_dir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("nsclc_engine")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return handler


def _write_resolved_config(
    run_dir: Path, config: TrainConfig, data: PreparedData, dist: Distributed
) -> None:
    import torch

    existing = runs.read_config(run_dir)
    existing |= asdict(config)  # every field as used, also those an older file lacked
    device = select_device(config, dist)
    existing["resolved"] = {
        "cohort_dir": str(data.cohort_dir),
        "cache_dir": str(data.cache_dir),
        "preprocess": data.preprocess,
        "n_patients": len(data.labels),
        # what decides whether the run repeats bit for bit (README, Reproducibility)
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "world_size": dist.world_size,
        **runs.provenance(),
    }
    write_config(run_dir, existing)


def _check_split_patients(run_dir: Path, patients: list[str]) -> None:
    """A run split before it prepared its data (a study's trial, a resume) must find exactly
    the patients of its ``splits.json``: raise naming those that differ."""
    if not has_splits(run_dir):
        return
    split = runs.load_splits(run_dir)[0]
    fixed = {patient for part in split.values() for patient in part}
    missing, new = sorted(fixed - set(patients)), sorted(set(patients) - fixed)
    if missing or new:
        raise ValueError(
            f"run {run_dir.name}: its splits.json holds {len(fixed)} patients, its cohort "
            f"{len(patients)} (missing from the cohort: {', '.join(missing[:5]) or 'none'}; "
            f"not in the splits: {', '.join(new[:5]) or 'none'}); a run trains only on the "
            "patients it was split on (a study's trial on the study's split, fixed before its "
            "first trial), and its data or its settings changed them"
        )


def create_run(
    config: TrainConfig, artifacts: Path, run_id: str = "", fixed: FixedSplit | None = None
) -> str:
    """A new run folder for ``config``, queued (:func:`nsclc_engine.runs.create_run`). Data
    paths are stored absolute: the run's data source is the same folder for every process
    that reads it (the review notes and exclusions of that source apply to it). ``fixed``:
    the run's exclusions and splits, given (a study's), not read and drawn when it starts."""
    from nsclc_engine.cohort.splits import SplitConfig, save_splits

    absolute = {
        field: str(Path(getattr(config, field)).resolve())
        for field in ("dicom", "clinical")
        if getattr(config, field)
    }
    config = replace(config, **absolute)
    drawn = (config.seed, config.folds, config.label)
    if fixed is not None and (fixed.seed, fixed.folds, fixed.label) != drawn:
        raise ValueError(
            f"the given split was drawn with (seed, folds, label) "
            f"{(fixed.seed, fixed.folds, fixed.label)}, the run's are {drawn}"
        )
    run_id = runs.create_run({"config_class": "TrainConfig", **asdict(config)}, artifacts, run_id)
    if fixed is not None:
        folder = runs.run_dir(run_id, artifacts)
        write_json(folder / EXCLUSIONS_FILE, fixed.excluded)
        split_config = SplitConfig(folds=config.folds, seed=config.seed)
        save_splits(
            splits_path(folder), fixed.splits, split_config, config.label, fixed.labels_hash
        )
    return run_id


def evaluate_test(run_id: str, artifacts: Path) -> dict:
    """A finished trial's test part, predicted once with each fold's best checkpoint and then
    evaluated like any run (threshold and recalibration fitted on validation): what a search
    does for its best trial alone. Idempotent: where a scorer was lost after predicting the
    test part, those predictions are evaluated, never predicted again."""
    from nsclc_engine.evaluate.config import EvaluateConfig
    from nsclc_engine.evaluate.run import evaluate_run

    run_dir = runs.run_dir(run_id, artifacts)
    config = load_run_config(run_dir)
    predictions = read_predictions(run_dir)
    if "test" in set(predictions.split):
        log.warning("run %s: its test part was predicted already; evaluating those", run_id)
    else:
        predictions = _predict_test(run_dir, config, Path(artifacts), predictions)
        write_predictions(run_dir, predictions)
        update_status(run_dir, test_scored=now(), stage="evaluating its test part once")
    metrics = evaluate_run(
        run_dir, EvaluateConfig(bootstrap_resamples=config.bootstrap_resamples, seed=config.seed)
    )
    update_status(run_dir, stage="done: the study's best, its test part scored once")
    return metrics


def _predict_test(
    run_dir: Path, config: TrainConfig, artifacts: Path, predictions: pd.DataFrame
) -> pd.DataFrame:
    """``predictions`` with the test part of every fold added, from each fold's best
    checkpoint."""
    import torch

    from nsclc_engine.preprocess.dataset import CachedItem, CachedVolumeDataset
    from nsclc_engine.train.loop import predict
    from nsclc_engine.train.model import build_model
    from nsclc_engine.train.tasks import ClassificationTask, SurvivalTask

    excluded = run_exclusions(run_dir, config, artifacts)  # those it trained without
    data = prepare_data(config, artifacts, show_progress=False, excluded=excluded)
    labels, times = data.labels, data.times
    if config.shuffle_labels:
        labels, times = shuffled(data.labels, config.seed, data.times)
    dist = Distributed.from_environment()
    device = select_device(config, dist)
    splits = runs.load_splits(run_dir)
    shape = tuple(data.preprocess[f"out_{axis}"] for axis in ("depth", "height", "width"))
    frames = [predictions]
    for fold, split in enumerate(splits):
        task = (
            SurvivalTask(times, device)
            if config.task == "survival"
            else ClassificationTask([labels[p] for p in split["train"]], False, device)
        )
        model = build_model(config.model, task.outputs, norm=config.norm, input_shape=shape)
        path = runs.best_checkpoint(run_dir, fold)
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(checkpoint["model"])
        items = [CachedItem(p, int(labels[p]), Path(data.image_paths[p])) for p in split["test"]]
        dataset = CachedVolumeDataset(items, None, (), config.seed)
        frame = predict(model.to(device), dataset, config, device, dist, task)
        frames.append(frame.assign(split="test", fold=fold))
    return pd.concat(frames, ignore_index=True)[columns_of(config)]
