"""One fold's training, in its steps: set up (task, network, optimiser), resume from the
committed checkpoint, an epoch over the training part, the epoch's end (validation, early
stopping, the checkpoint commit of :mod:`nsclc_engine.train.checkpoints`), and the best
epoch's predictions. :class:`FoldTraining` carries the fold's state between the steps."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nsclc_engine.runs import checkpoint_paths, status, update_status, write_history
from nsclc_engine.task_spec import task_spec
from nsclc_engine.train import checkpoints
from nsclc_engine.train.config import TrainConfig
from nsclc_engine.train.loop import (
    Cancelled,
    Distributed,
    DistributedNumberedSampler,
    EpochHook,
    Pruned,
    _autocast,
    _gather,
    _own,
    _progress,
    _shared,
    _unwrap,
    loader_workers,
    memory_format,
    monitored_loss,
    peak_memory,
    predict,
    resolved_precision,
    select_device,
)
from nsclc_engine.train.prepare import PreparedData

log = logging.getLogger("nsclc_engine.train")


@dataclass
class FoldTraining:
    """One fold as it trains: what it trains with, and ``state``, what its resume checkpoint
    commits (``epoch``, ``best_loss``, ``bad_epochs``, ``best_epoch``, ``history``)."""

    run_dir: Path
    config: TrainConfig
    fold: int
    dist: Distributed
    device: Any
    input_format: Any
    model: Any
    optimiser: Any
    scheduler: Any
    task: Any
    network: dict
    state: dict
    kept_best: dict | None = None  # a search trial's best epoch, in memory

    @property
    def paths(self) -> tuple[Path, Path]:
        """``checkpoint_last``, ``checkpoint_best`` of this fold."""
        return checkpoint_paths(self.run_dir, self.fold, self.config.folds)


def train_fold(
    run_dir: Path,
    config: TrainConfig,
    split: dict[str, list[str]],
    fold: int,
    data: PreparedData,
    labels: dict[str, int],
    times: dict[str, float],
    dist: Distributed,
    show_progress: bool,
    history: dict[int, list],
    epoch_hook: EpochHook | None = None,
) -> pd.DataFrame:
    """Train one split; returns predictions of the best checkpoint for every patient in it
    (but the test part's, when ``config.hold_out_test``).

    ``history`` (fold -> epoch lines) is shared across folds to write ``history.jsonl``.
    ``epoch_hook`` (a search's pruner) sees each epoch's validation metric and may stop the
    trial, which raises :class:`Pruned` on every rank.
    """
    import torch
    from torch.utils.data import DataLoader

    from nsclc_engine.preprocess.dataset import AugmentConfig, make_datasets

    datasets = make_datasets(
        split, labels, data.image_paths, AugmentConfig(classes=config.augment), seed=config.seed
    )
    train_labels = [item.label for item in datasets["train"].items]
    fold_run = _set_up_fold(run_dir, config, fold, data, times, train_labels, dist)
    _resume(fold_run, history)
    if dist.world_size > 1:
        device = fold_run.device
        fold_run.model = torch.nn.parallel.DistributedDataParallel(
            fold_run.model, device_ids=[device.index] if device.type == "cuda" else None
        )
    # the balanced sampler is a classification device; survival batches are plain shuffles
    use_sampler = config.use_sampler and config.task == "classification"
    sampler = DistributedNumberedSampler(train_labels, use_sampler, config.seed + fold, dist)
    loader = DataLoader(
        datasets["train"],
        batch_size=config.batch_size,
        sampler=sampler,
        num_workers=loader_workers(config, fold_run.device),
        pin_memory=fold_run.device.type == "cuda",
        drop_last=False,
    )
    state = fold_run.state
    while state["epoch"] < config.epochs and state["bad_epochs"] < config.early_stopping_patience:
        epoch = state["epoch"] + 1
        started = time.perf_counter()
        sampler.set_epoch(epoch)
        datasets["train"].set_epoch(epoch)
        train_loss = _train_epoch(fold_run, loader, epoch, show_progress)
        metric = _end_epoch(fold_run, datasets["validation"], epoch, started, train_loss, history)
        if epoch_hook is not None:
            if _shared(dist, dist.is_main and epoch_hook(fold, epoch, metric)):
                raise Pruned(fold, epoch)
        if dist.world_size > 1:
            torch.distributed.barrier()
    return _predict_with_best(fold_run, datasets)


def _set_up_fold(
    run_dir: Path,
    config: TrainConfig,
    fold: int,
    data: PreparedData,
    times: dict[str, float],
    train_labels: list[int],
    dist: Distributed,
) -> FoldTraining:
    """The fold's task, network (its pretrained file loaded, its encoder frozen if asked),
    optimiser and scheduler, from the fold's own seed."""
    import torch

    from nsclc_engine.train.model import build_model, check_input
    from nsclc_engine.train.tasks import ClassificationTask, SurvivalTask

    device = select_device(config, dist)
    last_path, _ = checkpoint_paths(run_dir, fold, config.folds)
    shape = tuple(data.preprocess[f"out_{axis}"] for axis in ("depth", "height", "width"))
    check_input(config.model, shape, config.preset)
    input_format = memory_format(config, device, shape)
    if config.task == "survival":
        task = SurvivalTask(times, device, bank_size=config.cox_bank)
    else:
        task = ClassificationTask(train_labels, config.use_class_weights, device)
    if device.type == "cuda":  # this fold's peak, not an earlier fold's or run's
        torch.cuda.reset_peak_memory_stats(device)
    # each fold starts from its own seed: a resumed run builds fold k as an unbroken one did
    torch.manual_seed(config.seed + 1000 * fold + dist.rank)
    model = build_model(config.model, task.outputs, norm=config.norm, input_shape=shape)
    loaded = None  # a resumed fold's weights come from its checkpoint, not the file
    if last_path.exists():
        loaded = status(run_dir).get("model", {}).get("pretrained") or {"file": config.pretrained}
    network = _initialise(model, config, loaded)
    model = model.to(device, memory_format=input_format)
    log.info("fold %d on %s, %s", fold, device, resolved_precision(config, device))
    optimiser = torch.optim.Adam(
        _parameter_groups(model, config), lr=config.lr, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimiser, mode="min", factor=config.lr_factor, patience=config.lr_patience
    )
    state = {"epoch": 0, "best_loss": float("inf"), "bad_epochs": 0, "best_epoch": 0}
    state["history"] = []
    return FoldTraining(
        run_dir,
        config,
        fold,
        dist,
        device,
        input_format,
        model,
        optimiser,
        scheduler,
        task,
        network,
        state,
    )


def _resume(fold_run: FoldTraining, history: dict[int, list]) -> None:
    """Continue from the committed ``checkpoint_last`` where there is one (:mod:`checkpoints`
    makes ``checkpoint_best`` agree with it first): weights, optimiser, scheduler, the task's
    state, the epoch counters and lines, the random states. The history file is rewritten
    from it, even with no epoch left."""
    import torch

    dist, state = fold_run.dist, fold_run.state
    last_path, best_path = fold_run.paths
    checkpoint = checkpoints.recover(last_path, best_path) if dist.is_main else None
    if dist.world_size > 1:  # the other ranks read what rank 0 recovered
        torch.distributed.barrier()
        if not dist.is_main and last_path.exists():
            checkpoint = torch.load(last_path, map_location="cpu", weights_only=True)
    if checkpoint is not None:
        fold_run.model.load_state_dict(checkpoint["model"])
        fold_run.optimiser.load_state_dict(checkpoint["optimiser"])
        fold_run.scheduler.load_state_dict(checkpoint["scheduler"])
        fold_run.task.load_state_dict(_own(checkpoint.get("task", {}), dist))
        state |= {key: checkpoint[key] for key in state if key in checkpoint}
        if "best_epoch" not in checkpoint:  # written before the protocol named it
            state["best_epoch"] = -1 if best_path.exists() else 0
        if "random" in checkpoint:
            checkpoints.restore_random_states(_own(checkpoint["random"], dist))
        log.info("resumed fold %d after epoch %d", fold_run.fold, state["epoch"])
    history[fold_run.fold] = state["history"]
    if dist.is_main:
        write_history(fold_run.run_dir, history)


def _train_epoch(fold_run: FoldTraining, loader, epoch: int, show_progress: bool) -> float:
    """One pass over the training part; returns its mean loss. A cancel request stops it
    between batches (:class:`Cancelled`)."""
    from tqdm import tqdm

    from nsclc_engine.train.model import freeze_encoder

    config, model, task, device = fold_run.config, fold_run.model, fold_run.task, fold_run.device
    model.train()
    if config.encoder == "freeze" and config.pretrained:  # its batch norms keep their statistics
        freeze_encoder(_unwrap(model), config.model)
    total, count = 0.0, 0
    bar = tqdm(
        loader,
        desc=f"fold {fold_run.fold} epoch {epoch}",
        unit="batch",
        disable=not (show_progress and fold_run.dist.is_main),
        leave=False,
    )
    cancel_file = fold_run.run_dir / "cancel_requested"
    for volumes, targets, patient_ids in bar:
        if cancel_file.exists():
            raise Cancelled()
        volumes = volumes.to(device, non_blocking=True).to(memory_format=fold_run.input_format)
        targets = targets.to(device, non_blocking=True)
        with _autocast(config, device):
            loss = task.batch_loss(model(volumes).float(), targets, patient_ids)
        fold_run.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        fold_run.optimiser.step()
        total += float(loss.detach()) * len(targets)  # float(): a CPU-GPU sync, once a batch
        count += len(targets)
        bar.set_postfix(loss=f"{total / count:.4f}")
    return total / max(count, 1)


def _end_epoch(
    fold_run: FoldTraining,
    validation_part,
    epoch: int,
    started: float,
    train_loss: float,
    history: dict[int, list],
) -> float | None:
    """Score the validation part, step the scheduler and the early-stopping counters, and
    commit the epoch (its checkpoints, or a trial's best in memory; history; status); returns
    the epoch's validation metric (AUC or C-index) for a search's pruner."""
    config, dist, task, state = fold_run.config, fold_run.dist, fold_run.task, fold_run.state
    fold, device = fold_run.fold, fold_run.device
    validation = predict(_unwrap(fold_run.model), validation_part, config, device, dist, task)
    if not np.isfinite(validation[task.score_column]).all():
        raise ValueError(
            f"fold {fold} epoch {epoch}: the network's outputs are no longer finite "
            f"(training diverged, {resolved_precision(config, device)}); try a lower lr "
            "or --set precision=fp32"
        )
    val_loss = task.validation_loss(validation)
    val_metrics = task.epoch_metrics(validation, val_loss)
    # the monitored quantity, as a loss (lower is better) for the scheduler and stopping
    monitored = monitored_loss(config, val_metrics)
    fold_run.scheduler.step(monitored)
    # the first epoch always saves a best checkpoint, even with an undefined metric
    improved = monitored < state["best_loss"] or state["best_epoch"] == 0
    state["best_loss"] = min(monitored, state["best_loss"])
    state["bad_epochs"] = 0 if improved else state["bad_epochs"] + 1
    state["epoch"] = epoch
    state["best_epoch"] = epoch if improved else state["best_epoch"]
    line = {
        "fold": fold,
        "epoch": epoch,
        "train_loss": train_loss,
        **{f"val_{k}": v for k, v in val_metrics.items()},
        "lr": fold_run.optimiser.param_groups[-1]["lr"],  # the head's (an encoder may be slower)
        "seconds": time.perf_counter() - started,
        "best": improved,
    }
    state["history"].append(line)
    # each rank's own random states and risk bank, so a resumed DDP run continues each
    per_rank = _gather({"random": checkpoints.random_states(), "task": task.state_dict()}, dist)
    if dist.is_main:
        _commit_epoch(fold_run, per_rank, improved)
        write_history(fold_run.run_dir, history)
        update_status(
            fold_run.run_dir,
            progress=_progress(config, fold, epoch),
            epoch=epoch,
            fold=fold,
            stage="training",
        )
        log.info(
            "fold %d epoch %d: train loss %.4f, val loss %.4f, val %s %.3f, lr %.2g, %.1f s%s",
            fold,
            epoch,
            line["train_loss"],
            val_loss,
            task_spec(config.task).metric_name,
            line.get("val_c_index", line.get("val_auc")),
            line["lr"],
            line["seconds"],
            " (best)" if improved else "",
        )
    return val_metrics.get("c_index", val_metrics.get("auc"))


def _commit_epoch(fold_run: FoldTraining, per_rank: list[dict], improved: bool) -> None:
    """The epoch's checkpoints in the protocol's order (:func:`checkpoints.commit`); a search
    trial is never resumed (a lost one is run again as a new trial), so it keeps its best
    weights in memory, written once when the fold ends."""
    config, state = fold_run.config, fold_run.state
    weights = _unwrap(fold_run.model).state_dict()
    about = {"config": asdict(config), "fold": fold_run.fold, "epoch": state["epoch"]}
    if config.study:
        if improved:
            fold_run.kept_best = {
                "model": {key: value.detach().clone() for key, value in weights.items()},
                **about,
                "best_loss": state["best_loss"],
            }
        return
    checkpoints.commit(
        *fold_run.paths,
        last={
            "model": weights,
            "optimiser": fold_run.optimiser.state_dict(),
            "scheduler": fold_run.scheduler.state_dict(),
            "task": [entry["task"] for entry in per_rank],
            "random": [entry["random"] for entry in per_rank],
            **about,
            **state,
        },
        best={"model": weights, **about, "best_loss": state["best_loss"]} if improved else None,
    )


def _predict_with_best(fold_run: FoldTraining, datasets: dict) -> pd.DataFrame:
    """Every part's predictions (a trial's test part held out) by the fold's best epoch."""
    import torch

    from nsclc_engine.preprocess.dataset import CachedVolumeDataset

    config, dist, run_dir = fold_run.config, fold_run.dist, fold_run.run_dir
    _, best_path = fold_run.paths
    if fold_run.kept_best is not None:
        checkpoints.save(fold_run.kept_best, best_path)  # what the study's test scoring loads
    if dist.world_size > 1:
        torch.distributed.barrier()
    best = fold_run.kept_best or torch.load(best_path, map_location="cpu", weights_only=True)
    model = _unwrap(fold_run.model)
    model.load_state_dict(best["model"])
    frames, started = [], time.perf_counter()
    for part, dataset in datasets.items():
        if part == "test" and config.hold_out_test:
            continue  # a trial's: predicted once, for the study's best (runner.evaluate_test)
        # the training patients as they are: their augmented copies were for learning only
        plain = CachedVolumeDataset(dataset.items, None, (), config.seed)
        frame = predict(model, plain, config, fold_run.device, dist, fold_run.task)
        frames.append(frame.assign(split=part, fold=fold_run.fold))
    if dist.is_main:  # what the network costs, for choosing one (the Runs page, status.json)
        earlier = status(run_dir).get("seconds_final_predictions", 0) if fold_run.fold else 0
        update_status(
            run_dir,
            model=fold_run.network | peak_memory(fold_run.device),
            seconds_final_predictions=round(earlier + time.perf_counter() - started, 3),
        )
    return pd.concat(frames, ignore_index=True)


def _initialise(model, config: TrainConfig, loaded: dict | None) -> dict:
    """Load the run's pretrained file (if any) and freeze the encoder if asked; returns what
    the run records of its network: name, parameters (all, and trainable) and the file. A
    resumed fold (``loaded``: the record of its first start) takes its weights from its
    checkpoint instead, and keeps that record."""
    from nsclc_engine.train.model import freeze_encoder, parameter_count
    from nsclc_engine.train.weights import load_pretrained

    network = {"name": config.model, "parameters": parameter_count(model)}
    if not config.pretrained:
        log.info("random initialisation (no --pretrained file)")
        return network | {"trainable_parameters": network["parameters"]}
    if loaded is not None:
        record = loaded
    else:
        record = load_pretrained(model, config.pretrained, config.model).record()
    if config.encoder == "freeze":
        freeze_encoder(model, config.model)
    elif config.norm == "group":
        log.warning("norm=group: the file's batch-norm statistics are not used")
    return network | {
        "trainable_parameters": parameter_count(model),
        "encoder": config.encoder,
        "pretrained": record,
    }


def _parameter_groups(model, config: TrainConfig) -> list[dict]:
    """One group at ``lr``; with a pretrained encoder that is fine-tuned, the encoder at
    ``lr * encoder_lr_scale`` and the new head at ``lr``; a frozen encoder is left out."""
    from nsclc_engine.train.model import encoder_parameters, head_of

    head = list(head_of(model, config.model).parameters())
    if not config.pretrained or (config.encoder != "freeze" and config.encoder_lr_scale == 1):
        return [{"params": list(model.parameters())}]
    if config.encoder == "freeze":
        return [{"params": head}]
    encoder = encoder_parameters(model, config.model)
    return [{"params": encoder, "lr": config.lr * config.encoder_lr_scale}, {"params": head}]
