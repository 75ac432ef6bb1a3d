"""Local pretrained weights: the published file layouts, loading by name and shape, and what
was loaded (for the run's record). Files are read with ``weights_only=True`` (tensors and
plain containers only, never arbitrary pickled code); nothing is ever downloaded.

Layouts understood:

- MedicalNet (Chen et al. 2019, resnet10-50): ``{"state_dict": {"module.conv1.weight": ...}}``,
  saved from DataParallel, with a segmentation head (``conv_seg``) a classifier does not use;
- FMCIB (Pai et al. 2024), the trunk of MONAI's wide ResNet-50, in either of the layouts its
  own loader reads (``fmcib/models/load_model.py``, ``fmcib/models/resnet50.py``):
  ``{"trunk_state_dict": {...}}`` (VISSL), or ``{"state_dict": {...}}`` (Lightning/Lighter)
  with ``model.trunk.`` or ``model.backbone.`` prefixes and possibly ``model.heads.*``;
- a flat state dict (ours, or any MONAI network's ``state_dict()``).
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from nsclc_engine.train.model import NETWORKS

log = logging.getLogger(__name__)

PREFIXES = ("module.", "model.trunk.", "model.backbone.")  # DataParallel, Lighter, Lightning
LISTED = 8  # names shown in a mismatch message


@dataclass(frozen=True)
class LoadReport:
    """What loading a file did, as recorded in the run (``status.json`` ``model.pretrained``)."""

    file: str
    sha256: str
    layout: str
    loaded: tuple[str, ...]
    skipped: tuple[str, ...]  # in the file but not loadable (unknown name or other shape)
    missing: tuple[str, ...]  # in the model but not in the file (left at random init)

    def record(self) -> dict:
        """The run's record: the file, its hash and layout, and the counts (with the names
        of what was not loaded)."""
        return {
            "file": self.file,
            "sha256": self.sha256,
            "layout": self.layout,
            "tensors_loaded": len(self.loaded),
            "tensors_skipped": len(self.skipped),
            "tensors_missing": len(self.missing),
            "skipped": list(self.skipped),
            "missing": list(self.missing),
        }


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], str]:
    """The tensors of a local weights file in one of the published layouts (module
    docstring), prefixes stripped, and the layout's name; ValueError naming the file where it
    is none of them."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a file that is not its own
        reason = " ".join(str(error).split()).split(". ")[0][:160]
        raise ValueError(
            f"{path}: not a PyTorch weights file ({type(error).__name__}: {reason})"
        ) from None
    layout = "flat state dict"
    if isinstance(state, dict) and "trunk_state_dict" in state:
        state, layout = state["trunk_state_dict"], "trunk_state_dict (FMCIB, VISSL)"
    elif isinstance(state, dict) and "state_dict" in state:
        state, layout = state["state_dict"], "state_dict"
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(
            f"{path}: expected a state dict of tensors (flat, or under 'state_dict' or "
            f"'trunk_state_dict'), found {type(state).__name__}"
        )
    tensors = {}
    for name, tensor in state.items():
        for prefix in PREFIXES:
            if name.startswith(prefix):
                name = name[len(prefix) :]
                if layout == "state_dict" and prefix != "module.":
                    layout = f"state_dict with {prefix} prefixes (FMCIB)"
        tensors[name] = tensor
    if layout == "state_dict" and any(name.startswith("conv_seg.") for name in tensors):
        layout = "state_dict (MedicalNet)"
    return tensors, layout


def load_pretrained(model: torch.nn.Module, path: str | os.PathLike, name: str) -> LoadReport:
    """Load every tensor of a local weights file whose name and shape match ``model`` (the
    network ``name``). The head (``fc``, ...) is new; every other tensor must come from the
    file. A file that leaves any of them random, or brings tensors the network has no place
    for (other than a head), is refused with the missing and unexpected names and the
    architecture expected."""
    state, layout = read_weights(path)
    own = model.state_dict()
    usable, random, unexpected = _match(state, own, name)
    if random or unexpected or not usable:
        raise ValueError(_mismatch(path, layout, name, len(own), random, unexpected))
    model.load_state_dict({key: state[key] for key in usable}, strict=False)
    report = LoadReport(
        str(Path(path).resolve()),
        file_sha256(path),
        layout,
        tuple(sorted(usable)),
        tuple(sorted(set(state) - set(usable))),
        tuple(sorted(set(own) - set(usable))),
    )
    log.info(
        "pretrained weights from %s (%s, sha256 %s): %d tensors loaded, %d skipped, %d new %s",
        path,
        layout,
        report.sha256[:12],
        len(report.loaded),
        len(report.skipped),
        len(report.missing),
        list(report.missing)[:4],
    )
    return report


def network_of(
    path: str | os.PathLike,
    candidates: tuple[str, ...],
    input_shape: tuple[int, int, int] = (32, 64, 64),
) -> str:
    """The one network of ``candidates`` that the file fits (e.g. the depth of a MedicalNet
    file), found from tensor names and shapes on PyTorch's meta device, for inputs of
    ``input_shape`` (the ViT's patch grid depends on it); ValueError with the closest
    candidate's missing and unexpected tensors where none fits."""
    from nsclc_engine.train.model import build_model

    state, layout = read_weights(path)
    closest = None
    for name in candidates:
        with torch.device("meta"):
            own = build_model(name, input_shape=input_shape).state_dict()
        usable, random, unexpected = _match(state, own, name)
        if usable and not random and not unexpected:
            return name
        if closest is None or len(random) + len(unexpected) < closest[0]:
            closest = (len(random) + len(unexpected), name, len(own), random, unexpected)
    _, name, count, random, unexpected = closest
    raise ValueError(_mismatch(path, layout, name, count, random, unexpected))


def _match(state: dict, own: dict, name: str) -> tuple[list[str], list[str], list[str]]:
    """``(usable, random, unexpected)``: the file's tensors that fit ``own`` by name and shape,
    the network's non-head tensors the file does not give, and the file's tensors that fit
    nowhere. A segmentation or projection head (MedicalNet's ``conv_seg``, FMCIB's ``heads``)
    and batch-norm statistics where GroupNorm replaced the batch norm are not unexpected."""
    usable = [
        key for key in state if key in own and tuple(state[key].shape) == tuple(own[key].shape)
    ]
    new = NETWORKS[name].head + "."
    random = sorted(key for key in set(own) - set(usable) if not key.startswith(new))
    unexpected = sorted(
        key
        for key in set(state) - set(usable)
        if not _foreign_head(key, new) and not _norm_statistic(key, own)
    )
    return usable, random, unexpected


def _mismatch(
    path, layout: str, name: str, count: int, random: list[str], unexpected: list[str]
) -> str:
    return (
        f"{path} ({layout}) does not fit model {name}: "
        f"{_listed(random, 'tensors of the network missing from the file')}; "
        f"{_listed(unexpected, 'tensors in the file the network has no place for')}. "
        f"Expected {NETWORKS[name].description}, {count} tensors. Choose the model the file "
        "was trained as (--set model=...; MedicalNet's resnet_N files are resnetN, FMCIB's is "
        "fmcib)"
    )


def _foreign_head(key: str, own_head: str) -> bool:
    return key.startswith((own_head, "conv_seg.", "heads.", "model.heads.", "head."))


def _norm_statistic(key: str, own: dict) -> bool:
    stem, _, leaf = key.rpartition(".")
    return leaf in ("running_mean", "running_var", "num_batches_tracked") and (
        f"{stem}.weight" in own
    )


def _listed(names: list[str], what: str) -> str:
    if not names:
        return f"no {what}"
    shown = ", ".join(names[:LISTED]) + (
        f", ... ({len(names)} in all)" if len(names) > LISTED else ""
    )
    return f"{len(names)} {what} ({shown})"
