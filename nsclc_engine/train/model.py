"""The network: MONAI's 3D ResNets (10, 18, 34, 50 layers), MedicalNet-compatible, and local
pretrained weights.

The first convolution has stride 2 as in standard ResNet and MedicalNet (MONAI's default of 1
makes a CPU step about 7x slower, see ../shared/FACTS.md). Each depth takes MedicalNet's
shortcut type and downsample bias for it (MONAI's table), so the layer names and shapes match
MedicalNet's files and their weights load by name. Nothing is ever downloaded.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch

from nsclc_engine.train.config import BACKBONES, NORMS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadReport:
    loaded: tuple[str, ...]
    skipped: tuple[str, ...]  # in the file but not loadable (unknown name or other shape)
    missing: tuple[str, ...]  # in the model but not in the file (left at random init)


def build_model(
    name: str = "resnet18", num_classes: int = 2, first_stride: int = 2, norm: str = "batch"
) -> torch.nn.Module:
    """A 3D ResNet of :data:`~nsclc_engine.train.config.BACKBONES` for ``[N, 1, D, H, W]``
    inputs and ``num_classes`` logits.

    ``resnet10``-``resnet34`` use basic blocks, ``resnet50`` bottlenecks; all keep the layer
    names (``conv1``, ``layer1``-``layer4``, ``fc``), shortcuts and downsample biases of
    MedicalNet's, so its files load by name.
    ``norm="group"`` swaps every BatchNorm3d for GroupNorm (16 groups), which does not depend
    on the batch size; its weights and biases keep MedicalNet's names and shapes. (MONAI's own
    ``norm=`` argument reaches only the stem, not the residual blocks.)
    """
    from monai.networks import nets
    from monai.networks.nets.resnet import get_medicalnet_pretrained_resnet_args

    if name not in BACKBONES:
        raise ValueError(f"model {name!r}: choose one of {', '.join(BACKBONES)}")
    if norm not in NORMS:
        raise ValueError(f"norm {norm!r}: choose one of {list(NORMS)}")
    # MedicalNet's layouts: shortcut A with a biased downsample for 18 and 34, B without for
    # 10 and 50 (MONAI's own table of them)
    bias_downsample, shortcut = get_medicalnet_pretrained_resnet_args(int(name[len("resnet") :]))
    model = getattr(nets, name)(
        spatial_dims=3,
        n_input_channels=1,
        num_classes=num_classes,
        conv1_t_stride=first_stride,
        shortcut_type=shortcut,
        bias_downsample=bias_downsample,
    )
    if norm == "group":
        _batch_to_group_norm(model)
    return model


def parameter_count(model: torch.nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _batch_to_group_norm(module: torch.nn.Module, groups: int = 16) -> None:
    for name, child in module.named_children():
        if isinstance(child, torch.nn.BatchNorm3d):
            channels = child.num_features
            setattr(module, name, torch.nn.GroupNorm(min(groups, channels), channels))
        else:
            _batch_to_group_norm(child, groups)


def read_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a local weights file (a flat state dict or ``{"state_dict": ...}``,
    ``module.`` prefixes stripped), read with ``weights_only=True``; ValueError naming the
    file where it is not one."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a file that is not its own
        reason = " ".join(str(error).split()).split(". ")[0][:160]
        raise ValueError(
            f"{path}: not a PyTorch weights file ({type(error).__name__}: {reason})"
        ) from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict of tensors, found {type(state).__name__}")
    return {name.removeprefix("module."): tensor for name, tensor in state.items()}


def load_pretrained(model: torch.nn.Module, path: str | os.PathLike) -> LoadReport:
    """Load every tensor of a local MedicalNet-style file whose name and shape match.

    Accepts a flat state dict or ``{"state_dict": ...}``; a ``module.`` prefix (from
    DataParallel) is stripped. Read with ``weights_only=True``: no arbitrary unpickling.
    """
    state = read_weights(path)
    own = model.state_dict()
    usable = {
        name: tensor
        for name, tensor in state.items()
        if name in own and tuple(tensor.shape) == tuple(own[name].shape)
    }
    model.load_state_dict(usable, strict=False)
    report = LoadReport(
        loaded=tuple(sorted(usable)),
        skipped=tuple(sorted(set(state) - set(usable))),
        missing=tuple(sorted(set(own) - set(usable))),
    )
    log.info(
        "pretrained weights from %s: %d tensors loaded, %d skipped %s, %d left random %s",
        path,
        len(report.loaded),
        len(report.skipped),
        list(report.skipped)[:5],
        len(report.missing),
        list(report.missing)[:5],
    )
    if not report.loaded:
        raise ValueError(f"{path}: no tensor matches the network by name and shape")
    random = [name for name in report.missing if not name.startswith("fc.")]
    if len(random) > 0.1 * len([name for name in own if not name.startswith("fc.")]):
        raise ValueError(
            f"{path}: {len(random)} of the network's {len(own)} tensors would stay random "
            f"(e.g. {random[:3]}): the file is most likely for another depth; choose it with "
            "--set model=resnet10|resnet18|resnet34|resnet50"
        )
    return report
