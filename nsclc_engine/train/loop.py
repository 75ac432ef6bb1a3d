"""The training loop of one split: device and precision, sampling, epochs, checkpoints,
early stopping, and the best checkpoint's predictions. Runs under ``torchrun`` too (DDP)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from nsclc_engine.parallel import available_cores
from nsclc_engine.runs import checkpoint_paths, status, update_status, write_history
from nsclc_engine.task_spec import task_spec
from nsclc_engine.train import checkpoints
from nsclc_engine.train.config import TrainConfig
from nsclc_engine.train.prepare import PreparedData
from nsclc_engine.train.tasks import task_class

log = logging.getLogger("nsclc_engine.train")


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls) -> Distributed:
        return cls(
            int(os.environ.get("RANK", 0)),
            int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)),
        )


def device_named(name: str):
    """The device ``name`` says: ``auto`` (CUDA where there is one), ``cpu`` or ``cuda``;
    ValueError for ``cuda`` where there is none."""
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda, but no CUDA device is available; use cpu or auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def select_device(config: TrainConfig, dist: Distributed):
    import torch

    if device_named(config.device).type == "cuda":
        torch.cuda.set_device(dist.local_rank)
        # fixed input shapes: let cuDNN pick its fastest kernels (off under --deterministic)
        torch.backends.cudnn.benchmark = not config.deterministic
        return torch.device("cuda", dist.local_rank)
    return torch.device("cpu")


CHANNELS_LAST_MIN_VOXELS = 1_000_000


def memory_format(config: TrainConfig, device, input_shape: Sequence[int]):
    """channels_last_3d where it helps: on an H200 bf16 steps ran 1.21x faster with it at the
    ``paper`` preset (1.6 M voxels) but 0.63x at ``demo`` (131 k), and 2.5x slower on the CPU."""
    import torch

    use = config.channels_last == "on" or (
        config.channels_last == "auto"
        and device.type == "cuda"
        and int(np.prod(input_shape)) >= CHANNELS_LAST_MIN_VOXELS
    )
    return torch.channels_last_3d if use else torch.contiguous_format


def loader_workers(config: TrainConfig, device) -> int:
    """On the CPU the model bounds a step and workers only take its cores; on CUDA they feed it."""
    if config.workers >= 0:
        return config.workers
    if device.type != "cuda":
        return 0
    per_rank = available_cores() // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", 1)))
    return max(1, min(8, per_rank - 1))


def seed_everything(seed: int, deterministic: bool) -> None:
    import random

    import torch

    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - libraries still draw from the legacy global state
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


class DistributedNumberedSampler:
    """The same weighted (or shuffled) draw on every rank, each rank taking every n-th item."""

    def __init__(self, labels: Sequence[int], use_weights: bool, seed: int, dist: Distributed):
        self.labels, self.use_weights, self.seed, self.dist = list(labels), use_weights, seed, dist
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        import torch

        from nsclc_engine.preprocess.dataset import NumberedDraws, balanced_sampler

        seed = self.seed * 1000 + self.epoch
        if self.use_weights:
            draws = list(balanced_sampler(self.labels, seed))
        else:
            order = torch.randperm(len(self.labels), generator=torch.Generator().manual_seed(seed))
            draws = list(NumberedDraws(order.tolist()))
        per_rank = len(draws) // self.dist.world_size
        return iter(draws[self.dist.rank :: self.dist.world_size][:per_rank])

    def __len__(self) -> int:
        return len(self.labels) // self.dist.world_size


class Cancelled(Exception):
    pass


class Pruned(Exception):
    """A search stopped this trial early (its epoch hook said so) after ``epoch``."""

    def __init__(self, fold: int, epoch: int):
        super().__init__(f"pruned at fold {fold} epoch {epoch}")
        self.fold, self.epoch = fold, epoch


# (fold, epoch, validation AUC or C-index) -> stop now? Called on rank 0 after each epoch
EpochHook = Callable[[int, int, float], bool]


def predict(model, dataset, config: TrainConfig, device, dist: Distributed, task) -> pd.DataFrame:
    """The task's prediction rows for every item of ``dataset``, gathered from all ranks."""
    import torch
    from torch.utils.data import DataLoader

    shard = torch.utils.data.Subset(dataset, list(range(dist.rank, len(dataset), dist.world_size)))
    loader = DataLoader(
        shard,
        batch_size=max(config.batch_size, 8),
        shuffle=False,
        num_workers=loader_workers(config, device),
        pin_memory=device.type == "cuda",
    )
    rows = []
    model.eval()
    with torch.no_grad(), _autocast(config, device):
        for volumes, labels, patient_ids in loader:
            volumes = volumes.to(device, non_blocking=True)
            volumes = volumes.to(memory_format=memory_format(config, device, volumes.shape[2:]))
            rows += task.rows(model(volumes).float().cpu(), labels.tolist(), list(patient_ids))
    if dist.world_size > 1:
        gathered: list = [None] * dist.world_size
        torch.distributed.all_gather_object(gathered, rows)
        rows = [row for part in gathered for row in part]
    return pd.DataFrame(rows).sort_values("patient_id").reset_index(drop=True)


def columns_of(config: TrainConfig) -> list[str]:
    return list(task_class(config.task).columns)


def resolved_precision(config: TrainConfig, device) -> str:
    """``auto``: bf16 on CUDA, fp32 on the CPU. (bf16 autocast on our CPUs, which have native
    bf16, made steps 1.46x faster but a demo run's weights turned NaN in its second epoch.)"""
    if config.precision != "auto":
        return config.precision
    return "bf16" if device.type == "cuda" else "fp32"


def _autocast(config: TrainConfig, device):
    import torch

    enabled = resolved_precision(config, device) == "bf16"
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


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
    from tqdm import tqdm

    from nsclc_engine.preprocess.dataset import AugmentConfig, CachedVolumeDataset, make_datasets
    from nsclc_engine.train.model import build_model, check_input, freeze_encoder
    from nsclc_engine.train.tasks import ClassificationTask, SurvivalTask

    device = select_device(config, dist)
    last_path, best_path = checkpoint_paths(run_dir, fold, config.folds)
    datasets = make_datasets(
        split, labels, data.image_paths, AugmentConfig(classes=config.augment), seed=config.seed
    )
    train_labels = [item.label for item in datasets["train"].items]
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
        loaded = (status(run_dir).get("model") or {}).get("pretrained") or {
            "file": config.pretrained
        }
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
    checkpoint = checkpoints.recover(last_path, best_path) if dist.is_main else None
    if dist.world_size > 1:  # the other ranks read what rank 0 recovered
        torch.distributed.barrier()
        if not dist.is_main and last_path.exists():
            checkpoint = torch.load(last_path, map_location="cpu", weights_only=True)
    if checkpoint is not None:  # resume
        model.load_state_dict(checkpoint["model"])
        optimiser.load_state_dict(checkpoint["optimiser"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        task.load_state_dict(_own(checkpoint.get("task", {}), dist))
        state |= {key: checkpoint[key] for key in state if key in checkpoint}
        if "best_epoch" not in checkpoint:  # written before the protocol named it
            state["best_epoch"] = -1 if best_path.exists() else 0
        if "random" in checkpoint:
            checkpoints.restore_random_states(_own(checkpoint["random"], dist))
        log.info("resumed fold %d after epoch %d", fold, state["epoch"])
    history[fold] = state["history"]
    if dist.is_main:  # a resume rewrites the history from the checkpoint, even with no epoch left
        write_history(run_dir, history)
    if dist.world_size > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    # the balanced sampler is a classification device; survival batches are plain shuffles
    use_sampler = config.use_sampler and config.task == "classification"
    sampler = DistributedNumberedSampler(train_labels, use_sampler, config.seed + fold, dist)
    loader = DataLoader(
        datasets["train"],
        batch_size=config.batch_size,
        sampler=sampler,
        num_workers=loader_workers(config, device),
        pin_memory=device.type == "cuda",
        drop_last=False,
    )
    cancel_file = run_dir / "cancel_requested"
    kept_best = None  # a search trial's best epoch, in memory

    while state["epoch"] < config.epochs and state["bad_epochs"] < config.early_stopping_patience:
        epoch = state["epoch"] + 1
        started = time.perf_counter()
        sampler.set_epoch(epoch)
        datasets["train"].set_epoch(epoch)
        model.train()
        if (
            config.encoder == "freeze" and config.pretrained
        ):  # its batch norms keep their statistics
            freeze_encoder(_unwrap(model), config.model)
        total, count = 0.0, 0
        bar = tqdm(
            loader,
            desc=f"fold {fold} epoch {epoch}",
            unit="batch",
            disable=not (show_progress and dist.is_main),
            leave=False,
        )
        for volumes, targets, patient_ids in bar:
            if cancel_file.exists():
                raise Cancelled()
            volumes = volumes.to(device, non_blocking=True).to(memory_format=input_format)
            targets = targets.to(device, non_blocking=True)
            with _autocast(config, device):
                loss = task.batch_loss(model(volumes).float(), targets, patient_ids)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(
                targets
            )  # float(): a CPU-GPU sync point, once a batch
            count += len(targets)
            bar.set_postfix(loss=f"{total / count:.4f}")
        validation = predict(_unwrap(model), datasets["validation"], config, device, dist, task)
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
        scheduler.step(monitored)
        # the first epoch always saves a best checkpoint, even with an undefined metric
        improved = monitored < state["best_loss"] or state["best_epoch"] == 0
        state["best_loss"] = min(monitored, state["best_loss"])
        state["bad_epochs"] = 0 if improved else state["bad_epochs"] + 1
        state["epoch"] = epoch
        state["best_epoch"] = epoch if improved else state["best_epoch"]
        line = {
            "fold": fold,
            "epoch": epoch,
            "train_loss": total / max(count, 1),
            **{f"val_{k}": v for k, v in val_metrics.items()},
            "lr": optimiser.param_groups[-1]["lr"],  # the head's (an encoder may learn slower)
            "seconds": time.perf_counter() - started,
            "best": improved,
        }
        state["history"].append(line)
        # each rank's own random states and risk bank, so a resumed DDP run continues each
        per_rank = _gather({"random": checkpoints.random_states(), "task": task.state_dict()}, dist)
        if dist.is_main:
            weights = _unwrap(model).state_dict()
            about = {"config": asdict(config), "fold": fold, "epoch": epoch}
        if dist.is_main and config.study and improved:
            # a search trial is never resumed (a lost one is run again as a new trial): its
            # best weights stay in memory and are written once, when the fold ends
            kept_best = {
                "model": {key: value.detach().clone() for key, value in weights.items()},
                **about,
                "best_loss": state["best_loss"],
            }
        if dist.is_main and not config.study:
            checkpoints.commit(
                last_path,
                best_path,
                last={
                    "model": weights,
                    "optimiser": optimiser.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "task": [state["task"] for state in per_rank],
                    "random": [state["random"] for state in per_rank],
                    **about,
                    **state,
                },
                best={"model": weights, **about, "best_loss": state["best_loss"]}
                if improved
                else None,
            )
        if dist.is_main:
            write_history(run_dir, history)
            update_status(
                run_dir,
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
        if epoch_hook is not None:
            metric = val_metrics.get("c_index", val_metrics.get("auc"))
            if _shared(dist, dist.is_main and epoch_hook(fold, epoch, metric)):
                raise Pruned(fold, epoch)
        if dist.world_size > 1:
            torch.distributed.barrier()

    if kept_best is not None:
        checkpoints.save(kept_best, best_path)  # the weights the study's test scoring loads
    if dist.world_size > 1:
        torch.distributed.barrier()
    best = kept_best or torch.load(best_path, map_location="cpu", weights_only=True)
    _unwrap(model).load_state_dict(best["model"])
    frames, started = [], time.perf_counter()
    for part, dataset in datasets.items():
        if part == "test" and config.hold_out_test:
            continue  # a trial's: predicted once, for the study's best (runner.evaluate_test)
        # the training patients as they are: their augmented copies were for learning only
        plain = CachedVolumeDataset(dataset.items, None, (), config.seed)
        frame = predict(_unwrap(model), plain, config, device, dist, task)
        frames.append(frame.assign(split=part, fold=fold))
    if dist.is_main:  # what the network costs, for choosing one (the Runs page, status.json)
        earlier = status(run_dir).get("seconds_final_predictions", 0) if fold else 0
        predicting = earlier + time.perf_counter() - started
        update_status(
            run_dir,
            model=network | peak_memory(device),
            seconds_final_predictions=round(predicting, 3),
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


def peak_memory(device) -> dict:
    """The peak memory of training so far, in MB, and what was measured: on a GPU the CUDA
    memory tensors took (``torch.cuda.max_memory_allocated``), on the CPU the process's peak
    resident set (everything the process held, Python and data included)."""
    import torch

    if device.type == "cuda":
        megabytes = torch.cuda.max_memory_allocated(device) / 2**20
        return {"peak_memory_mb": round(megabytes, 1), "memory_measured": "CUDA tensors"}
    import resource

    megabytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    return {"peak_memory_mb": round(megabytes, 1), "memory_measured": "process peak RSS"}


def monitored_loss(config: TrainConfig, val_metrics: dict) -> float:
    """What early stopping, the learning-rate schedule and the best checkpoint follow, as a
    loss: the validation loss (``monitor="loss"``, the report's), or one minus the validation
    AUC / C-index (``"metric"``). With batch norm and small batches the validation loss jumps
    with the running statistics (0.61 to 0.93 between neighbouring epochs on the demo) while
    the ranking, which is what the threshold and recalibration then build on, barely moves.
    An undefined metric (one class) counts as no improvement."""
    if config.monitor == "loss":
        return float(val_metrics["loss"])
    value = val_metrics.get("c_index", val_metrics.get("auc"))
    return float("inf") if value is None or not np.isfinite(value) else 1.0 - float(value)


def _shared(dist: Distributed, answer: bool) -> bool:
    """Rank 0's ``answer``, the same on every rank."""
    if dist.world_size == 1:
        return bool(answer)
    import torch

    shared = [bool(answer)]
    torch.distributed.broadcast_object_list(shared, src=0)
    return bool(shared[0])


def _gather(value, dist: Distributed) -> list:
    """``value`` of every rank, in rank order (``[value]`` without DDP)."""
    if dist.world_size == 1:
        return [value]
    import torch

    gathered: list = [None] * dist.world_size
    torch.distributed.all_gather_object(gathered, value)
    return gathered


def _own(saved, dist: Distributed):
    """This rank's entry of a per-rank checkpoint value (a run resumed on fewer ranks takes
    the last; checkpoints from before per-rank values hold one, shared)."""
    if isinstance(saved, list):
        return saved[min(dist.rank, len(saved) - 1)]
    return saved


def _unwrap(model):
    return model.module if hasattr(model, "module") else model


DATA_SHARE = 0.3  # of a job's progress bar: preparing data (the demo's first build: ~2 min)


def _progress(config: TrainConfig, fold: int, epoch: int) -> float:
    folds = max(config.folds, 1)
    return round(DATA_SHARE + (1 - DATA_SHARE) * (fold + epoch / config.epochs) / folds, 4)
