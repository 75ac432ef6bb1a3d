"""A frozen-feature run: a pretrained encoder's features, a penalised linear model fitted on
the run's training patients, and the evaluation every run gets (threshold and recalibration
fitted on validation, test scored once, baselines, bootstrap CIs).

The run folder has the trained runs' layout (``config.json`` with ``kind: features``,
``splits.json``, ``predictions.csv``, ``metrics.json``, ``threshold.json``, ...), plus
``feature_model.json`` (what was chosen in each fold) and ``failed.csv``; the splits are made
as a training run's are, so a CNN run on the same cohort, label and seed has the same test
patients and the two can be compared patient by patient.
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from nsclc_engine.atomic import write_json, write_text_atomic
from nsclc_engine.config import check_rules, shown_error
from nsclc_engine.demo import DEMO_PATIENTS
from nsclc_engine.features.recipes import recipe
from nsclc_engine.runs import (
    create_run,
    now,
    process_started,
    provenance,
    read_config,
    run_dir,
    run_lock,
    splits_path,
    start_running,
    update_status,
    write_config,
    write_predictions,
)
from nsclc_engine.task_spec import TASKS
from nsclc_engine.train.prepare import run_exclusions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureConfig:
    """A frozen-feature run; saved in its ``config.json``."""

    weights: str = ""  # a local weights file (train.weights layouts)
    recipe: str = "fmcib"  # fmcib | medicalnet: the encoder's own preprocessing
    model: str = ""  # empty: the recipe's network the file fits (MedicalNet: its depth)
    cohort: str = ""  # a built cohort folder; empty: the embedded demo cohort
    demo_patients: int = DEMO_PATIENTS
    preset: str = "demo"  # medicalnet: the input size (fmcib's is fixed)
    label: str = ""  # empty: os_2y; survival runs take deadstatus_event as the event
    task: str = "classification"
    folds: int = 0  # 0: one train/validation/test split; k: k-fold, as for training
    seed: int = 0
    cv_folds: int = 5  # inner cross-validation on training patients, for the penalty
    device: str = "auto"
    batch_size: int = 8
    bootstrap_resamples: int = 2000

    def __post_init__(self) -> None:
        from nsclc_engine.cohort.clinical import LABELS

        if self.task not in TASKS:
            raise ValueError(f"task {self.task!r}: choose one of {', '.join(TASKS)}")
        if self.task == "survival":
            object.__setattr__(self, "label", "deadstatus_event")
        elif not self.label:
            object.__setattr__(self, "label", "os_2y")
        if self.label not in LABELS:
            raise ValueError(f"label {self.label!r}: choose one of {sorted(LABELS)}")
        if not self.weights or not Path(self.weights).is_file():
            raise ValueError(f"weights {self.weights!r}: no such file; give the encoder's file")
        if self.cohort and not (Path(self.cohort) / "cohort.csv").is_file():
            raise ValueError(
                f"cohort {self.cohort!r}: not a cohort folder (no cohort.csv); build one with "
                "python -m nsclc_engine.cohort"
            )
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device {self.device!r}: choose auto, cpu or cuda")
        rules = (
            ("folds", self.folds == 0 or self.folds >= 2, "0 (one split) or 2 or more"),
            ("cv_folds", self.cv_folds >= 2, "2 or more"),
            ("batch_size", self.batch_size >= 1, "1 or more"),
            ("seed", self.seed >= 0, "0 or more"),
            ("demo_patients", self.demo_patients >= 20, "20 or more"),
            ("bootstrap_resamples", self.bootstrap_resamples >= 100, "100 or more"),
        )
        check_rules(self, rules)
        recipe(self.recipe, self.preset)  # a bad recipe or preset fails here


def resolve_network(config: FeatureConfig) -> str:
    """The network the run extracts with: ``config.model``, else the one network of the
    recipe's family the weights file fits; ValueError naming what does not fit."""
    from nsclc_engine.train.weights import network_of

    family = recipe(config.recipe, config.preset).networks
    if config.model and config.model not in family:
        raise ValueError(
            f"model {config.model!r}: the {config.recipe} recipe is for {', '.join(family)}"
        )
    candidates = (config.model,) if config.model else family
    return network_of(
        config.weights, candidates, recipe(config.recipe, config.preset).preprocess.out_shape
    )


def feature_run(
    config: FeatureConfig,
    artifacts: str | os.PathLike,
    name: str = "",
    show_progress: bool = False,
) -> tuple[str, dict]:
    """Extract, fit, evaluate; returns the new run's id and its metrics. The weights file is
    checked against the network before anything is made."""
    artifacts = Path(artifacts)
    network = resolve_network(config)
    from nsclc_engine.train.loop import device_named

    device = str(device_named(config.device))
    run_id = create_run(
        {"config_class": "FeatureConfig", "kind": "features", **asdict(config), "model": network},
        artifacts,
        name,
    )
    folder = run_dir(run_id, artifacts)
    with run_lock(folder):
        start_running(
            folder,
            pid=os.getpid(),
            pid_started=process_started(os.getpid()),
            started=now(),
            stage="extracting features",
        )
        previous = signal.signal(signal.SIGTERM, _raise_cancelled)  # the dashboard's Cancel
        try:
            metrics = _run(folder, config, network, device, artifacts, show_progress)
        except (Cancelled, KeyboardInterrupt):
            update_status(folder, state="cancelled", finished=now())
            raise
        except Exception as error:
            update_status(folder, state="failed", finished=now(), error=shown_error(error))
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
    return run_id, metrics


class Cancelled(Exception):
    """The run was cancelled (SIGTERM) while extracting or fitting."""


def _raise_cancelled(signum, frame):
    raise Cancelled()


def _run(
    folder: Path,
    config: FeatureConfig,
    network: str,
    device: str,
    artifacts: Path,
    show_progress: bool,
) -> dict:
    from nsclc_engine.cohort.build import load_cohort
    from nsclc_engine.cohort.splits import SplitConfig, splits_for
    from nsclc_engine.evaluate.config import EvaluateConfig
    from nsclc_engine.evaluate.run import evaluate_run
    from nsclc_engine.features.extract import extract_features
    from nsclc_engine.features.fit import fit_fold
    from nsclc_engine.train.tasks import task_class

    the_recipe = recipe(config.recipe, config.preset)
    cohort_dir = _cohort(config, artifacts, show_progress)
    cache_dir = Path(os.environ.get("NSCLC_CACHE_DIR") or artifacts / "cache")
    extraction = extract_features(
        cohort_dir,
        the_recipe,
        config.weights,
        network,
        cache_dir,
        device,
        config.batch_size,
        show_progress,
    )
    cohort = load_cohort(cohort_dir).set_index("patient_id")
    # the reviewers' exclusions, as a training run leaves them out: read when the run first
    # splits its patients and kept in its folder (review_exclusions.json)
    excluded = run_exclusions(folder, config, artifacts, _images_under(config, cohort, artifacts))
    outcomes = _outcomes(cohort, extraction.features.index, config)
    outcomes = outcomes.drop(index=outcomes.index.intersection(list(excluded)))
    patients = sorted(outcomes.index)
    label_column = "event" if config.task == "survival" else "label"
    labels = [int(outcomes.loc[p, label_column]) for p in patients]
    splits = splits_for(
        splits_path(folder),
        patients,
        labels,
        SplitConfig(folds=config.folds, seed=config.seed),
        config.label,
    )
    update_status(folder, stage="fitting the linear model", progress=0.8)
    frames, chosen = [], []
    for fold, split in enumerate(splits):
        frame, choice = fit_fold(
            extraction.features, split, outcomes, config.task, config.cv_folds, config.seed
        )
        frames.append(frame.assign(fold=fold))
        chosen.append({"fold": fold, **choice})
    columns = list(task_class(config.task).columns)
    predictions = pd.concat(frames, ignore_index=True)[columns]
    write_json(
        folder / "feature_model.json",
        {
            "network": network,
            "recipe": the_recipe.description,
            "features": int(extraction.features.shape[1]),
            "patients": len(patients),
            "review_excluded": sorted(set(excluded) & set(cohort.index)),
            "vectors_from_store": extraction.hits,
            "folds": chosen,
        },
    )
    write_text_atomic(folder / "failed.csv", extraction.failed.to_csv(index=False))
    resolved = read_config(folder)
    resolved["resolved"] = {
        "cohort_dir": str(cohort_dir),
        "cache_dir": str(cache_dir),
        "preprocess": asdict(the_recipe.preprocess),
        "n_patients": len(patients),
        "weights": extraction.weights.record(),
        **provenance(),
    }
    write_config(folder, resolved)
    write_predictions(folder, predictions)
    update_status(folder, stage="evaluating", progress=0.9)
    metrics = {}
    try:
        metrics = evaluate_run(
            folder,
            EvaluateConfig(bootstrap_resamples=config.bootstrap_resamples, seed=config.seed),
        )
    except Exception as error:  # the fitted model's predictions stay valid, as for training
        log.exception("evaluation failed; rerun python -m nsclc_engine.evaluate %s", folder.name)
        update_status(folder, evaluation_error=f"{type(error).__name__}: {error}")
    update_status(
        folder,
        state="finished",
        progress=1.0,
        stage="done",
        finished=now(),
        model={
            "name": network,
            "parameters": extraction.parameters,
            "encoder": "frozen (features)",
            "head": chosen[0]["model"],
            "pretrained": extraction.weights.record(),
        },
    )
    return metrics


def _cohort(config: FeatureConfig, artifacts: Path, show_progress: bool) -> Path:
    if config.cohort:
        return Path(config.cohort)
    from nsclc_engine.demo import build_demo, demo_paths
    from nsclc_engine.synth.outcome import SynthConfig

    build_demo(artifacts, SynthConfig(n_patients=config.demo_patients), show_progress=show_progress)
    return demo_paths(artifacts).cohort


def _images_under(config: FeatureConfig, cohort: pd.DataFrame, artifacts: Path) -> str | None:
    """Where the reviewers' notes that apply are filed: ``None`` for the embedded demo (its
    source, ``demo``, as for a training run on it); for another cohort folder, the folder
    holding all its CT series (the notes of any DICOM source folder containing it apply)."""
    from nsclc_engine.demo import demo_paths

    demo_cohort = demo_paths(artifacts).cohort.resolve()
    if not config.cohort or Path(config.cohort).resolve() == demo_cohort:
        return None
    folders = [str(Path(f).resolve()) for f in cohort.get("ct_folder", pd.Series()).dropna()]
    return os.path.commonpath(folders) if folders else str(Path(config.cohort).resolve())


def _outcomes(cohort: pd.DataFrame, patients: pd.Index, config: FeatureConfig) -> pd.DataFrame:
    """``label`` (classification) or ``time_days`` and ``event`` (survival) of the patients
    with features and an outcome."""
    rows = cohort.loc[cohort.index.intersection(patients)]
    if config.task == "survival":
        rows = rows.dropna(subset=["survival_time_days", "deadstatus_event"])
        return pd.DataFrame(
            {"time_days": rows.survival_time_days, "event": rows.deadstatus_event.astype(int)}
        )
    rows = rows.dropna(subset=[config.label])
    return pd.DataFrame({"label": rows[config.label].astype(int)})
