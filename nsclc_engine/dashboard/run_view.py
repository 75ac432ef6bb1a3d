"""One run as the pages see it: its files read once, a split's (recalibrated) predictions,
its curves, and its test result against the best achievable."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from nsclc_engine.evaluate.classification import held_out_part
from nsclc_engine.evaluate.yardstick import best_for, judge_run
from nsclc_engine.run_records import Metrics, Threshold
from nsclc_engine.runs import (
    Run,
    has_predictions,
    read_raw_status,
    read_saved_config,
    read_saved_splits,
    stamp,
)
from nsclc_engine.stats.calibration import fit_recalibrator
from nsclc_engine.stats.metrics import threshold_sweep
from nsclc_engine.task_spec import spec_of


@dataclass(frozen=True)
class RunView:
    """One run folder, read once: whatever exists of config, status, predictions, metrics."""

    run_id: str
    run_dir: Path
    config: dict
    status: dict
    predictions: pd.DataFrame | None = None
    metrics: Metrics = field(default_factory=Metrics)
    threshold: Threshold = field(default_factory=Threshold)
    history: list[dict] = field(default_factory=list)
    splits: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        # a view built by hand may pass plain dicts, or None for a file not written yet
        object.__setattr__(self, "metrics", Metrics(self.metrics or {}))
        object.__setattr__(self, "threshold", Threshold(self.threshold or {}))

    @property
    def finished(self) -> bool:
        return self.predictions is not None and self.status.get("state") == "finished"

    @property
    def kind(self) -> str:
        return run_kind(self.config)

    @property
    def held_out(self) -> str:
        """The part the run is judged on: ``test``, or ``external``."""
        return "test" if self.predictions is None else held_out_part(self.predictions)

    @property
    def parts(self) -> list[str]:
        """The classification parts a page can show: validation where there is one, then the
        held-out part."""
        present = set(self.predictions.split) if self.predictions is not None else set()
        return [part for part in ("validation", self.held_out) if part in present]


KINDS = {
    "imported": "imported",
    "external": "external validation",
    "features": "frozen features",
}


def run_kind(config: dict) -> str:
    """``trained``, ``imported`` (predictions made elsewhere), ``external validation`` (a
    frozen run applied to a new cohort) or ``frozen features`` (a linear model on a pretrained
    encoder's features), from a run's ``config.json``."""
    return KINDS.get(config.get("kind", ""), "trained")


def load_run(run_dir: str | os.PathLike) -> RunView:
    """Whatever the folder holds yet (a queued run has no predictions, an old one no
    history), through :class:`nsclc_engine.runs.Run`'s readers."""
    run = Run(Path(run_dir))
    return RunView(
        run.run_id,
        run.folder,
        read_saved_config(run.folder),
        read_raw_status(run.folder),
        run.predictions if has_predictions(run.folder) else None,
        run.metrics,
        run.threshold,
        run.history,
        read_saved_splits(run.folder),
    )


def run_stamp(run_dir: str | os.PathLike) -> tuple:
    """Changes whenever the run writes something the pages show (a cache key)."""
    return stamp(Path(run_dir))


def part_predictions(
    predictions: pd.DataFrame, split: str, recalibration: str = "none"
) -> pd.DataFrame:
    """The rows of one split (test: pooled out of fold), with ``y_prob`` recalibrated on each
    fold's validation rows when ``recalibration`` is not ``none``. ``frame.attrs["notes"]``
    lists what the page should say (small-sample warnings, fits that fell back to raw)."""
    frame = predictions[predictions.split == split].copy()
    notes: list[str] = []
    if recalibration != "none":
        for fold, rows in frame.groupby("fold"):
            validation = predictions[
                (predictions.split == "validation") & (predictions.fold == fold)
            ]
            if validation.empty:
                notes.append(
                    "This run has no validation predictions to fit a recalibration on: showing "
                    "raw probabilities (its report states where its threshold and recalibration "
                    "came from)."
                )
                continue
            try:
                recalibrator = fit_recalibrator(validation.y_true, validation.y_prob, recalibration)
            except ValueError as error:
                notes.append(f"fold {fold}: {error}; showing raw probabilities")
                continue
            frame.loc[rows.index, "y_prob"] = recalibrator.apply(rows.y_prob)
            if recalibrator.warning and recalibrator.warning not in notes:
                notes.append(recalibrator.warning)
    frame.attrs["notes"] = notes
    return frame


def curves(frame: pd.DataFrame) -> dict:
    """ROC and precision-recall curves with AUC and AP of one set of predictions."""
    sweep = threshold_sweep(frame.y_true, frame.y_prob)
    fpr, tpr = sweep.roc_curve()
    recall, precision = sweep.pr_curve()
    return {
        "roc": {"fpr": fpr, "tpr": tpr},
        "pr": {"recall": recall, "precision": precision},
        "auc": sweep.roc_auc(),
        "average_precision": sweep.average_precision(),
        "sweep": sweep,
    }


def test_verdict(metrics: dict) -> dict:
    """The test result against the best achievable on the same patients (synthetic cohort):
    ``value, ci_low, ci_high, best`` (image part), ``best_full``, ``learns``, ``no_leak``,
    ``share`` and ``metric``; empty for real data or runs without test metrics."""

    judgement = judge_run(metrics)
    if judgement is None or judgement.best is None:
        return {}
    return judgement.to_dict() | {
        "best_full": best_for(metrics, "test", "eta"),
        "metric": spec_of(metrics).metric_name,
    }


def verdict_text(verdict: dict) -> str:
    """One sentence for a page: the test metric against the best achievable on its patients,
    the paired difference and the share of the achievable signal, each with its 95 % CI."""
    share = ""
    if verdict["share"] is not None:
        share = f", {verdict['share']:.0%} of the achievable signal"
        if verdict.get("share_ci_low") is not None:
            share += f" (95% CI {verdict['share_ci_low']:.0%}-{verdict['share_ci_high']:.0%})"
    difference = ""
    if verdict.get("difference_ci_low") is not None:
        difference = (
            f" Model minus truth on the same resamples: {verdict['difference']:+.3f} "
            f"({verdict['difference_ci_low']:+.3f} to {verdict['difference_ci_high']:+.3f})."
        )
    leak = (
        ""
        if verdict["no_leak"]
        else " It beats what the truth reaches beyond chance: treat it as a leak until explained."
    )
    return (
        f"Test {verdict['metric']} {verdict['value']:.3f} ({verdict['ci_low']:.3f}-"
        f"{verdict['ci_high']:.3f}). On these test patients the image part of the true risk "
        f"reaches {verdict['best']:.3f} (the full true risk {verdict['best_full']:.3f}): "
        f"{'above chance' if verdict['learns'] else 'not clearly above chance'}{share}."
        f"{difference}{leak}"
    )
