"""The training stage's config: :class:`TrainConfig` and the named protocols it starts from."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nsclc_engine.config import check_rules, load_config, read_config_file
from nsclc_engine.demo import DEMO_PATIENTS
from nsclc_engine.runs import migrated, read_config

NORMS = ("batch", "group")  # the network's normalisation layers (train.model)
# the networks by name (train.model.NETWORKS says what each is)
BACKBONES = (
    "resnet10",
    "resnet18",
    "resnet34",
    "resnet50",
    "fmcib",
    "densenet121",
    "seresnet50",
    "vit",
)


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
    weight_decay: float = 0.0  # Adam's L2 penalty on the weights
    lr_factor: float = 0.5
    lr_patience: int = 2
    early_stopping_patience: int = 4
    monitor: str = "metric"  # metric (validation AUC / C-index) | loss (the report's)
    use_sampler: bool = False
    use_class_weights: bool = True
    augment: str = "all"  # all | off | minority (the report's: a label cue, see data.py)
    cox_bank: int = 64  # survival: recent training risks kept as extra (detached) risk set
    model: str = "resnet18"  # one of BACKBONES
    pretrained: str = ""  # a local weights file (train.weights: MedicalNet, FMCIB layouts)
    encoder: str = "fine-tune"  # with pretrained: fine-tune (lr x encoder_lr_scale) | freeze
    encoder_lr_scale: float = 0.1  # the pretrained encoder's learning rate, relative to lr
    norm: str = "batch"  # batch (the report's, MedicalNet's) | group (batch-size independent)
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16
    channels_last: str = "auto"  # auto (CUDA, >= 1M-voxel inputs: measured faster) | on | off
    workers: int = -1  # loader processes; -1: 0 on the CPU, min(8, cores per GPU - 1) on CUDA
    deterministic: bool = False
    shuffle_labels: bool = False
    bootstrap_resamples: int = 2000
    # a search's trial (nsclc_engine.tune): the study and trial number it belongs to, and the
    # test part held back (neither predicted nor evaluated) until the study's best is chosen
    study: str = ""
    trial: int = -1
    hold_out_test: bool = False
    # an experiment over seeds (nsclc_engine.evaluate.experiment): its name, "" for none
    experiment: str = ""

    def __post_init__(self) -> None:
        from nsclc_engine.cohort.clinical import LABELS
        from nsclc_engine.preprocess.volumes import PRESETS
        from nsclc_engine.task_spec import TASKS

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
        if self.monitor not in ("metric", "loss"):
            raise ValueError(f"monitor {self.monitor!r}: choose metric or loss")
        self._check_numbers()
        self._check_choices()

    def _check_numbers(self) -> None:
        """Every number in range, so a bad value fails here, not after the cohort is built."""
        rules = (
            ("lr", math.isfinite(self.lr) and self.lr > 0, "a finite number > 0"),
            ("weight_decay", 0 <= self.weight_decay < 1, "0 or more, below 1"),
            ("lr_factor", 0 < self.lr_factor < 1, "between 0 and 1 (exclusive)"),
            ("lr_patience", self.lr_patience >= 0, "0 or more"),
            ("early_stopping_patience", self.early_stopping_patience >= 1, "1 or more"),
            ("epochs", self.epochs >= 1, "1 or more"),
            ("batch_size", self.batch_size >= 1, "1 or more"),
            ("folds", self.folds == 0 or self.folds >= 2, "0 (one split) or 2 or more"),
            ("seed", self.seed >= 0, "0 or more"),
            ("demo_patients", self.demo_patients >= 20, "20 or more"),
            ("cox_bank", self.cox_bank >= 0, "0 (off) or more"),
            ("workers", self.workers >= -1, "-1 (automatic) or more"),
            ("bootstrap_resamples", self.bootstrap_resamples >= 100, "100 or more"),
            ("encoder_lr_scale", 0 < self.encoder_lr_scale <= 1, "above 0 and at most 1"),
            (
                "context_mm",
                self.context_mm is None
                or (math.isfinite(self.context_mm) and self.context_mm >= 0),
                "empty (the preset's) or a finite number >= 0",
            ),
        )
        check_rules(self, rules)

    def _check_choices(self) -> None:
        from nsclc_engine.preprocess.dataset import AugmentConfig

        AugmentConfig(classes=self.augment)
        if self.norm not in NORMS:
            raise ValueError(f"norm {self.norm!r}: choose one of {', '.join(NORMS)}")
        if self.model not in BACKBONES:
            raise ValueError(f"model {self.model!r}: choose one of {', '.join(BACKBONES)}")
        if self.crop_mode not in ("", "bbox", "fixed_fov"):
            raise ValueError(f"crop_mode {self.crop_mode!r}: choose bbox, fixed_fov or empty")
        if self.dicom and not Path(self.dicom).is_dir():
            raise ValueError(f"dicom {self.dicom!r}: no such folder; give the DICOM folder")
        if self.clinical and not Path(self.clinical).is_file():
            raise ValueError(f"clinical {self.clinical!r}: no such file; give the clinical CSV")
        if self.pretrained and not Path(self.pretrained).is_file():
            raise ValueError(f"pretrained {self.pretrained!r}: no such file")
        if self.encoder not in ("fine-tune", "freeze"):
            raise ValueError(f"encoder {self.encoder!r}: choose fine-tune or freeze")
        if self.encoder == "freeze" and self.norm == "group":
            raise ValueError(
                "encoder=freeze with norm=group: group norm drops the file's batch-norm "
                "statistics, so the frozen encoder would not be the published one; fine-tune "
                "it, or keep norm=batch"
            )
        if self.encoder == "freeze" and not self.pretrained:
            raise ValueError(
                "encoder=freeze keeps the encoder as loaded: give its weights with --pretrained "
                "(a frozen random encoder learns nothing)"
            )

    @property
    def augmentation_warning(self) -> str:
        """Non-empty when the run augments by label (:attr:`AugmentConfig.label_cue_warning`)."""
        from nsclc_engine.preprocess.dataset import AugmentConfig

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
        protocol = read_config_file(path).get("protocol", protocol)
    return load_config(TrainConfig, path, overrides, base=protocol_config(protocol))


def load_run_config(run_dir: Path) -> TrainConfig:
    """The TrainConfig of a run (``config.json`` minus what was resolved when it ran)."""
    payload = migrated(read_config(run_dir))  # an old run resumes as it trained
    payload.pop("config_class", None)
    payload.pop("resolved", None)
    return TrainConfig(**payload)
