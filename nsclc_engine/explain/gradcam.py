"""What the model looked at: Grad-CAM (Captum ``LayerGradCam``) and gradient saliency, mapped
back onto the patient's original CT.

Pure core: :func:`grad_cam`, :func:`saliency` (model + input volume -> :class:`AttributionMap`
on the network input) and :func:`input_map_to_ct` (-> :class:`CtMap` on the CT grid, through
the stored :class:`~nsclc_engine.preprocess.volumes.InputGeometry`). Loading a run's model
and test-time augmentation are in :mod:`~nsclc_engine.explain.inference`; the per-patient disk
cache in :mod:`~nsclc_engine.explain.cache`.

Grad-CAM layers are the network's (:func:`gradcam_layers`): for the ResNets, with the stride-2
stem, ``layer4`` is 1x2x2 at the ``demo`` preset and 4x4x4 at ``paper``; ``layer3`` is twice
as fine on every axis. The finer is the default: on a ResNet-18 trained on planted blobs it put
more of its mass on the blob (``benchmarks/bench_explain.py`` measures it). A ViT has no
convolutional feature map: its runs are explained by saliency. Maps are upsampled trilinearly
(Captum's default, nearest, gives blocks).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

from nsclc_engine.preprocess.volumes import InputGeometry, outside_volume, resample_axis_aligned
from nsclc_engine.train.model import NETWORKS

METHODS = ("gradcam", "saliency")


DEFAULT_LAYER = "layer3"


def gradcam_layers(model_name: str) -> tuple[str, ...]:
    """The layers Grad-CAM can read for the network ``model_name``, finer first; empty for a
    network without a convolutional feature map (the ViT)."""
    if model_name not in NETWORKS:
        raise ValueError(f"model {model_name!r}: choose one of {', '.join(NETWORKS)}")
    return NETWORKS[model_name].gradcam_layers


def methods_for(model_name: str) -> tuple[str, ...]:
    """The attribution methods that apply to the network ``model_name``."""
    return METHODS if gradcam_layers(model_name) else ("saliency",)


@dataclass(frozen=True)
class ExplainConfig:
    """How one attribution is computed. ``target``: the output explained (``None``: class 1,
    death, for a classifier; the single risk output for a survival model)."""

    method: str = "gradcam"
    layer: str = DEFAULT_LAYER
    target: int | None = None
    tta_samples: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method {self.method!r}: choose one of {list(METHODS)}")
        if self.method == "gradcam" and not self.layer:
            raise ValueError("Grad-CAM needs a layer (gradcam_layers gives a network's)")
        if self.tta_samples < 2:
            raise ValueError("tta_samples must be at least 2 to give a spread")


@dataclass(frozen=True)
class AttributionMap:
    """``scores[D, H, W]`` float32 in [0, 1] on the network input, and the range it was
    scaled from (``raw_max == raw_min``: the map was flat, e.g. every gradient negative)."""

    scores: np.ndarray
    raw_min: float
    raw_max: float
    method: str
    layer: str
    target: int

    @property
    def flat(self) -> bool:
        return not self.raw_max > self.raw_min


@dataclass(frozen=True)
class CtMap:
    """An input-space map put onto the CT: ``scores`` covers CT voxels ``box`` (z0, z1, y0, y1,
    x0, x1); zero outside the network's field of view. :meth:`full` gives the whole CT grid."""

    scores: np.ndarray
    box: tuple[int, int, int, int, int, int]
    ct_shape: tuple[int, int, int]

    def full(self) -> np.ndarray:
        result = np.zeros(self.ct_shape, dtype=np.float32)
        z0, z1, y0, y1, x0, x1 = self.box
        result[z0:z1, y0:y1, x0:x1] = self.scores
        return result

    def plane(self, axis: int, index: int) -> np.ndarray:
        """One CT slice of the map (``axis`` 0 axial, 1 coronal, 2 sagittal), zeros outside."""
        shape = [n for a, n in enumerate(self.ct_shape) if a != axis]
        result = np.zeros(shape, dtype=np.float32)
        low, high = self.box[2 * axis], self.box[2 * axis + 1]
        if not low <= index < high:
            return result
        local = np.take(self.scores, index - low, axis=axis)
        others = [a for a in range(3) if a != axis]
        region = tuple(slice(self.box[2 * a], self.box[2 * a + 1]) for a in others)
        result[region] = local
        return result


def _normalised(raw: np.ndarray, method: str, layer: str, target: int) -> AttributionMap:
    raw = np.asarray(raw, dtype=np.float32)
    low, high = float(raw.min()), float(raw.max())
    if high > low:
        values = (raw - low) / (high - low)
    else:
        values = np.zeros_like(raw)
    return AttributionMap(values.astype(np.float32), low, high, method, layer, target)


def as_batch(volume) -> torch.Tensor:  # noqa: F821 (torch imported lazily)
    import torch

    tensor = torch.as_tensor(np.asarray(volume, dtype=np.float32))
    if tensor.ndim == 3:
        tensor = tensor[None, None]
    if tensor.ndim != 5 or tensor.shape[:2] != (1, 1):
        raise ValueError(
            f"expected one volume [D, H, W] or [1, 1, D, H, W], got {tuple(tensor.shape)}"
        )
    return tensor


@contextlib.contextmanager
def _frozen_eval(model):
    """Eval mode and no parameter gradients (half the memory, the same map); restored after."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for parameter, _ in flags:
        parameter.requires_grad_(False)
    try:
        yield model
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)
        model.train(was_training)


def default_target(model) -> int:
    """Class 1 (death) for a two-logit classifier, output 0 for a one-output (Cox) model."""
    outputs = _output_count(model)
    return 1 if outputs > 1 else 0


def _output_count(model) -> int:
    last = [m for m in model.modules() if hasattr(m, "out_features")]
    return int(last[-1].out_features) if last else 2


def grad_cam(
    model, volume, target: int | None = None, layer: str = DEFAULT_LAYER
) -> AttributionMap:
    """Grad-CAM of ``target`` at ``layer`` (a submodule name), upsampled trilinearly to the
    input and min-max scaled to [0, 1]. ReLU is applied as in Grad-CAM: only evidence *for*
    the target counts."""
    import torch
    from captum.attr import LayerAttribution, LayerGradCam

    target = default_target(model) if target is None else int(target)
    batch = as_batch(volume).to(next(model.parameters()).device)
    try:
        module = model.get_submodule(layer)
    except AttributeError:
        raise ValueError(f"layer {layer!r} is not a layer of this network") from None
    with _frozen_eval(model), torch.enable_grad():
        cam = LayerGradCam(model, module)
        attribution = cam.attribute(batch, target=target, relu_attributions=True)
        upsampled = LayerAttribution.interpolate(
            attribution.detach(), tuple(batch.shape[2:]), interpolate_mode="trilinear"
        )
    return _normalised(upsampled[0, 0].float().cpu().numpy(), "gradcam", layer, target)


def saliency(model, volume, target: int | None = None) -> AttributionMap:
    """Gradient magnitude of ``target`` with respect to each input voxel (Captum ``Saliency``),
    a second opinion at full resolution that needs one backward pass; the top 0.5 % of voxels
    are clipped so a few spikes do not wash out the rest."""
    import torch
    from captum.attr import Saliency

    target = default_target(model) if target is None else int(target)
    batch = as_batch(volume).to(next(model.parameters()).device).requires_grad_(True)
    with _frozen_eval(model), torch.enable_grad():
        gradients = Saliency(model).attribute(batch, target=target, abs=True)
    raw = gradients[0, 0].detach().float().cpu().numpy()
    raw = np.minimum(raw, np.quantile(raw, 0.995))
    return _normalised(raw, "saliency", "input", target)


def attribute(model, volume, config: ExplainConfig) -> AttributionMap:
    if config.method == "gradcam":
        return grad_cam(model, volume, config.target, config.layer)
    return saliency(model, volume, config.target)


def input_map_to_ct(values: np.ndarray, geometry: InputGeometry) -> CtMap:
    """Put an input-space map onto the CT voxels of the input's crop box (trilinear).

    CT voxel ``c`` sits at input index ``(c - offset) / scale`` (the inverse of the grid the
    input was sampled on); CT voxels more than half an input voxel outside the input get zero.
    """
    values = np.asarray(values, dtype=np.float32)
    box = geometry.crop_box_zyx
    start = np.asarray(box[0::2], dtype=np.float64)
    shape = tuple(int(v) for v in np.asarray(box[1::2]) - start)
    offset, scale = np.asarray(geometry.offset_zyx), np.asarray(geometry.scale_zyx)
    local_offset, local_scale = (start - offset) / scale, 1.0 / scale
    mapped = resample_axis_aligned(values, local_offset, local_scale, shape)
    mapped[outside_volume(local_offset, local_scale, shape, values.shape)] = 0.0
    return CtMap(mapped, tuple(int(v) for v in box), tuple(geometry.ct_shape_zyx))


def mass_inside(values: np.ndarray, region: np.ndarray) -> float:
    """Share of a map's total mass that falls inside ``region`` (a boolean mask)."""
    values = np.asarray(values, dtype=np.float64)
    total = values.sum()
    return float(values[np.asarray(region, dtype=bool)].sum() / total) if total > 0 else 0.0


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman correlation of two maps (the model-randomisation check compares maps with it)."""
    from scipy.stats import spearmanr

    a, b = np.ravel(a), np.ravel(b)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(a, b).statistic)


def hottest_voxel(values: np.ndarray) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.unravel_index(int(np.argmax(values)), np.shape(values)))
