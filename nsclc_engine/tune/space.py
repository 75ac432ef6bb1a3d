"""The search space: which training settings a study varies, and over what.

A space is a JSON object ``{setting: spec}``; a spec is ``{"low": a, "high": b}`` (a float, with
``"log": true`` for a log scale; ``"int": true`` for integers) or ``{"choices": [...]}``. Every
setting must be a field of :class:`~nsclc_engine.train.config.TrainConfig` and not one of the
study's own (:data:`STUDY_SETTINGS`); ``--space FILE`` replaces the default below.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

# the study's own settings, the same for every trial: varied, they would change the patients,
# the split, the outcome or the objective between trials (setting -> what it fixes)
STUDY_SETTINGS: dict[str, str] = {
    "dicom": "the cohort (--dicom)",
    "clinical": "the cohort (--clinical)",
    "demo_patients": "the demo cohort",
    "task": "the outcome and the objective, AUC or C-index (--task)",
    "label": "the outcome (--label)",
    "folds": "the split, and the guard on k-fold test scores (--folds)",
    "seed": "the split and the sampler (--seed)",
    "preset": "the input volumes (the study's --preset)",
    "shuffle_labels": "the negative control: a study of its own, not a trial's option",
    "monitor": "the best epoch, by validation metric in every trial",
    "hold_out_test": "the test part, held out in every trial",
    "bootstrap_resamples": "the test part's confidence interval (the study's --preset)",
    "device": "where the trials run (--device)",
    "study": "the study's name",
    "trial": "the trial's number",
    "experiment": "the experiment over seeds that confirms the study's best (--confirm-seeds)",
}

DEFAULT_SPACE: dict[str, dict] = {
    "lr": {"low": 1e-5, "high": 3e-3, "log": True},
    "weight_decay": {"low": 1e-6, "high": 1e-2, "log": True},
    "augment": {"choices": ["all", "off"]},  # never "minority": a label cue
    "use_sampler": {"choices": [False, True]},
    "use_class_weights": {"choices": [True, False]},
    "crop_mode": {"choices": ["fixed_fov", "bbox"]},
    "batch_size": {"choices": [4, 8, 16]},
    "early_stopping_patience": {"low": 2, "high": 6, "int": True},
    "model": {"choices": ["resnet10", "resnet18"]},
}


def load_space(path: str | os.PathLike | None = None) -> dict[str, dict]:
    """The default space, or the one in ``path``, checked: ValueError naming what is wrong."""
    from nsclc_engine.train.config import TrainConfig

    if path is None:
        space = DEFAULT_SPACE
    else:
        try:
            space = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"{path}: not a JSON search space ({error})") from None
    fields = {field.name for field in dataclasses.fields(TrainConfig)}
    if not isinstance(space, dict) or not space:
        raise ValueError(f"{path}: a space is a non-empty JSON object of settings")
    for name, spec in space.items():
        if name in STUDY_SETTINGS:
            raise ValueError(
                f"space: {name!r} is a study setting, fixed for a whole study, not searched: it "
                f"sets {STUDY_SETTINGS[name]}; remove it from the space"
            )
        if name not in fields:
            raise ValueError(f"space: {name!r} is not a training setting (TrainConfig field)")
        if not isinstance(spec, dict):
            raise ValueError(f"space: {name}: give {{'low', 'high'}} or {{'choices'}}")
        if "choices" in spec:
            if not spec["choices"]:
                raise ValueError(f"space: {name}: 'choices' is empty")
            if name == "augment" and "minority" in spec["choices"]:
                raise ValueError("space: augment='minority' is a label cue; not searchable")
        elif not ("low" in spec and "high" in spec and spec["low"] < spec["high"]):
            raise ValueError(f"space: {name}: needs 'low' < 'high', or 'choices'")
    return space


def distributions(space: dict[str, dict]) -> dict:
    """Optuna distributions of a space (for ``study.ask``)."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    result = {}
    for name, spec in space.items():
        if "choices" in spec:
            result[name] = CategoricalDistribution(list(spec["choices"]))
        elif spec.get("int"):
            result[name] = IntDistribution(
                int(spec["low"]), int(spec["high"]), log=spec.get("log", False)
            )
        else:
            result[name] = FloatDistribution(
                float(spec["low"]), float(spec["high"]), log=spec.get("log", False)
            )
    return result
