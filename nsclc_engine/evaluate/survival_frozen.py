"""Survival predictions on patients outside a run's development: a survival run's frozen
baselines and threshold applied to an external cohort, and survival predictions imported from
elsewhere. Neither kind has a training split, so every IPCW weight comes from the censoring of
the scored patients themselves (:func:`~nsclc_engine.evaluate.survival.outcome_of`).

* :class:`FrozenSurvival` and :func:`frozen_survival_rule`: what a finished survival run
  carries to new patients, never refitted on them: each fold model's raw Breslow baseline
  (``survival_baseline.json``, fitted on its validation rows), its horizons, and its threshold
  on P(death by a horizon) (the saved operating point, else the one fitted on validation).
* :func:`ensemble_survival`: S(t) of new patients: one model, its baseline on its risk; k fold
  models, the mean over the models of each one's S(t) under its own baseline.
* :func:`horizons_block`: the ``metrics.json["horizons"]`` block, laid out as a trained run's
  (:func:`~nsclc_engine.evaluate.survival.evaluate_survival_probabilities`): per horizon the
  time-dependent AUC, and calibration where S(horizon) is known; D-calibration where whole
  curves are known. :func:`frozen_threshold_block`: the calls at a frozen threshold.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from nsclc_engine.evaluate.config import EvaluateConfig
from nsclc_engine.evaluate.frozen import fitted_thresholds
from nsclc_engine.evaluate.survival import (
    baselines_of,
    horizon_calibration,
    horizon_columns,
    outcome_counts,
    outcome_of,
    split_c_indices,
    survival_column,
)
from nsclc_engine.runs import (
    SURVIVAL_BASELINES,
    read_metrics,
    read_survival_baselines,
    read_threshold,
)
from nsclc_engine.stats.survival_calibration import d_calibration
from nsclc_engine.stats.survival_probability import (
    Baseline,
    horizon_counts,
    td_roc,
    td_sensitivity_specificity,
)


@dataclass(frozen=True)
class FrozenSurvival:
    """A survival run's rule for new patients. ``baselines``: fold -> the baseline its
    threshold was chosen on (raw, unless an operating point was saved on the recalibrated
    one; empty for a run evaluated before baselines were saved); ``saved``: its
    ``survival_baseline.json`` fold entries as written; ``threshold`` on P(death by
    ``threshold_horizon``) or ``None``; ``threshold_text``: where it came from, or why there
    is none."""

    run_id: str
    horizons_days: tuple[float, ...]
    baselines: dict[int, Baseline] = field(default_factory=dict)
    saved: list[dict] = field(default_factory=list)
    threshold: float | None = None
    threshold_horizon: float | None = None
    threshold_text: str = ""

    def applies_to(self, n_models: int) -> bool:
        """Whether every one of the run's ``n_models`` fold models has its baseline."""
        return set(self.baselines) == set(range(n_models))

    def missing_note(self, n_models: int) -> str:
        """Why no survival probability can be given for new patients (``""``: they can)."""
        if self.applies_to(n_models):
            return ""
        if not self.saved:
            return (
                f"run {self.run_id} was evaluated before survival probabilities existed (no "
                f"{SURVIVAL_BASELINES}): re-evaluate run {self.run_id} to get its baseline "
                f"(python -m nsclc_engine.evaluate {self.run_id}), then validate again; "
                "C-index and time-dependent AUC only"
            )
        notes = "; ".join(v for e in self.saved for k, v in e.items() if k == "raw_note")
        return (
            f"run {self.run_id} has no raw baseline for every fold model ({notes or 'none'}): "
            "C-index and time-dependent AUC only"
        )


def frozen_survival_rule(source: Path) -> FrozenSurvival:
    """The rule of survival run folder ``source`` (see :class:`FrozenSurvival`). Its horizons
    are those its evaluation used; its threshold is the operating point saved with a horizon,
    else the threshold its evaluation fitted on validation (one fold: fold 0's; k folds: the
    mean of theirs)."""
    metrics = read_metrics(source)
    horizons = (
        metrics.horizons_days
        or metrics.evaluate_config.get("horizons_days")
        or EvaluateConfig().horizons_days
    )
    horizons = tuple(float(h) for h in horizons)
    saved = read_survival_baselines(source)
    thresholds = read_threshold(source)
    point, fitted = thresholds.operating_point, thresholds.fitted
    by_fold = fitted_thresholds(thresholds)
    threshold = horizon = None
    kind = "raw"
    if point.get("threshold") is not None and point.get("horizon_days") is not None:
        threshold, horizon = float(point["threshold"]), float(point["horizon_days"])
        kind = point.get("baseline", "raw")  # the probabilities it was chosen on
        text = f"the saved operating point {threshold:.3f} on the {kind} baseline"
    elif by_fold and fitted.get("horizon_days") is not None:
        horizon = float(fitted["horizon_days"])
        threshold = float(np.mean(list(by_fold.values())))
        rule = fitted.get("rule", "rule")
        text = (
            f"the mean of the {len(by_fold)} folds' {rule} thresholds fitted on validation"
            if len(by_fold) > 1
            else f"the {rule} threshold fitted on validation"
        )
    if threshold is None:
        text = (
            f"run {source.name} has no threshold on P(death by a horizon) (re-evaluate it, or "
            "save an operating point with a horizon): no calls at a threshold"
        )
    else:
        text = (
            f"threshold {threshold:.3f} on P(death by day {horizon:g}), {text}, frozen from run "
            f"{source.name}"
        )
    return FrozenSurvival(
        source.name, horizons, baselines_of(saved, kind), saved, threshold, horizon, text
    )


def ensemble_survival(
    fold_risks: np.ndarray, baselines: dict[int, Baseline], times: float | np.ndarray
) -> np.ndarray:
    """S(t) per patient from ``fold_risks`` [n, k] (column k: fold model k's risk) as the mean
    over the models of each one's S(t) under its own baseline: ``times`` one horizon, or one
    time per patient (``S_i(t_i)``, for D-calibration)."""
    fold_risks = np.asarray(fold_risks, dtype=float).reshape(len(fold_risks), -1)
    per_model = []
    for fold in range(fold_risks.shape[1]):
        if np.ndim(times) > 0:
            per_model.append(baselines[fold].survival_at_own_times(fold_risks[:, fold], times))
        else:
            per_model.append(baselines[fold].survival(fold_risks[:, fold], [times])[:, 0])
    return np.mean(per_model, axis=0)


def with_frozen_survival(
    frame: pd.DataFrame, fold_risks: np.ndarray, rule: FrozenSurvival
) -> pd.DataFrame:
    """``frame`` with a ``survival_{h}d`` column per horizon of ``rule`` (S under its frozen
    baselines, :func:`ensemble_survival`)."""
    frame = frame.copy()
    for horizon in rule.horizons_days:
        frame[survival_column(horizon)] = ensemble_survival(fold_risks, rule.baselines, horizon)
    return frame


def c_direction_warnings(splits: dict) -> list[str]:
    """A warning per part whose C-index CI lies wholly below 0.5. Nothing is flipped."""
    return [
        f"{part}: C-index {block['c_index']['c_index']:.3f} (95% CI "
        f"{block['c_index']['ci_low']:.3f}-{block['c_index']['ci_high']:.3f}) is below 0.5 "
        "beyond chance: the risk probably ranks the other way (it must be higher for earlier "
        "death; imported predictions: --invert-score negates it); nothing was flipped"
        for part, block in splits.items()
        if block["c_index"]["ci_high"] < 0.5
    ]


def horizons_block(
    predictions: pd.DataFrame,
    config: EvaluateConfig,
    probabilities: str,
    own_survival: np.ndarray | None = None,
    d_calibration_note: str = "",
    missing_note: str = "",
) -> dict:
    """The ``horizons`` block of patients without a training split (one part, ``external``),
    at ``config.horizons_days``: under ``"raw"`` per horizon the counts, the time-dependent
    AUC of P(death by it) (``1 - survival_{h}d``; where that column is absent, of the risk,
    and ``missing_note`` says why) and calibration (:func:`~nsclc_engine.evaluate.survival.
    horizon_calibration`) where the column exists; D-calibration of ``own_survival``
    (``S_i(t_i)``) or ``d_calibration_note``. ``probabilities`` says what the columns are."""
    part = str(predictions.split.iloc[0]) if len(predictions) else "external"
    rows = predictions[predictions.split == part]
    columns = horizon_columns(rows)
    raw: dict = {}
    if own_survival is not None:
        raw["d_calibration"] = d_calibration(own_survival, rows.event.to_numpy())
    else:
        raw["d_calibration_note"] = d_calibration_note
    for horizon in config.horizons_days:
        if horizon in columns:
            p = 1 - rows[columns[horizon]].to_numpy(dtype=float)
            entry = horizon_calibration(p, rows, horizon, config) | {
                "td_auc_of": f"1 - {columns[horizon]}"
            }
        else:
            p = rows.risk.to_numpy(dtype=float)
            entry = outcome_counts(rows, horizon) | {
                "td_auc_of": "risk",
                "calibration_note": missing_note,
            }
        try:
            entry["td_auc"] = td_roc(outcome_of(predictions, rows, horizon), p)["auc"]
        except ValueError as error:
            entry["td_auc_note"] = str(error)
        raw[f"{horizon:g}d"] = entry
    return {
        "horizons_days": list(config.horizons_days),
        "held_out": part,
        "baselines": {"raw": probabilities},
        "censoring_from": "the scored patients themselves (no training split)",
        "raw": raw,
    }


def frozen_threshold_block(
    rows: pd.DataFrame, p: np.ndarray, rule: FrozenSurvival, config: EvaluateConfig
) -> dict:
    """``rule``'s threshold applied unchanged to ``rows`` (``p``: their P(death by its
    horizon)): the counts, the censored-before-horizon patients apart, and cumulative/dynamic
    sensitivity and specificity with bootstrap CIs; laid out as a trained run's
    ``horizons["threshold"]``."""
    horizon, threshold = rule.threshold_horizon, rule.threshold
    result: dict = {
        "rule": "frozen",
        "horizon_days": horizon,
        "scale": f"probability of death by day {horizon:g}",
        "fitted_on": rule.threshold_text,
        "thresholds": [{"fold": 0, "threshold": threshold}],
    }
    outcome = outcome_of(rows, rows, horizon)
    result["held_out"] = {
        "counts": horizon_counts(outcome, p, threshold),
        **td_sensitivity_specificity(
            outcome, p, threshold, config.bootstrap_resamples, config.seed
        ),
    }
    return result


D_CALIBRATION_IMPORT_NOTE = (
    "not computed: D-calibration needs each patient's whole survival curve at their own time "
    "(S_i(t_i)); an import gives S(t) at fixed horizons only"
)


def imported_survival_metrics(predictions: pd.DataFrame, config: EvaluateConfig) -> dict:
    """The evaluated part of an imported survival run's ``metrics.json``: Harrell's C with its
    CI per part, and the ``horizons`` block (:func:`horizons_block`) at ``config``'s horizons
    and at every horizon the file gives S(h) for: time-dependent AUC of P(death by h) where
    given, else of the risk, and calibration where given. No D-calibration, no threshold."""
    given = tuple(horizon_columns(predictions))
    horizons = tuple(sorted(set(config.horizons_days) | set(given)))
    at = replace(config, horizons_days=horizons)
    splits = split_c_indices(predictions, config)
    block = horizons_block(
        predictions,
        at,
        "the imported file's own survival probabilities",
        d_calibration_note=D_CALIBRATION_IMPORT_NOTE,
        missing_note="the imported file gives no survival probability at this horizon",
    )
    return {
        "evaluate_config": asdict(config),
        "splits": splits,
        "folds": [],
        "horizons": block,
        "warnings": c_direction_warnings(splits),
    }


def frozen_survival_record(rule: FrozenSurvival) -> dict:
    """The ``threshold_source`` record of an external survival run, in a sentence."""
    curves = (
        "S(t) from its Breslow baselines fitted on its validation rows, frozen"
        if rule.saved
        else "no frozen baseline (no survival probabilities)"
    )
    return {
        "kind": "frozen run",
        "run": rule.run_id,
        "text": f"risks of run {rule.run_id}, unchanged; {curves}; {rule.threshold_text}",
    }


def external_baseline_payload(rule: FrozenSurvival, n_models: int) -> dict:
    """The external run's ``survival_baseline.json``: the source's frozen baselines. A k-fold
    source's go under ``fold_models`` with ``folds`` empty: the external S(t) is their
    ensemble, and no single baseline applies to the mean risk in ``predictions.csv``."""
    payload = {"fitted_on": f"validation of run {rule.run_id} (frozen)", "source_run": rule.run_id}
    if n_models == 1:
        return payload | {"folds": rule.saved}
    return payload | {
        "folds": [],
        "fold_models": rule.saved,
        "note": (
            f"no single baseline applies: the survival columns are the mean over the "
            f"{n_models} fold models of each one's S(t) under its own baseline, from its own "
            "risk (not the mean risk in predictions.csv)"
        ),
    }


def external_survival_horizons(
    predictions: pd.DataFrame, fold_risks: np.ndarray, rule: FrozenSurvival, config: EvaluateConfig
) -> tuple[dict, list[str]]:
    """``(horizons block, warnings)`` of a frozen survival run's risks on external patients
    (``predictions``: their ``survival_{h}d`` columns from :func:`with_frozen_survival`;
    ``fold_risks`` [n, k]: each fold model's risk) at the run's horizons: time-dependent AUC,
    calibration and D-calibration of the frozen probabilities, and the calls at the frozen
    threshold. A run without its baselines: the time-dependent AUC of the risk only, and a
    warning saying to re-evaluate it."""
    at = replace(config, horizons_days=rule.horizons_days)
    n_models = fold_risks.shape[1]
    note = rule.missing_note(n_models)
    if note:
        block = horizons_block(predictions, at, "", d_calibration_note=note, missing_note=note)
        return block | {"baselines": {}, "note": note}, [note]
    own = ensemble_survival(fold_risks, rule.baselines, predictions.time_days.to_numpy())
    what = (
        f"the Breslow baseline of run {rule.run_id}, fitted on its validation rows and applied "
        "unchanged"
        if n_models == 1
        else f"the mean over run {rule.run_id}'s {n_models} fold models of each one's S(t) "
        "under its own Breslow baseline (fitted on its validation rows), applied unchanged"
    )
    block = horizons_block(predictions, at, what, own_survival=own)
    block["follow_up_days"] = {str(f): b.follow_up for f, b in rule.baselines.items()}
    if rule.threshold is None:
        block["threshold"] = {"note": rule.threshold_text}
        return block, [rule.threshold_text]
    p = 1 - ensemble_survival(fold_risks, rule.baselines, rule.threshold_horizon)
    block["threshold"] = frozen_threshold_block(predictions, p, rule, config)
    return block, []
