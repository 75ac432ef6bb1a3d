"""The networks, by name: MONAI's 3D ResNets (10, 18, 34, 50 layers, MedicalNet-compatible),
FMCIB's wide ResNet-50, DenseNet-121, SE-ResNet-50 and a small ViT.

Every network takes ``[N, 1, D, H, W]`` and returns ``[N, num_classes]``. The ResNets'
first convolution has stride 2 as in standard ResNet and MedicalNet (MONAI's default of 1
makes a CPU step about 7x slower, see ../shared/FACTS.md). Each ResNet depth takes
MedicalNet's shortcut type and downsample bias for it (MONAI's table), so the layer names and
shapes match MedicalNet's files; ``fmcib`` is MONAI's ResNet-50 exactly as the FMCIB
foundation model was trained (twice as wide, 4096 features). Local weight files are read in
:mod:`nsclc_engine.train.weights`; nothing is ever downloaded.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from nsclc_engine.train.config import BACKBONES, NORMS


@dataclass(frozen=True)
class Network:
    """What the rest of the engine needs to know of a network."""

    description: str
    head: str  # the final layer: replaced for features, kept trainable when the encoder is frozen
    gradcam_layers: tuple[str, ...]  # finer first; empty: no convolutional feature map
    batch_norm: bool = True  # norm="group" swaps its BatchNorm3d layers


def _medicalnet(depth: int) -> Network:
    return Network(
        f"MONAI ResNet-{depth} in MedicalNet's layout (stride-2 stem)", "fc", ("layer3", "layer4")
    )


NETWORKS: dict[str, Network] = {
    "resnet10": _medicalnet(10),
    "resnet18": _medicalnet(18),
    "resnet34": _medicalnet(34),
    "resnet50": _medicalnet(50),
    "fmcib": Network(
        "MONAI resnet50(widen_factor=2, conv1_t_stride=2, shortcut B, bias_downsample=True): "
        "the FMCIB foundation model's trunk, 4096 features, with a new linear head",
        "fc",
        ("layer3", "layer4"),
    ),
    "densenet121": Network(
        "MONAI DenseNet-121", "class_layers.out", ("features.denseblock3", "features.denseblock4")
    ),
    "seresnet50": Network(
        "MONAI SE-ResNet-50 (squeeze-and-excitation)", "last_linear", ("layer3", "layer4")
    ),
    "vit": Network(
        "a small MONAI ViT (6 blocks, 192 wide, 3 heads; 16-voxel patches, or the next larger "
        "divisor of an axis)",
        "vit.classification_head",
        (),
        batch_norm=False,
    ),
}
assert tuple(NETWORKS) == BACKBONES  # one list of names, in the config


def build_model(
    name: str = "resnet18",
    num_classes: int = 2,
    first_stride: int = 2,
    norm: str = "batch",
    input_shape: tuple[int, int, int] = (32, 64, 64),
) -> torch.nn.Module:
    """The network ``name`` (one of :data:`~nsclc_engine.train.config.BACKBONES`) for
    ``[N, 1, D, H, W]`` inputs and ``num_classes`` logits.

    ``resnet10``-``resnet34`` use basic blocks, ``resnet50`` bottlenecks; all keep the layer
    names (``conv1``, ``layer1``-``layer4``, ``fc``), shortcuts and downsample biases of
    MedicalNet's, so its files load by name. ``input_shape`` matters to the ViT only (its
    patch grid and position embedding). ``norm="group"`` swaps every BatchNorm3d for GroupNorm
    (16 groups), which does not depend on the batch size; its weights and biases keep the
    same names and shapes. (MONAI's own ``norm=`` argument reaches only the ResNet stem.)
    """
    from monai.networks import nets
    from monai.networks.nets.resnet import get_medicalnet_pretrained_resnet_args

    if name not in NETWORKS:
        raise ValueError(f"model {name!r}: choose one of {', '.join(BACKBONES)}")
    if norm not in NORMS:
        raise ValueError(f"norm {norm!r}: choose one of {list(NORMS)}")
    if norm == "group" and not NETWORKS[name].batch_norm:
        raise ValueError(f"norm=group: {name} has no batch norm to replace (it uses LayerNorm)")
    if name.startswith("resnet"):
        # MedicalNet's layouts: shortcut A with a biased downsample for 18 and 34, B without
        # for 10 and 50 (MONAI's own table of them)
        bias_downsample, shortcut = get_medicalnet_pretrained_resnet_args(int(name[6:]))
        model = getattr(nets, name)(
            spatial_dims=3,
            n_input_channels=1,
            num_classes=num_classes,
            conv1_t_stride=first_stride,
            shortcut_type=shortcut,
            bias_downsample=bias_downsample,
        )
    elif name == "fmcib":
        model = nets.resnet50(
            spatial_dims=3,
            n_input_channels=1,
            num_classes=num_classes,
            widen_factor=2,
            conv1_t_stride=first_stride,
            shortcut_type="B",
            bias_downsample=True,
        )
    elif name == "densenet121":
        model = nets.DenseNet121(spatial_dims=3, in_channels=1, out_channels=num_classes)
    elif name == "seresnet50":
        model = nets.SEResNet50(spatial_dims=3, in_channels=1, num_classes=num_classes)
    else:
        model = _ViT(input_shape, num_classes)
    if norm == "group":
        _batch_to_group_norm(model)
    return model


def vit_patch(input_shape: tuple[int, int, int]) -> tuple[int, ...]:
    """16 voxels along each axis, or the smallest larger divisor of an axis that 16 does not
    divide (100 slices: 20), so the patches tile the input exactly."""
    return tuple(
        next(p for p in range(min(16, n), n + 1) if n % p == 0) for n in map(int, input_shape)
    )


class _ViT(torch.nn.Module):
    """MONAI's ViT with a linear head, returning the logits only (MONAI's returns them with
    every block's hidden states). MONAI gives every block a cross-attention norm that only
    cross-attention uses; it is removed, since DDP refuses parameters that get no gradient."""

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int):
        from monai.networks.nets import ViT

        super().__init__()
        self.vit = ViT(
            in_channels=1,
            img_size=tuple(input_shape),
            patch_size=vit_patch(input_shape),
            hidden_size=192,
            mlp_dim=768,
            num_layers=6,
            num_heads=3,
            classification=True,
            num_classes=num_classes,
            spatial_dims=3,
            post_activation=None,  # MONAI's default squashes the logits with tanh
        )
        for block in self.vit.blocks:
            block.norm_cross_attn = torch.nn.Identity()
        self._register_load_state_dict_pre_hook(_drop_cross_attention_norms)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit(x)[0]


def _drop_cross_attention_norms(state_dict, prefix, *args) -> None:
    """Checkpoints written before the unused norms were removed still load."""
    for key in [k for k in state_dict if k.startswith(prefix) and ".norm_cross_attn." in k]:
        del state_dict[key]


def check_input(name: str, shape: tuple[int, int, int], preset: str = "") -> None:
    """ValueError, in one line, when ``name`` cannot take inputs of ``shape`` (D, H, W): e.g.
    DenseNet-121's pooling needs at least 32 voxels along each axis. Checked by a forward pass
    on PyTorch's meta device: shapes only, no memory, no arithmetic."""
    error = _shape_error(name, tuple(int(n) for n in shape))
    if error:
        where = f"the {preset} preset's input" if preset else "an input"
        raise ValueError(
            f"model {name}: {where} of {'x'.join(map(str, shape))} voxels is too small for "
            f"it ({error}); choose a larger preset (demo or paper) or another model"
        )


def check_network(name: str, norm: str, preset: str) -> None:
    """ValueError, in one line, where the network ``name`` cannot take the preset's input
    (e.g. DenseNet-121 needs 32 voxels along each axis) or the normalisation ``norm``. Kept
    apart from the config's checks: it builds the network (on PyTorch's meta device), which
    imports MONAI."""
    from nsclc_engine.preprocess.volumes import PRESETS

    if norm == "group" and not NETWORKS[name].batch_norm:
        raise ValueError(f"norm=group: {name} has no batch norm to replace (it uses LayerNorm)")
    check_input(name, PRESETS[preset].out_shape, preset)


@functools.lru_cache(maxsize=64)
def _shape_error(name: str, shape: tuple[int, int, int]) -> str:
    with torch.device("meta"):
        model = build_model(name, input_shape=shape).eval()
        try:
            model(torch.zeros(2, 1, *shape))
        except (RuntimeError, ValueError) as error:
            return " ".join(str(error).split())[:160]
    return ""


def parameter_count(model: torch.nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def head_of(model: torch.nn.Module, name: str) -> torch.nn.Module:
    """The network's final layer (:attr:`Network.head`)."""
    return model.get_submodule(NETWORKS[name].head)


def encoder_parameters(model: torch.nn.Module, name: str) -> list[torch.nn.Parameter]:
    """Every parameter except the head's."""
    head = {id(p) for p in head_of(model, name).parameters()}
    return [p for p in model.parameters() if id(p) not in head]


def freeze_encoder(model: torch.nn.Module, name: str) -> None:
    """Only the head learns: the encoder's parameters take no gradient and its normalisation
    layers keep their statistics (call again after every ``model.train()``)."""
    for parameter in encoder_parameters(model, name):
        parameter.requires_grad_(False)
    head = set(head_of(model, name).modules())
    for module in model.modules():
        if module not in head and isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()


def as_encoder(model: torch.nn.Module, name: str) -> torch.nn.Module:
    """The network without its head: the pooled feature vector per input (512 for ResNet-10
    to -34, 2048 for ResNet-50, 4096 for FMCIB), in eval mode."""
    parent, _, leaf = NETWORKS[name].head.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, torch.nn.Identity())
    return model.eval()


def _batch_to_group_norm(module: torch.nn.Module, groups: int = 16) -> None:
    for name, child in module.named_children():
        if isinstance(child, torch.nn.BatchNorm3d):
            channels = child.num_features
            setattr(module, name, torch.nn.GroupNorm(min(groups, channels), channels))
        else:
            _batch_to_group_norm(child, groups)
