"""The Train page: protocol notes and defaults, the form's validation, a run's log tail."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

from nsclc_engine import access
from nsclc_engine.train.config import TrainConfig, protocol_config

PROTOCOL_NOTES = {
    "house": (
        "the default, learnable and honest",
        "2-year survival as the label (on the demo at least 30 patients of each class in "
        "validation and test), a fixed field of view that keeps tumour size, every class "
        "augmented alike, class weights only, Adam 3e-4, batch 8, the best epoch by "
        "validation AUC (C-index for survival).",
    ),
    "report": (
        "the technical report's settings, to reproduce it",
        "Deceased at last follow-up as the label: about 10 survivors in an 84-patient "
        "validation split, so its threshold and calibration rest on a handful of patients. "
        "Minority-only augmentation lets the network read the label from the resampling "
        "smoothness, and sampler plus class weights correct the imbalance twice. Not the "
        "default for these reasons; results are marked with a warning.",
    ),
}


def protocol_defaults(name: str) -> dict:
    """The Train form's starting values: the named protocol's ``TrainConfig`` as a dict."""

    return asdict(protocol_config(name))


def validate_train_form(
    values: dict,
    artifacts: str | os.PathLike,
    user: access.User,
    roots: list[Path] | tuple[Path, ...],
) -> tuple[object | None, list[str]]:
    """A ``TrainConfig`` from the Train page's fields on top of the chosen protocol's
    settings, or the messages saying what to fix. The DICOM folder and clinical CSV must lie
    in a data root (``roots``; :func:`nsclc_engine.access.check_data_path`), and
    ``pretrained`` names a file under ``<artifacts>/weights``."""

    errors = []
    values = dict(values)
    if values.get("source") == "demo":
        values["dicom"] = values["clinical"] = ""
    else:
        found = {}
        for field, what, noun, kind in (
            ("dicom", "DICOM folder", "folder", Path.is_dir),
            ("clinical", "clinical CSV", "file", Path.is_file),
        ):
            value = values.get(field, "").strip()
            try:
                path = access.check_data_path(value, list(roots), what, user)
            except (access.AccessDenied, ValueError) as error:
                errors.append(str(error))
                continue
            if not kind(path):
                errors.append(f"{what} {value!r} is not a {noun} on this server")
            found[field] = str(path)
        values["dicom"], values["clinical"] = found.get("dicom", ""), found.get("clinical", "")
    pretrained = values.get("pretrained", "").strip()
    if pretrained:
        try:
            values["pretrained"] = str(access.check_weights(pretrained, artifacts))
        except access.AccessDenied as error:
            errors.append(str(error))
    if not 0 < float(values.get("lr", 1e-3)) < 1:
        errors.append("learning rate must lie between 0 and 1")
    if values.get("folds", 0) == 1 or values.get("folds", 0) < 0:
        errors.append("folds must be 0 (one split) or at least 2")
    values.pop("source", None)
    if values.get("task") == "survival":
        values["label"] = "deadstatus_event"  # the event; the time is survival_time_days
    if errors:
        return None, errors
    try:
        # the fields the form does not show keep the chosen protocol's values
        base = asdict(protocol_config(values.pop("protocol", "house")))
        config = TrainConfig(**(base | values))
        from nsclc_engine.train.model import check_network
        from nsclc_engine.train.weights import network_of

        check_network(config.model, config.norm, config.preset)
        if config.pretrained:  # the file fits the network, else its names say what differs
            from nsclc_engine.preprocess.volumes import PRESETS

            network_of(config.pretrained, (config.model,), PRESETS[config.preset].out_shape)
        return config, []
    except (TypeError, ValueError) as error:
        return None, [str(error)]


def experiment_launches(config, seeds: str, name: str, artifacts) -> tuple[list, list[str]]:
    """The Train page's experiment: ``(run id, config)`` per seed of ``seeds`` (``0,1,2`` or
    ``0-4``), tagged with the experiment ``name`` (empty: from the settings), or the messages
    saying what to fix (a bad list, a name in use)."""
    from dataclasses import replace

    from nsclc_engine.evaluate.experiment import check_name, default_name, parse_seeds, run_id_of
    from nsclc_engine.runs import run_dir

    try:
        chosen = parse_seeds(seeds)
        name = check_name(name.strip() or default_name(asdict(config)))
    except ValueError as error:
        return [], [str(error).replace("--seeds", "Seeds")]
    launches = [
        (run_id_of(name, seed), replace(config, seed=seed, experiment=name)) for seed in chosen
    ]
    taken = [run_id for run_id, _ in launches if run_dir(run_id, artifacts).exists()]
    if taken:
        return [], [f"experiment {name!r} has runs already ({', '.join(taken)}); name another"]
    return launches, []


def log_tail(run_dir: str | os.PathLike, lines: int = 20) -> str:
    path = Path(run_dir) / "train.log"
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
