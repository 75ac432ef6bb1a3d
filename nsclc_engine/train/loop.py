"""What the training of a split runs on: device and precision, DDP (under ``torchrun``),
sampling, prediction, the monitored quantity and progress. One fold's steps (epochs,
checkpoints, early stopping, the best epoch's predictions) are :mod:`nsclc_engine.train.fold`."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from nsclc_engine.parallel import available_cores
from nsclc_engine.train.config import TrainConfig
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
