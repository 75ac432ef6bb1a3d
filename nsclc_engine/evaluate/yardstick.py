"""The yardstick on the synthetic cohort: the best achievable score on the very patients scored.

The synthetic cohort's generating model is known (``synth_truth.csv``): ``eta`` is each
patient's true log hazard and ``eta_image`` its image part (tumour volume and heterogeneity),
which is all an image-only model can ever learn. Their AUC (classification runs, on the run's
own labels) or Harrell's C (survival runs, on the run's own times and events) on *the same
patients* a model was scored on is the ceiling to judge it against. A cohort-wide number is the
wrong yardstick for one test split: on the 240-patient demo (46 test patients) the true risk
reached test AUC 0.917, 0.678 and 0.644 for split seeds 0, 1 and 2; the cohort-wide value was
0.773.

The verdict of one result against it has three parts:

* learns: the lower end of the 95 % CI is above 0.5;
* no leak: the CI is not wholly above the best achievable (better than the truth is a bug);
* share of the achievable signal recovered: ``(value - 0.5) / (best - 0.5)``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from nsclc_engine.demo import source_of
from nsclc_engine.stats.metrics import auc_score
from nsclc_engine.stats.survival import harrell_c_index
from nsclc_engine.synth.generate import read_truth

SCORES = ("eta", "eta_image")
MIN_SIGNAL = 0.05  # the best achievable must exceed 0.5 by this much for a share to mean much
SCORE_MEANING = {
    "eta": "the true risk score (image and clinical parts)",
    "eta_image": "the image part of the true risk score: all an image-only model can reach",
}


def load_truth(cohort_dir: str | os.PathLike | None) -> pd.DataFrame | None:
    """``patient_id, eta, eta_image`` of a synthetic cohort; ``None`` for real data."""
    table = read_truth(source_of(cohort_dir)) if cohort_dir else None
    return None if table is None else table[["patient_id", *SCORES]]


def _score(rows: pd.DataFrame, task: str, score: np.ndarray) -> float | None:
    """``None`` (JSON null) where the metric is undefined: one class, or no comparable pair."""
    if task == "survival":
        try:
            return harrell_c_index(rows.time_days, rows.event, score)
        except ValueError:
            return None
    value = auc_score(rows.y_true, score)
    return None if np.isnan(value) else float(value)


def _block(rows: pd.DataFrame, task: str, truth: pd.DataFrame) -> dict:
    joined = truth.loc[rows.patient_id]
    return {
        "n": len(rows),
        **{name: _score(rows, task, joined[name].to_numpy()) for name in SCORES},
    }


def best_achievable(predictions: pd.DataFrame, truth: pd.DataFrame, task: str) -> dict:
    """The true scores' AUC (``task="classification"``: against ``y_true``) or Harrell's C
    (``"survival"``: ``time_days``, ``event``) on exactly the rows of each split and fold.

    Single split: one entry per split. k-fold: ``splits["test"]`` is the pooled out-of-fold
    test part (each patient once), and ``folds`` holds every fold's parts. A patient missing
    from ``truth`` raises, naming it.
    """
    truth = truth.drop_duplicates("patient_id").set_index("patient_id")
    missing = sorted(set(predictions.patient_id) - set(truth.index))
    if missing:
        raise ValueError(
            f"patients {missing[:5]} are not in the synthetic truth table: the run's cohort "
            "was not built by this synthetic cohort"
        )
    k_fold = predictions.fold.max() > predictions.fold.min()
    parts = predictions[predictions.split == "test"] if k_fold else predictions
    result: dict = {
        "metric": "c_index" if task == "survival" else "auc",
        "scores": SCORE_MEANING,
        "splits": {part: _block(rows, task, truth) for part, rows in parts.groupby("split")},
    }
    if k_fold:
        result["folds"] = [
            {
                "fold": int(fold),
                **{part: _block(r, task, truth) for part, r in rows.groupby("split")},
            }
            for fold, rows in predictions.groupby("fold")
        ]
    return result


@dataclass(frozen=True)
class Judgement:
    """One result (value with its 95 % CI) against the best achievable on the same patients."""

    value: float
    ci_low: float
    ci_high: float
    best: float | None

    @property
    def learns(self) -> bool:
        return self.ci_low > 0.5

    @property
    def no_leak(self) -> bool | None:
        """``None`` where no yardstick exists (real data)."""
        return None if self.best is None else not self.ci_low > self.best

    @property
    def share(self) -> float | None:
        """Share of the achievable signal above chance that the model recovered; ``None``
        where the best achievable is within :data:`MIN_SIGNAL` of chance (shuffled outcomes,
        tiny splits), where the ratio would only amplify noise."""
        if self.best is None or self.best - 0.5 < MIN_SIGNAL:
            return None
        return (self.value - 0.5) / (self.best - 0.5)

    def to_dict(self) -> dict:
        return asdict(self) | {"learns": self.learns, "no_leak": self.no_leak, "share": self.share}


def judge(block: dict, key: str, best: float | None) -> Judgement:
    """``block`` a metric with ``ci_low``/``ci_high`` (``metrics.json`` style) under ``key``."""
    return Judgement(float(block[key]), float(block["ci_low"]), float(block["ci_high"]), best)


def metric_key(metrics: dict) -> str:
    """The headline metric of a run's ``metrics.json``: ``c_index`` (survival) or ``auc``."""
    return "c_index" if metrics.get("task") == "survival" else "auc"


def judge_run(metrics: dict, split: str = "test") -> Judgement | None:
    """A run's headline metric on ``split`` against the image part's best on the same
    patients (``best`` None on real data); ``None`` when the split has no such metric."""
    key = metric_key(metrics)
    block = metrics.get("splits", {}).get(split, {}).get(key)
    return judge(block, key, best_for(metrics, split, "eta_image")) if block else None


def best_for(metrics: dict, split: str = "test", score: str = "eta_image") -> float | None:
    """The best achievable value of ``score`` on ``split`` from a run's ``metrics.json``."""
    return ((metrics.get("best_achievable") or {}).get("splits", {}).get(split) or {}).get(score)
