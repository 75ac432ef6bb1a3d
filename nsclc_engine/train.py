"""Headless training: ``python -m nsclc_engine.train`` (or under ``torchrun`` for several GPUs).

With no arguments it builds the embedded demo cohort if absent, preprocesses it with the
``demo`` preset, splits it, trains the 3D ResNet-18 and writes a complete run folder::

    <artifacts>/runs/<run_id>/
        config.json        the resolved TrainConfig + preprocessing config, versions, git commit
        splits.json        patient-level splits (reloaded on resume, never re-drawn)
        history.jsonl      one line per epoch (losses, validation AUC and metrics at 0.5, lr, time)
        checkpoint_last.pt / checkpoint_best.pt   (tensors and plain types: weights_only loads)
        predictions.csv    patient_id, split, fold, y_true, y_prob, logit (best checkpoint)
        metrics.json, threshold.json, calibration.json, report.html
                           the evaluation (``nsclc_engine.evaluate``): metrics with bootstrap
                           CIs, the threshold fitted on validation, calibration, HTML report
        status.json        queued / running / finished / failed / cancelled, progress, times
        train.log          plain log lines

Every file is written atomically. ``--resume RUN_ID`` continues from ``checkpoint_last.pt``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from nsclc_engine.config import add_config_arguments, load_config, write_text_atomic
from nsclc_engine.demo import DEMO_PATIENTS
from nsclc_engine.paths import PROJECT_ROOT, artifacts_dir

log = logging.getLogger("nsclc_engine.train")

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run depends on; saved as ``config.json`` and inside each checkpoint.

    The defaults are the house protocol (see :data:`PROTOCOLS`); ``--protocol report`` starts
    from the technical report's settings instead.
    """

    dicom: str = ""  # empty: the embedded demo cohort
    clinical: str = ""
    demo_patients: int = DEMO_PATIENTS
    protocol: str = "house"  # the named settings the run started from (see PROTOCOLS)
    label: str = ""  # empty: os_2y; survival runs always take deadstatus_event as the event
    task: str = "classification"  # classification (the label) | survival (Cox on time + event)
    preset: str = "demo"
    crop_mode: str = "fixed_fov"  # empty: the preset's; fixed_fov keeps absolute tumour size
    context_mm: float | None = 10.0  # CT kept around the GTV, the rest air; None: the preset's
    folds: int = 0
    seed: int = 0
    epochs: int = 6
    batch_size: int = 8
    lr: float = 3e-4
    lr_factor: float = 0.5
    lr_patience: int = 2
    early_stopping_patience: int = 4
    monitor: str = "metric"  # metric (validation AUC / C-index) | loss (the report's)
    use_sampler: bool = False
    use_class_weights: bool = True
    augment: str = "all"  # all | off | minority (the report's: a label cue, see data.py)
    cox_bank: int = 64  # survival: recent training risks kept as extra (detached) risk set
    pretrained: str = ""
    norm: str = "batch"  # batch (the report's, MedicalNet's) | group (batch-size independent)
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16
    channels_last: str = "auto"  # auto (CUDA, >= 1M-voxel inputs: measured faster) | on | off
    workers: int = -1  # loader processes; -1: 0 on the CPU, min(8, cores per GPU - 1) on CUDA
    deterministic: bool = False
    shuffle_labels: bool = False
    bootstrap_resamples: int = 2000

    def __post_init__(self) -> None:
        from nsclc_engine.clinical import LABELS
        from nsclc_engine.preprocess import PRESETS
        from nsclc_engine.tasks import TASKS

        if self.task not in TASKS:
            raise ValueError(f"task {self.task!r}: choose one of {', '.join(TASKS)}")
        # frozen: resolve the label once, here. A survival run models survival_time_days with
        # deadstatus_event as its event, whatever label it was given (a protocol's or a form's)
        if self.task == "survival":
            object.__setattr__(self, "label", "deadstatus_event")
        elif not self.label:
            object.__setattr__(self, "label", "os_2y")
        if self.label not in LABELS:
            raise ValueError(f"label {self.label!r}: choose one of {sorted(LABELS)}")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol {self.protocol!r}: choose one of {sorted(PROTOCOLS)}")
        if self.preset not in PRESETS:
            raise ValueError(f"preset {self.preset!r}: choose one of {sorted(PRESETS)}")
        if self.device not in ("auto", "cpu", "cuda") or self.precision not in (
            "auto",
            "fp32",
            "bf16",
        ):
            raise ValueError("device must be auto/cpu/cuda and precision auto/fp32/bf16")
        if bool(self.dicom) != bool(self.clinical):
            raise ValueError("give both --dicom and --clinical, or neither (demo cohort)")
        if self.channels_last not in ("auto", "on", "off"):
            raise ValueError(f"channels_last {self.channels_last!r}: choose auto, on or off")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be at least 1")
        if self.monitor not in ("metric", "loss"):
            raise ValueError(f"monitor {self.monitor!r}: choose metric or loss")
        if self.cox_bank < 0:
            raise ValueError(f"cox_bank {self.cox_bank}: must be 0 (off) or more")

    @property
    def augmentation_warning(self) -> str:
        """Non-empty when the run augments by label (:attr:`AugmentConfig.label_cue_warning`)."""
        from nsclc_engine.data import AugmentConfig

        return AugmentConfig(classes=self.augment).label_cue_warning


# Named starting points for TrainConfig. ``house`` is the default: labels and augmentation
# chosen so the first run can be learned from. ``report`` reproduces the technical report
# (../shared/reference): deadstatus_event (about 10 survivors in an 84-patient test split),
# the GTV bounding-box crop, balanced sampler and class weights together, minority-only
# augmentation (a label cue), Adam 1e-3, batch 4, patience 3.
PROTOCOLS: dict[str, dict] = {
    "house": {},
    "report": {
        "label": "deadstatus_event",
        "crop_mode": "",
        "context_mm": None,
        "epochs": 12,
        "batch_size": 4,
        "lr": 1e-3,
        "lr_patience": 1,
        "early_stopping_patience": 3,
        "monitor": "loss",
        "use_sampler": True,
        "use_class_weights": True,
        "augment": "minority",
        "cox_bank": 0,
    },
}


def protocol_config(name: str) -> TrainConfig:
    """The TrainConfig a named protocol starts from (overrides go on top)."""
    if name not in PROTOCOLS:
        raise ValueError(f"protocol {name!r}: choose one of {sorted(PROTOCOLS)}")
    return TrainConfig(protocol=name, **PROTOCOLS[name])


def build_config(
    path: str | os.PathLike | None = None, overrides: Sequence[str] = (), protocol: str = "house"
) -> TrainConfig:
    """The protocol's settings, then the JSON file, then ``key=value`` overrides. A
    ``protocol`` named in the file or the overrides picks the starting settings, so a run
    labelled with a protocol always ran with its settings."""
    for override in overrides:
        key, _, value = override.partition("=")
        if key.strip() == "protocol":
            protocol = value.strip()
    if path is not None:
        protocol = json.loads(Path(path).read_text()).get("protocol", protocol)
    return load_config(TrainConfig, path, overrides, base=protocol_config(protocol))


def validate_run_id(run_id: str) -> str:
    if not RUN_ID.match(run_id or ""):
        raise ValueError(
            f"run id {run_id!r}: use 1-64 letters, digits, '_', '-' or '.', starting with a "
            "letter or digit (no paths)"
        )
    return run_id


def new_run_id() -> str:
    return dt.datetime.now().strftime("%Y%m%d-%H%M%S-") + os.urandom(3).hex()


def runs_dir(artifacts: str | os.PathLike | None = None) -> Path:
    return Path(artifacts or artifacts_dir()) / "runs"


# --- small file helpers ----------------------------------------------------------------------


def write_json(path: Path, payload: dict) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2, default=_json_default) + "\n")


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def update_status(run_dir: Path, **changes) -> dict:
    path = run_dir / "status.json"
    status = json.loads(path.read_text()) if path.exists() else {}
    status.update(changes, updated=_now())
    write_json(path, status)
    return status


def _now() -> str:
    return dt.datetime.now().isoformat(timespec="seconds")


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _versions() -> dict:
    import monai
    import torch

    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "monai": monai.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
    }


# --- data ------------------------------------------------------------------------------------


@dataclass
class PreparedData:
    cohort_dir: Path
    cache_dir: Path
    labels: dict[str, int]
    image_paths: dict[str, Path]
    preprocess: dict
    times: dict[str, float]  # survival_time_days per patient


def prepare_data(
    config: TrainConfig,
    artifacts: Path,
    show_progress: bool,
    on_progress: Callable[[str, float], None] | None = None,
) -> PreparedData:
    """Cohort (the demo is built if absent), preprocessing into the cache, labels.

    ``on_progress(stage, fraction)`` follows the slow parts (writing the demo cohort)."""
    report = on_progress or (lambda stage, fraction: None)
    from nsclc_engine.cohort import CohortConfig, load_cohort, run_cohort
    from nsclc_engine.data import items_from_cache
    from nsclc_engine.demo import build_demo, demo_paths
    from nsclc_engine.paths import default_cache_dir
    from nsclc_engine.preprocess import PRESETS, preprocess_cohort
    from nsclc_engine.synth import SynthConfig

    if config.dicom:
        clinical = Path(config.clinical).resolve()
        source = f"{Path(config.dicom).resolve()}|{clinical}|{clinical.stat().st_mtime_ns}"
        key = hashlib.sha256(source.encode()).hexdigest()[:16]
        cohort_dir = artifacts / "cohorts" / f"{Path(config.dicom).name}-{key}"
        if not (cohort_dir / "cohort.csv").exists():
            run_cohort(
                config.dicom,
                config.clinical,
                cohort_dir,
                CohortConfig(),
                show_progress=show_progress,
            )
    else:
        paths = demo_paths(artifacts)
        build_demo(
            artifacts,
            SynthConfig(n_patients=config.demo_patients),
            show_progress=show_progress,
            on_progress=lambda stage, fraction: report(stage, 0.9 * fraction),
        )
        cohort_dir = paths.cohort
    preprocess_config = PRESETS[config.preset]
    if config.crop_mode:
        preprocess_config = replace(preprocess_config, crop_mode=config.crop_mode)
    if config.context_mm is not None:
        preprocess_config = replace(preprocess_config, context_mm=config.context_mm)
    cache_dir = default_cache_dir() if "NSCLC_CACHE_DIR" in os.environ else artifacts / "cache"
    report("preprocessing (tumour-centred volumes into the cache)", 0.9)
    table = preprocess_cohort(cohort_dir, preprocess_config, cache_dir, show_progress=show_progress)
    ok = table[table.status != "failed"]
    cohort = load_cohort(cohort_dir)
    cohort = cohort[cohort.patient_id.isin(ok.patient_id) & cohort[config.label].notna()]
    labels = {row.patient_id: int(getattr(row, config.label)) for row in cohort.itertuples()}
    times = {row.patient_id: float(row.survival_time_days) for row in cohort.itertuples()}
    keys = dict(zip(ok.patient_id, ok.key, strict=True))
    image_paths = items_from_cache(cache_dir, keys, labels, preprocess_config)
    return PreparedData(
        cohort_dir, cache_dir, labels, image_paths, asdict(preprocess_config), times
    )


def shuffled(labels: dict[str, int], seed: int, times: dict[str, float] | None = None):
    """The negative control: the same outcomes, randomly reassigned to patients (a patient's
    label and survival time move together). Returns the labels, or ``(labels, times)``."""
    patients = sorted(labels)
    order = np.random.default_rng(seed).permutation(len(patients))
    new_labels = {p: int(labels[patients[k]]) for p, k in zip(patients, order, strict=True)}
    if times is None:
        return new_labels
    return new_labels, {p: float(times[patients[k]]) for p, k in zip(patients, order, strict=True)}


# --- training --------------------------------------------------------------------------------


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


def select_device(config: TrainConfig, dist: Distributed):
    import torch

    use_cuda = config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())
    if config.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda, but no CUDA device is available")
    if use_cuda:
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
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    per_rank = (cores or 2) // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", 1)))
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

        from nsclc_engine.data import NumberedDraws, balanced_sampler

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
    from nsclc_engine.tasks import ClassificationTask, SurvivalTask

    return list((SurvivalTask if config.task == "survival" else ClassificationTask).columns)


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
) -> pd.DataFrame:
    """Train one split; returns predictions of the best checkpoint for every patient in it.

    ``history`` (fold -> epoch lines) is shared across folds to write ``history.jsonl``.
    """
    import torch
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from nsclc_engine.data import AugmentConfig, CachedVolumeDataset, make_datasets
    from nsclc_engine.model import build_resnet18, load_pretrained
    from nsclc_engine.tasks import ClassificationTask, SurvivalTask

    device = select_device(config, dist)
    suffix = f"_fold{fold}" if config.folds else ""
    last_path, best_path = (
        run_dir / f"checkpoint_last{suffix}.pt",
        run_dir / f"checkpoint_best{suffix}.pt",
    )
    datasets = make_datasets(
        split, labels, data.image_paths, AugmentConfig(classes=config.augment), seed=config.seed
    )
    train_labels = [item.label for item in datasets["train"].items]
    shape = [data.preprocess[f"out_{axis}"] for axis in ("depth", "height", "width")]
    input_format = memory_format(config, device, shape)
    if config.task == "survival":
        task = SurvivalTask(times, device, bank_size=config.cox_bank)
    else:
        task = ClassificationTask(train_labels, config.use_class_weights, device)
    model = build_resnet18(num_classes=task.outputs, norm=config.norm)
    model = model.to(device, memory_format=input_format)
    log.info("fold %d on %s, %s", fold, device, resolved_precision(config, device))
    if config.pretrained:
        load_pretrained(model, config.pretrained)
    else:
        log.info("random initialisation (no --pretrained file)")
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimiser, mode="min", factor=config.lr_factor, patience=config.lr_patience
    )

    state = {"epoch": 0, "best_loss": float("inf"), "bad_epochs": 0, "history": []}
    if last_path.exists():  # resume
        checkpoint = torch.load(last_path, map_location="cpu", weights_only=True)
        model.load_state_dict(checkpoint["model"])
        optimiser.load_state_dict(checkpoint["optimiser"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        state = {key: checkpoint[key] for key in state}
        log.info("resumed fold %d after epoch %d", fold, state["epoch"])
    history[fold] = state["history"]
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

    while state["epoch"] < config.epochs and state["bad_epochs"] < config.early_stopping_patience:
        epoch = state["epoch"] + 1
        started = time.perf_counter()
        sampler.set_epoch(epoch)
        datasets["train"].set_epoch(epoch)
        model.train()
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
        improved = monitored < state["best_loss"] or not best_path.exists()
        state["best_loss"] = min(monitored, state["best_loss"])
        state["bad_epochs"] = 0 if improved else state["bad_epochs"] + 1
        state["epoch"] = epoch
        line = {
            "fold": fold,
            "epoch": epoch,
            "train_loss": total / max(count, 1),
            **{f"val_{k}": v for k, v in val_metrics.items()},
            "lr": optimiser.param_groups[0]["lr"],
            "seconds": time.perf_counter() - started,
            "best": improved,
        }
        state["history"].append(line)
        if dist.is_main:
            checkpoint = {
                "model": _unwrap(model).state_dict(),
                "optimiser": optimiser.state_dict(),
                "scheduler": scheduler.state_dict(),
                "config": asdict(config),
                "fold": fold,
                **state,
            }
            _save_atomic(checkpoint, last_path)
            if improved:
                _save_atomic(checkpoint, best_path)
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
                "C-index" if config.task == "survival" else "AUC",
                line.get("val_c_index", line.get("val_auc")),
                line["lr"],
                line["seconds"],
                " (best)" if improved else "",
            )
        if dist.world_size > 1:
            torch.distributed.barrier()

    best = torch.load(best_path, map_location="cpu", weights_only=True)
    _unwrap(model).load_state_dict(best["model"])
    frames = []
    for part, dataset in datasets.items():
        # the training patients as they are: their augmented copies were for learning only
        plain = CachedVolumeDataset(dataset.items, None, (), config.seed)
        frame = predict(_unwrap(model), plain, config, device, dist, task)
        frames.append(frame.assign(split=part, fold=fold))
    return pd.concat(frames, ignore_index=True)


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


def _unwrap(model):
    return model.module if hasattr(model, "module") else model


DATA_SHARE = 0.3  # of a job's progress bar: preparing data (the demo's first build: ~2 min)


def _progress(config: TrainConfig, fold: int, epoch: int) -> float:
    folds = max(config.folds, 1)
    return round(DATA_SHARE + (1 - DATA_SHARE) * (fold + epoch / config.epochs) / folds, 4)


def _save_atomic(payload: dict, path: Path) -> None:
    import torch

    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(payload, temporary)
    os.replace(temporary, path)


def write_history(run_dir: Path, history: dict[int, list]) -> None:
    """``history.jsonl`` from the epochs saved in the checkpoints (written after each one), so
    it stays consistent with ``checkpoint_last`` after a kill and a resume."""
    lines = [line for fold in sorted(history) for line in history[fold]]
    write_text_atomic(
        run_dir / "history.jsonl",
        "".join(json.dumps(line, default=_json_default) + "\n" for line in lines),
    )


# what a run from before protocols, monitors, context and the Cox bank did
BEFORE_PROTOCOLS = {"protocol": "report", "monitor": "loss", "context_mm": None, "cox_bank": 0}


def load_run_config(run_dir: Path) -> TrainConfig:
    """The TrainConfig of a run (``config.json`` minus what was resolved when it ran)."""
    payload = json.loads((run_dir / "config.json").read_text())
    payload.pop("config_class", None)
    payload.pop("resolved", None)
    # runs written before these fields existed trained this way: keep it on resume
    return TrainConfig(**(BEFORE_PROTOCOLS | payload))


def run_training(run_id: str, artifacts: Path, show_progress: bool = True) -> dict:
    """Train (or resume) the run in ``<artifacts>/runs/<run_id>`` from its ``config.json``."""
    import torch

    from nsclc_engine.splits import SplitConfig, splits_for

    run_dir = runs_dir(artifacts) / validate_run_id(run_id)
    config = load_run_config(run_dir)
    dist = Distributed.from_environment()
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
            (run_dir / "cancel_requested").unlink(missing_ok=True)  # a resume starts afresh
            update_status(
                run_dir,
                state="running",
                pid=os.getpid(),
                started=_now(),
                error="",
                stage="preparing data (cohort, preprocessing cache)",
            )
        # rank 0 builds the cohort and fills the cache; the others then find it all cached
        if dist.is_main:

            def preparing(stage: str, fraction: float) -> None:
                update_status(run_dir, stage=stage, progress=round(DATA_SHARE * fraction, 4))

            data = prepare_data(config, artifacts, show_progress, preparing)
        if dist.world_size > 1:
            torch.distributed.barrier()
        if not dist.is_main:
            data = prepare_data(config, artifacts, show_progress=False)
        labels, times = data.labels, data.times
        if config.shuffle_labels:
            labels, times = shuffled(data.labels, config.seed, data.times)
        patients = sorted(labels)
        split_config = SplitConfig(folds=config.folds, seed=config.seed)
        splits = splits_for(
            run_dir / "splits.json",
            patients,
            [labels[p] for p in patients],
            split_config,
            config.label,
        )
        if dist.is_main:
            _write_resolved_config(run_dir, config, data)
        history: dict[int, list] = {}
        frames = [
            train_fold(
                run_dir, config, split, fold, data, labels, times, dist, show_progress, history
            )
            for fold, split in enumerate(splits)
        ]
        predictions = pd.concat(frames, ignore_index=True)[columns_of(config)]
        metrics = {}
        if dist.is_main:
            from nsclc_engine.evaluate import EvaluateConfig, evaluate_run

            write_text_atomic(run_dir / "predictions.csv", predictions.to_csv(index=False))
            update_status(run_dir, progress=0.99, stage="evaluating")
            try:
                metrics = evaluate_run(
                    run_dir,
                    EvaluateConfig(
                        bootstrap_resamples=config.bootstrap_resamples, seed=config.seed
                    ),
                )
            except Exception as error:  # the trained model and its predictions stay valid
                log.exception("evaluation failed; rerun python -m nsclc_engine.evaluate %s", run_id)
                update_status(run_dir, evaluation_error=f"{type(error).__name__}: {error}")
            update_status(run_dir, state="finished", progress=1.0, finished=_now(), stage="done")
            name, key = ("C-index", "c_index") if config.task == "survival" else ("AUC", "auc")
            test = metrics.get("splits", {}).get("test", {}).get(key, {})
            log.info(
                "finished: test %s %.3f (95%% CI %.3f-%.3f)",
                name,
                test.get(key, float("nan")),
                test.get("ci_low", float("nan")),
                test.get("ci_high", float("nan")),
            )
        return metrics
    except (Cancelled, KeyboardInterrupt):
        if dist.is_main:
            update_status(run_dir, state="cancelled", finished=_now())
            log.info("cancelled; the last checkpoint is kept")
        raise
    except Exception as error:
        if dist.is_main:
            update_status(
                run_dir, state="failed", finished=_now(), error=f"{type(error).__name__}: {error}"
            )
            log.exception("training failed")
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        if handler is not None:
            logging.getLogger("nsclc_engine").removeHandler(handler)
            handler.close()
        if dist.world_size > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _raise_cancelled(signum, frame):
    raise Cancelled()


def _attach_log(run_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(run_dir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("nsclc_engine")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return handler


def _write_resolved_config(run_dir: Path, config: TrainConfig, data: PreparedData) -> None:
    existing = json.loads((run_dir / "config.json").read_text())
    existing |= asdict(config)  # every field as used, also those an older file lacked
    existing["resolved"] = {
        "cohort_dir": str(data.cohort_dir),
        "cache_dir": str(data.cache_dir),
        "preprocess": data.preprocess,
        "n_patients": len(data.labels),
        "versions": _versions(),
        "git_commit": _git_commit(),
    }
    write_json(run_dir / "config.json", existing)


def create_run(config: TrainConfig, artifacts: Path, run_id: str = "") -> str:
    """A new run folder with ``config.json`` and a queued ``status.json``."""
    run_id = validate_run_id(run_id or new_run_id())
    run_dir = runs_dir(artifacts) / run_id
    run_dir.mkdir(parents=True, exist_ok=False)
    write_json(run_dir / "config.json", {"config_class": "TrainConfig", **asdict(config)})
    update_status(run_dir, state="queued", progress=0.0, created=_now(), run_id=run_id)
    return run_id


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    overrides = list(args.set)
    for key in (
        "dicom",
        "clinical",
        "label",
        "task",
        "preset",
        "folds",
        "device",
        "pretrained",
        "epochs",
        "seed",
    ):
        value = getattr(args, key)
        if value is not None:
            overrides.append(f"{key}={value}")
    if args.shuffle_labels:
        overrides.append("shuffle_labels=true")
    if args.deterministic:
        overrides.append("deterministic=true")
    return build_config(args.config, overrides, args.protocol)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nsclc_engine.train", description=__doc__.split("\n\n")[0]
    )
    add_config_arguments(parser, TrainConfig)
    parser.add_argument("--dicom", help="DICOM folder of the real data (with --clinical)")
    parser.add_argument("--clinical", help="Lung1 clinical CSV")
    parser.add_argument(
        "--protocol",
        choices=sorted(PROTOCOLS),
        default="house",
        help="starting settings: house (default) or report (the technical report's, with its "
        "label-dependent augmentation; for reproducing it only)",
    )
    parser.add_argument("--label", choices=["deadstatus_event", "os_2y"])
    parser.add_argument(
        "--task",
        choices=["classification", "survival"],
        help="survival: a Cox head on survival time with deadstatus_event as the event",
    )
    parser.add_argument("--preset", choices=["demo", "paper", "smoke"])
    parser.add_argument("--folds", type=int, help="k-fold cross-validation (0 = one split)")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--pretrained", help="local MedicalNet ResNet-18 weights")
    parser.add_argument("--shuffle-labels", action="store_true", help="negative control")
    parser.add_argument("--deterministic", action="store_true")
    parser.add_argument(
        "--artifacts", help="artifacts folder (default $NSCLC_ARTIFACTS_DIR or ./artifacts)"
    )
    parser.add_argument("--run-id", help="name of the new run (default: time stamp)")
    parser.add_argument("--resume", metavar="RUN_ID", help="continue a run from checkpoint_last")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    artifacts = Path(args.artifacts or artifacts_dir())
    dist = Distributed.from_environment()
    try:
        if args.resume:
            run_id = validate_run_id(args.resume)
            if not (runs_dir(artifacts) / run_id / "config.json").exists():
                raise ValueError(f"no run {run_id!r} in {runs_dir(artifacts)}")
        else:
            config = config_from_args(args)
            run_id = args.run_id or os.environ.get("NSCLC_RUN_ID") or new_run_id()
            if dist.is_main:
                create_run(config, artifacts, run_id)
            elif dist.world_size > 1:
                _wait_for(runs_dir(artifacts) / run_id / "config.json")
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"run {run_id}: {runs_dir(artifacts) / run_id}")
    try:
        metrics = run_training(run_id, artifacts, show_progress=not args.quiet)
    except Cancelled:
        return 3
    except Exception as error:
        print(f"error: training failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    if dist.is_main:
        from nsclc_engine.evaluate import print_summary

        if metrics:
            print_summary(metrics)
            print(f"report: {runs_dir(artifacts) / run_id / 'report.html'}")
        else:
            print(
                "evaluation failed (see train.log); rerun: "
                f"python -m nsclc_engine.evaluate {run_id}"
            )
    return 0


def _wait_for(path: Path, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise ValueError(f"{path} did not appear: rank 0 failed to create the run")
        time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(main())
