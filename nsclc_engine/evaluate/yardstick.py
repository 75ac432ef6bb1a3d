"""The yardstick on the synthetic cohort: the best achievable score on the very patients scored.

The synthetic cohort's generating model is known (``synth_truth.csv``): ``eta`` is each
patient's true log hazard and ``eta_image`` its image part (tumour volume and heterogeneity),
which is all an image-only model can ever learn. Their AUC (classification runs, on the run's
own labels) or Harrell's C (survival runs, on the run's own times and events) on *the same
patients* a model was scored on is the ceiling to judge it against. A cohort-wide number is the
wrong yardstick for one test split: the truth's score on a test split of a few dozen patients
moves by several hundredths from one split seed to the next.

k-fold runs are scored over the pairs within each fold (the fold-stratified AUC or C of
:func:`nsclc_engine.stats.metrics.stratified_auc` and
:func:`nsclc_engine.stats.survival.harrell_c_index`), the truth on exactly those pairs.

The verdict of one result against it has three parts:

* learns: the lower end of the 95 % CI is above 0.5;
* no leak: the model is not better than the truth beyond chance: the paired bootstrap CI of
  model minus best achievable (both scored on each resample) is not wholly above 0;
* share of the achievable signal recovered: ``(value - 0.5) / (best - 0.5)``, with the
  percentile CI of the same paired resamples (those where the truth clears chance by
  :data:`MIN_SIGNAL`). On a test part of a hundred patients that CI is wide: read it, not the
  point value.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from nsclc_engine.demo import source_of
from nsclc_engine.run_records import Metrics
from nsclc_engine.stats.metrics import auc_score, resampled_auc, stratified_auc
from nsclc_engine.stats.survival import harrell_c_index, resampled_c_index
from nsclc_engine.synth.generate import read_truth
from nsclc_engine.task_spec import spec_of, task_spec

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


def _score(rows: pd.DataFrame, task: str, score: np.ndarray, stratified: bool) -> float | None:
    """``None`` (JSON null) where the metric is undefined: one class, or no comparable pair.
    ``stratified``: pairs within a fold only (pooled k-fold test rows)."""
    strata = rows.fold.to_numpy() if stratified else None
    if task == "survival":
        try:
            return harrell_c_index(rows.time_days, rows.event, score, strata)
        except ValueError:
            return None
    if stratified:
        value = stratified_auc(rows.y_true, score, strata)
    else:
        value = auc_score(rows.y_true, score)
    return None if np.isnan(value) else float(value)


def _block(rows: pd.DataFrame, task: str, truth: pd.DataFrame, stratified: bool = False) -> dict:
    joined = truth.loc[rows.patient_id]
    return {
        "n": len(rows),
        **{name: _score(rows, task, joined[name].to_numpy(), stratified) for name in SCORES},
    }


def _resampled(
    rows: pd.DataFrame, task: str, score: np.ndarray, n_resamples: int, seed: int, strata
) -> np.ndarray:
    if task == "survival":
        return resampled_c_index(rows.time_days, rows.event, score, n_resamples, seed, strata)
    return resampled_auc(rows.y_true, score, n_resamples, seed, strata)


def paired_against_best(
    rows: pd.DataFrame,
    task: str,
    truth: pd.DataFrame,
    stratified: bool,
    n_resamples: int = 2000,
    seed: int = 0,
    score: str = "eta_image",
) -> dict | None:
    """The model (``y_prob``, survival: ``risk``) against ``score`` on the same patients and
    the same bootstrap resamples: the difference model - best with its percentile CI and a
    two-sided p-value, and the share of the achievable signal ``(model - 0.5) / (best - 0.5)``
    with its CI over the resamples where the best clears chance by :data:`MIN_SIGNAL`.
    ``None`` where either is undefined on these rows."""
    best = truth.loc[rows.patient_id, score].to_numpy()
    model = (rows.risk if task == "survival" else rows.y_prob).to_numpy()
    point_model = _score(rows, task, model, stratified)
    point_best = _score(rows, task, best, stratified)
    if point_model is None or point_best is None:
        return None
    strata = rows.fold.to_numpy() if stratified else None
    a = _resampled(rows, task, model, n_resamples, seed, strata)
    b = _resampled(rows, task, best, n_resamples, seed, strata)
    defined = np.isfinite(a) & np.isfinite(b)
    difference = (a - b)[defined]
    tail = min(np.mean(difference <= 0), np.mean(difference >= 0)) if len(difference) else 1.0
    result = {
        "score": score,
        "n": len(rows),
        "n_resamples": n_resamples,
        "difference": {
            "value": point_model - point_best,
            "ci_low": float(np.quantile(difference, 0.025)) if len(difference) else None,
            "ci_high": float(np.quantile(difference, 0.975)) if len(difference) else None,
            "p_value": float(min(1.0, max(2 * tail, 1 / max(len(difference), 1)))),
        },
        "share": None,
    }
    signal = defined & (b - 0.5 >= MIN_SIGNAL)
    if point_best - 0.5 >= MIN_SIGNAL and signal.any():
        shares = (a[signal] - 0.5) / (b[signal] - 0.5)
        result["share"] = {
            "value": (point_model - 0.5) / (point_best - 0.5),
            "ci_low": float(np.quantile(shares, 0.025)),
            "ci_high": float(np.quantile(shares, 0.975)),
            "n_resamples_used": int(signal.sum()),
        }
    return result


def best_achievable(
    predictions: pd.DataFrame,
    truth: pd.DataFrame,
    task: str,
    n_resamples: int = 2000,
    seed: int = 0,
) -> dict:
    """The true scores' AUC (``task="classification"``: against ``y_true``) or Harrell's C
    (``"survival"``: ``time_days``, ``event``) on exactly the rows of each split and fold,
    and on the held-out part (test, or external) the model paired against the image part
    (``paired``: :func:`paired_against_best`).

    Single split: one entry per split. k-fold: ``splits["test"]`` is the pooled out-of-fold
    test part (each patient once) scored over pairs within a fold, and ``folds`` holds every
    fold's parts. A patient missing from ``truth`` raises, naming it.
    """
    truth = truth.drop_duplicates("patient_id").set_index("patient_id")
    missing = sorted(set(predictions.patient_id) - set(truth.index))
    if missing:
        raise ValueError(
            f"patients {missing[:5]} are not in the synthetic truth table: the run's cohort "
            "was not built by this synthetic cohort"
        )
    k_fold = predictions.fold.max() > predictions.fold.min()
    held_out = "external" if (predictions.split == "external").any() else "test"
    parts = predictions[predictions.split == held_out] if k_fold else predictions
    result: dict = {
        "metric": task_spec(task).metric_key,
        "scores": SCORE_MEANING,
        "fold_stratified": k_fold,
        "splits": {
            part: _block(rows, task, truth, k_fold) for part, rows in parts.groupby("split")
        },
        "paired": {},
    }
    held_out_rows = parts[parts.split == held_out]
    if len(held_out_rows):
        paired = paired_against_best(held_out_rows, task, truth, k_fold, n_resamples, seed)
        if paired is not None:
            result["paired"][held_out] = paired
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
    """One result (value with its 95 % CI) against the best achievable on the same patients,
    with the paired comparison where it was computed (:func:`paired_against_best`)."""

    value: float
    ci_low: float
    ci_high: float
    best: float | None
    difference: float | None = None
    difference_ci_low: float | None = None
    difference_ci_high: float | None = None
    share_ci_low: float | None = None
    share_ci_high: float | None = None

    @property
    def learns(self) -> bool:
        return self.ci_low > 0.5

    @property
    def no_leak(self) -> bool | None:
        """``None`` where no yardstick exists (real data). With the paired comparison: the
        model is not above the truth beyond chance (the CI of model - best is not wholly
        above 0); else the model's CI is not wholly above the best."""
        if self.best is None:
            return None
        if self.difference_ci_low is not None:
            return not self.difference_ci_low > 0
        return not self.ci_low > self.best

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


def judge(block: dict, key: str, best: float | None, paired: dict | None = None) -> Judgement:
    """``block`` a metric with ``ci_low``/``ci_high`` (``metrics.json`` style) under ``key``;
    ``paired`` the entry of :func:`paired_against_best` for the same patients."""
    extra: dict = {}
    if paired:
        difference = paired["difference"]
        extra = {
            "difference": difference["value"],
            "difference_ci_low": difference["ci_low"],
            "difference_ci_high": difference["ci_high"],
        }
        if paired.get("share"):
            extra |= {
                "share_ci_low": paired["share"]["ci_low"],
                "share_ci_high": paired["share"]["ci_high"],
            }
    return Judgement(
        float(block[key]), float(block["ci_low"]), float(block["ci_high"]), best, **extra
    )


def metric_key(metrics: dict) -> str:
    """The headline metric of a run's ``metrics.json``: ``c_index`` (survival) or ``auc``."""
    return spec_of(metrics).metric_key


def judge_run(metrics: dict, split: str = "test") -> Judgement | None:
    """A run's headline metric on ``split`` against the image part's best on the same
    patients (``best`` None on real data); ``None`` when the split has no such metric."""
    key, metrics = metric_key(metrics), Metrics(metrics)
    block = metrics.split(split).get(key)
    if not block:
        return None
    return judge(block, key, metrics.best(split, "eta_image"), metrics.paired_share(split))


def best_for(metrics: dict, split: str = "test", score: str = "eta_image") -> float | None:
    """The best achievable value of ``score`` on ``split`` from a run's ``metrics.json``."""
    return Metrics(metrics).best(split, score)
