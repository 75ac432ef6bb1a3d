"""Predictions made elsewhere (a published model, a vendor tool, a colleague's model) as a run.

``python -m nsclc_engine.evaluate --import FILE --name NAME --clinical CSV --patient-column COL
--score-column COL --label LABEL`` joins a per-patient predictions table to the clinical table
by PatientID and evaluates it with the same engine as a trained run. The imported patients are
an *external* test set (split ``external``): nothing here was trained on them.

* The label comes from the clinical table under a named definition (``os_2y``: 1 = died within
  2 years), never from the file. The score must be the probability of that label's positive
  class; ``--invert-score`` takes 1 - score (a file's ``surv2yr`` 1 = alive is the opposite
  direction). An AUC below 0.5 beyond chance gets a warning; nothing is flipped silently.
* The operating threshold and the recalibration come from one stated source: a value (0.5
  by default, no recalibration), another run's saved threshold and recalibrator, or a seeded
  patient-level validation part of the imported rows (the rest stays ``external``).
* Bad rows are counted with examples in ``metrics.json`` and listed in ``excluded.csv``: no
  PatientID, an ID repeated in the file, an ID repeated in the clinical table (excluded as
  the cohort builder excludes it, baselines included), an ID not in the clinical table, a
  missing or out-of-range score, no label. They are left out; the rest is evaluated.
* Baselines (:mod:`nsclc_engine.evaluate.crossfit`): clinical, volume and radiomics models
  fitted out of fold on exactly the imported patients, compared by paired DeLong.

Survival predictions (``--task survival --risk-column COL [--survival-column 730=COL ...]``):
the outcome is the clinical table's ``Survival.time`` and ``deadstatus.event``; the risk is
higher for earlier death (``--invert-score`` negates it, e.g. for a predicted survival time or
a probability of being alive). ``--survival-column DAYS=COL`` names a column holding S(DAYS),
the probability of being alive on that day; ``--death-column DAYS=COL`` one holding the
probability of death by that day (stored as ``1 - value``). ``predictions.csv`` has
``patient_id, split, fold, risk, time_days, event`` and ``survival_{DAYS}d``; ``metrics.json``
Harrell's C with its CI, and under ``horizons`` the time-dependent AUC and the calibration
at each horizon (:mod:`nsclc_engine.evaluate.survival_frozen`). A survival import has no
threshold source, no crossfit baselines and no D-calibration (that needs whole curves).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from nsclc_engine.atomic import write_text_atomic
from nsclc_engine.cohort.clinical import LABELS, add_labels, positive_class, read_clinical_csv
from nsclc_engine.evaluate.classification import FoldFit, evaluate_predictions
from nsclc_engine.evaluate.config import EvaluateConfig
from nsclc_engine.evaluate.crossfit import CROSSFIT_MODELS, out_of_fold
from nsclc_engine.evaluate.frozen import fit_from_record, frozen_decision
from nsclc_engine.evaluate.report import render_survival_report
from nsclc_engine.evaluate.run import write_classification_outputs
from nsclc_engine.evaluate.survival import survival_column
from nsclc_engine.evaluate.survival_frozen import imported_survival_metrics
from nsclc_engine.runs import (
    create_run,
    has_predictions,
    now,
    read_metrics,
    read_predictions,
    run_dir,
    update_status,
    validate_run_id,
    write_metrics,
    write_predictions,
)
from nsclc_engine.task_spec import TASKS

log = logging.getLogger(__name__)

EXCLUSION_REASONS = {
    "no_patient_id": "no PatientID",
    "duplicate_id": "PatientID repeated in the file (all its rows left out)",
    "unknown_id": "PatientID not in the clinical table",
    "duplicate_clinical_id": "PatientID repeated in the clinical table (label ambiguous)",
    "bad_score": "score missing, not a number, or outside [0, 1]",
    "no_label": "no label in the clinical table",
    "bad_risk": "risk missing or not a number",
    "no_outcome": "no survival time or event in the clinical table",
    "bad_survival": "survival probability missing or not a number",
}


@dataclass(frozen=True)
class ImportConfig:
    """How a predictions table becomes a run; saved as the run's ``config.json``."""

    file: str
    clinical: str
    patient_column: str
    score_column: str
    label: str = "os_2y"
    invert_score: bool = False
    threshold: float | None = None  # a stated value (0.5 when no source is given)
    threshold_from: str = ""  # another run's saved threshold and recalibrator
    validation_fraction: float = 0.0  # a seeded patient-level validation part
    seed: int = 0
    features: str = ""  # default: the imported file's pyradiomics columns
    features_patient_column: str = ""  # default: patient_column
    baselines: bool = True
    cv_folds: int = 5
    task: str = "classification"  # survival: score_column is the risk (higher = earlier death)
    survival_columns: tuple[str, ...] = ()  # "730=COL": the file's S(730 d), P(alive on day 730)
    death_columns: tuple[str, ...] = ()  # "730=COL": the file's P(death by day 730)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task {self.task!r}: choose one of {tuple(TASKS)}")
        if self.task == "survival":
            if self.threshold is not None or self.threshold_from or self.validation_fraction:
                raise ValueError(
                    "a survival import takes no --threshold, --threshold-from or "
                    "--validation-fraction: it is judged by its C-index, time-dependent AUC "
                    "and calibration at the horizons"
                )
            self.probability_columns()  # a bad DAYS=COLUMN fails here, before any file is read
        elif self.survival_columns or self.death_columns:
            raise ValueError("--survival-column and --death-column need --task survival")
        if self.label not in LABELS:
            raise ValueError(f"label {self.label!r}: choose one of {sorted(LABELS)}")
        sources = [
            self.threshold is not None,
            bool(self.threshold_from),
            self.validation_fraction > 0,
        ]
        if sum(sources) > 1:
            raise ValueError(
                "give one threshold source: --threshold VALUE, --threshold-from RUN or "
                "--validation-fraction F"
            )
        value = self.threshold
        if value is not None and not (math.isfinite(value) and 0 <= value <= 1):
            raise ValueError(f"threshold={value!r}: must be between 0 and 1")
        if not 0 <= self.validation_fraction < 0.8:
            raise ValueError(
                f"validation_fraction={self.validation_fraction!r}: must be in [0, 0.8)"
            )
        if self.cv_folds < 2:
            raise ValueError(f"cv_folds={self.cv_folds}: must be 2 or more")

    def probability_columns(self) -> dict[float, tuple[str, str]]:
        """Horizon (days) -> ``(column, option)`` of the file's survival probabilities
        (``option``: ``--survival-column`` for S(h), ``--death-column`` for P(death by h))."""
        found: dict[float, tuple[str, str]] = {}
        for option, specs in (
            ("--survival-column", self.survival_columns),
            ("--death-column", self.death_columns),
        ):
            for spec in specs:
                days, _, column = str(spec).partition("=")
                try:
                    horizon = float(days)
                except ValueError:
                    horizon = float("nan")
                if not (column and math.isfinite(horizon) and horizon > 0):
                    raise ValueError(f"{option} {spec!r}: give DAYS=COLUMN, e.g. 730=surv2yr")
                if horizon in found:
                    raise ValueError(f"{option} {spec!r}: day {horizon:g} is given twice")
                found[horizon] = (column, option)
        return dict(sorted(found.items()))


def read_table(path: str | Path, what: str) -> pd.DataFrame:
    """A CSV read as text (IDs keep their zeros), with a message naming the file."""
    path = Path(path)
    if not path.is_file():
        kind = "is a folder" if path.is_dir() else "does not exist"
        raise ValueError(f"{path}: {kind}; give the {what} as a CSV file")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=["", "NA", "NaN"])
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text; save the {what} as UTF-8 CSV") from None
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path}: the file is empty; give the {what}") from None
    except pd.errors.ParserError as error:
        raise ValueError(f"{path}: not a readable CSV ({' '.join(str(error).split())})") from None


def _require_columns(table: pd.DataFrame, path: str, columns: dict[str, str]) -> None:
    for option, column in columns.items():
        if column not in table.columns:
            present = list(table.columns[:15]) + (["..."] if len(table.columns) > 15 else [])
            raise ValueError(f"{path}: no column {column!r} ({option}); columns: {present}")


def survival_values(table: pd.DataFrame, config: ImportConfig) -> dict[float, pd.Series]:
    """Horizon -> each row's S(horizon) from the file's probability columns (a death column
    as ``1 - value``; NaN where missing or not a number). A value outside [0, 1] is an error
    naming the file, the column and examples: a percentage or a risk is never read as one."""
    values = {}
    for horizon, (column, option) in config.probability_columns().items():
        numbers = pd.to_numeric(table[column], errors="coerce").astype(float)
        outside = numbers.notna() & ((numbers < 0) | (numbers > 1))
        if outside.any():
            ids = table[config.patient_column].astype(str)[outside]
            pairs = list(zip(ids, numbers[outside], strict=True))[:3]
            examples = ", ".join(f"PatientID {i}: {v:g}" for i, v in pairs)
            raise ValueError(
                f"{config.file}: column {column!r} ({option} {horizon:g}={column}) has "
                f"{int(outside.sum())} value{'s' if outside.sum() > 1 else ''} outside [0, 1] "
                f"(e.g. {examples}); give "
                "probabilities, not percentages or risks"
            )
        values[horizon] = 1.0 - numbers if option == "--death-column" else numbers
    return values


def screen_rows(
    table: pd.DataFrame, clinical: pd.DataFrame, config: ImportConfig
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(kept, excluded)``: kept is ``patient_id, score, y_true`` (score already inverted
    where asked), or for a survival import ``patient_id, score, time_days, event`` and a
    ``survival_{h}d`` column per horizon of :func:`survival_values` (score: the risk, negated
    where asked); excluded is ``row, patient_id, reason, detail`` (``row`` numbers the file's
    data rows from 1), each row under its first failing reason of :data:`EXCLUSION_REASONS`."""
    survival = config.task == "survival"
    ids = table[config.patient_column].astype("string").str.strip()
    raw = table[config.score_column]
    score = pd.to_numeric(raw, errors="coerce").astype(float)
    repeated_clinical = clinical.patient_id[clinical.patient_id.duplicated()]
    labels = clinical.drop_duplicates("patient_id", keep=False).set_index("patient_id")
    if survival:
        known = labels.survival_time_days.notna() & (labels.survival_time_days >= 0)
        label = labels.deadstatus_event.where(known)
        why = "Survival.time or deadstatus.event is missing (or negative)"
    else:
        label = labels[config.label]
        why = labels.get(f"{config.label}_detail")
    reason = pd.Series("", index=table.index, dtype=object)
    detail = pd.Series("", index=table.index, dtype=object)

    def mark(rows: pd.Series, name: str, text) -> None:
        new = rows & (reason == "")
        reason[new] = name
        detail[new] = text[new] if isinstance(text, pd.Series) else text

    mark(ids.isna() | (ids == ""), "no_patient_id", "empty")
    repeated = ids.duplicated(keep=False) & ids.notna() & (ids != "")
    mark(repeated, "duplicate_id", ids.map(ids.value_counts()).astype(str) + " rows")
    mark(
        ids.isin(set(repeated_clinical)), "duplicate_clinical_id", "repeated in the clinical table"
    )
    mark(~ids.isin(labels.index), "unknown_id", "not in the clinical table")
    if survival:
        mark(
            pd.Series(~np.isfinite(score), index=table.index), "bad_risk", "risk " + raw.astype(str)
        )
    else:
        bad = ~np.isfinite(score) | (score < 0) | (score > 1)
        mark(pd.Series(bad, index=table.index), "bad_score", "score " + raw.astype(str))
    no_label = ids.map(label).isna()
    text = ids.map(why) if isinstance(why, pd.Series) else why or "label missing"
    mark(no_label, "no_outcome" if survival else "no_label", text)
    probabilities = survival_values(table, config) if survival else {}
    for horizon, values in probabilities.items():
        column = config.probability_columns()[horizon][0]
        mark(values.isna(), "bad_survival", f"{column} " + table[column].astype(str))
    keep = reason == ""
    kept = pd.DataFrame({"patient_id": ids[keep].astype(str).to_numpy()})
    if survival:
        kept["score"] = (-score[keep] if config.invert_score else score[keep]).to_numpy()
        kept["time_days"] = ids[keep].map(labels.survival_time_days).astype(float).to_numpy()
        kept["event"] = ids[keep].map(labels.deadstatus_event).astype(int).to_numpy()
        for horizon, values in probabilities.items():
            kept[survival_column(horizon)] = values[keep].to_numpy()
    else:
        kept["score"] = (1.0 - score[keep] if config.invert_score else score[keep]).to_numpy()
        kept["y_true"] = ids[keep].map(label).astype(int).to_numpy()
    excluded = pd.DataFrame(
        {
            "row": table.index[~keep] + 1,  # the file's data rows, 1 = the first
            "patient_id": ids[~keep].fillna("").to_numpy(),
            "reason": reason[~keep].to_numpy(),
            "detail": detail[~keep].astype(str).to_numpy(),
        }
    )
    return kept, excluded


def exclusion_summary(excluded: pd.DataFrame, n_examples: int = 5) -> dict:
    """Per reason: its meaning, the count and a few examples (PatientID or file line)."""
    summary = {}
    for name, meaning in EXCLUSION_REASONS.items():
        rows = excluded[excluded.reason == name]
        if len(rows):
            examples = [
                f"{r.patient_id or f'data row {r.row}'} ({r.detail})"
                for r in rows.head(n_examples).itertuples()
            ]
            summary[name] = {"meaning": meaning, "count": len(rows), "examples": examples}
    return summary


def threshold_source(
    config: ImportConfig, evaluate: EvaluateConfig, artifacts: str | Path | None
) -> tuple[dict[int, FoldFit] | None, dict]:
    """The fits to apply (``None``: fit on the validation part) and the source's record: what
    it is, in a sentence, and (value or another run) the threshold and recalibrator, so a
    re-evaluation applies the same rule even if the other run changes later."""
    if config.validation_fraction > 0:
        return None, {
            "kind": "validation part",
            "text": (
                f"threshold ({evaluate.threshold_rule}) and recalibration "
                f"({evaluate.recalibration}) fitted on a seeded (seed {config.seed}) "
                f"patient-level validation part of {config.validation_fraction:.0%} of the "
                "imported rows; the rest is the external test set"
            ),
        }
    if config.threshold_from:
        source = run_dir(config.threshold_from, artifacts)
        if not has_predictions(source):
            raise ValueError(
                f"--threshold-from {config.threshold_from}: no finished run of that name in "
                f"{source.parent}"
            )
        fit, record = frozen_decision(source)
        return {0: fit}, record | {"kind": "another run"}
    value = 0.5 if config.threshold is None else float(config.threshold)
    default = " (the default)" if config.threshold is None else ""
    record = {
        "kind": "value",
        "threshold": value,
        "recalibrator": {"method": "none", "n_fitted": 0},
        "text": f"threshold {value:.3f}, a stated value{default}; no recalibration",
    }
    return {0: fit_from_record(record)}, record


def _parts(kept: pd.DataFrame, config: ImportConfig) -> pd.Series:
    split = pd.Series("external", index=kept.index, dtype=object)
    if config.validation_fraction > 0:
        from sklearn.model_selection import train_test_split

        validation, _ = train_test_split(
            kept.index,
            train_size=config.validation_fraction,
            stratify=kept.y_true,
            random_state=config.seed,
        )
        split[validation] = "validation"
    return split


def unique_clinical_rows(clinical: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """``(table, notes)``: the clinical table without every PatientID it repeats (all their
    rows), and a sentence naming them when there are any."""
    counts = clinical.patient_id.value_counts()
    repeated = sorted(counts[counts > 1].index)
    if not repeated:
        return clinical, []
    examples = ", ".join(f"{p} ({counts[p]} rows)" for p in repeated[:5])
    more = f" and {len(repeated) - 5} more" if len(repeated) > 5 else ""
    note = (
        f"the clinical table repeats {len(repeated)} PatientID{'s' if len(repeated) > 1 else ''}"
        f" ({examples}{more}): left out as duplicate_clinical_id (label ambiguous), as the "
        "cohort builder does; their predictions are listed in excluded.csv and the baselines "
        "are fitted on the other patients"
    )
    return clinical[~clinical.patient_id.isin(repeated)], [note]


def crossfit_baselines(
    kept: pd.DataFrame, clinical: pd.DataFrame, features: pd.DataFrame | None, config: ImportConfig
) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Each baseline out of fold on the external patients (split ``external``), and what was
    skipped and why."""
    external = kept[kept.split == "external"].set_index("patient_id").y_true
    frames, notes = {}, []
    for kind in CROSSFIT_MODELS:
        try:
            frame = out_of_fold(kind, clinical, features, external, config.cv_folds, config.seed)
        except ValueError as error:
            notes.append(f"{kind} baseline skipped: {error}")
            continue
        frames[kind] = frame.rename(columns={"fold": "cv_fold"}).assign(split="external", fold=0)
        if frame.attrs["missing_patients"]:
            count = frame.attrs["missing_patients"]
            notes.append(
                f"{kind} baseline: {count} patient{'s have' if count > 1 else ' has'} no "
                "inputs in the table; imputed with the training folds' medians"
            )
    return frames, notes


def _features_table(config: ImportConfig, table: pd.DataFrame) -> pd.DataFrame | None:
    if config.features:
        features = read_table(config.features, "features table")
        column = config.features_patient_column or config.patient_column
        _require_columns(features, config.features, {"--features-patient-column": column})
    else:
        features, column = table, config.patient_column
    features = features.rename(columns={column: "patient_id"})
    features["patient_id"] = features.patient_id.astype("string").str.strip()
    features = features[features.patient_id.notna()].drop_duplicates("patient_id", keep=False)
    numeric = features.drop(columns="patient_id").apply(pd.to_numeric, errors="coerce")
    return pd.concat([features[["patient_id"]], numeric], axis=1)


def import_predictions(
    config: ImportConfig,
    name: str,
    artifacts: str | Path | None = None,
    evaluate: EvaluateConfig | None = None,
) -> tuple[str, dict]:
    """Create ``runs/<name>`` from a predictions table and evaluate it; returns the run id
    and its metrics. Everything is computed before the run folder is created, so a bad input
    leaves no half-made run."""
    evaluate = evaluate or EvaluateConfig()
    if run_dir(validate_run_id(name), artifacts).exists():
        raise ValueError(f"run {name!r} already exists; choose another --name")
    table = read_table(config.file, "predictions table")
    survival = config.task == "survival"
    columns = {
        "--patient-column": config.patient_column,
        "--risk-column" if survival else "--score-column": config.score_column,
    }
    for horizon, (column, option) in config.probability_columns().items():
        columns[f"{option} {horizon:g}={column}"] = column
    _require_columns(table, config.file, columns)
    if survival:
        return import_survival(config, name, artifacts, evaluate, table)
    clinical, unlabelled = add_labels(read_clinical_csv(config.clinical))
    reasons = unlabelled[unlabelled.label == config.label].drop_duplicates("patient_id")
    reasons = reasons.set_index("patient_id").detail
    clinical[f"{config.label}_detail"] = clinical.patient_id.map(reasons)
    kept, excluded = screen_rows(table, clinical, config)
    if kept.y_true.nunique() < 2:
        raise ValueError(
            f"{config.file}: {len(kept)} usable rows with {kept.y_true.nunique()} class(es) of "
            f"{config.label} after {len(excluded)} were left out; an evaluation needs both "
            f"classes ({exclusion_summary(excluded)})"
        )
    fits, source = threshold_source(config, evaluate, artifacts)
    kept["split"] = _parts(kept, config)
    predictions = kept.assign(fold=0, y_prob=kept.score)[
        ["patient_id", "split", "fold", "y_true", "y_prob"]
    ]
    # a PatientID on several clinical rows has an ambiguous label and covariates: the cohort
    # builder excludes it (duplicate_clinical_id), screen_rows lists its predictions so, and
    # the baselines are fitted on the other patients' single rows
    unique_clinical, notes = unique_clinical_rows(clinical)
    baselines = {}
    if config.baselines:
        baselines, baseline_notes = crossfit_baselines(
            kept, unique_clinical, _features_table(config, table), config
        )
        notes += baseline_notes
    results = evaluate_predictions(predictions, evaluate, baselines, fits)
    metrics = {
        "kind": "imported",
        "label": config.label,
        "positive_class": positive_class(config.label),
        "score": (f"1 - {config.score_column}" if config.invert_score else config.score_column),
        "shuffled_labels": False,
        "threshold_source": source,
        "excluded": exclusion_summary(excluded),
        "n_rows": len(table),
        "n_used": len(kept),
        **results["metrics"],
    }
    metrics["baseline_notes"] = notes
    metrics["warnings"] = metrics["warnings"] + notes
    run_config = {
        "kind": "imported",
        "task": "classification",
        "label": config.label,
        "import": asdict(config),
        "evaluate": asdict(evaluate),
        "threshold_source": source,
    }
    run_id = create_run(run_config, artifacts, name)
    folder = run_dir(run_id, artifacts)
    write_predictions(folder, predictions)
    write_text_atomic(folder / "excluded.csv", excluded.to_csv(index=False))
    if baselines:
        frame = pd.concat([f.assign(model=k) for k, f in baselines.items()], ignore_index=True)
        write_text_atomic(folder / "baselines.csv", frame.to_csv(index=False))
    write_outputs(folder, run_config, metrics, results, predictions, baselines, source)
    update_status(folder, state="finished", progress=1.0, stage="imported", finished=now())
    return run_id, metrics


def import_survival(
    config: ImportConfig,
    name: str,
    artifacts: str | Path | None,
    evaluate: EvaluateConfig,
    table: pd.DataFrame,
) -> tuple[str, dict]:
    """:func:`import_predictions` of a survival import (``config.task == "survival"``)."""
    clinical = read_clinical_csv(config.clinical)
    kept, excluded = screen_rows(table, clinical, config)
    if len(kept) < 2 or kept.event.sum() < 1:
        raise ValueError(
            f"{config.file}: {len(kept)} usable rows with {int(kept.event.sum())} deaths after "
            f"{len(excluded)} were left out; a C-index needs two patients and a death "
            f"({exclusion_summary(excluded)})"
        )
    predictions = kept.assign(split="external", fold=0).rename(columns={"score": "risk"})
    first = ["patient_id", "split", "fold", "risk", "time_days", "event"]
    predictions = predictions[first + [c for c in predictions.columns if c not in first]]
    source = {
        "kind": "none",
        "text": (
            "no threshold: a survival import is judged by its C-index, time-dependent AUC and "
            "calibration at the horizons"
        ),
    }
    given = {
        f"{horizon:g}": f"1 - {column}" if option == "--death-column" else column
        for horizon, (column, option) in config.probability_columns().items()
    }
    metrics = {
        "kind": "imported",
        "task": "survival",
        "risk": "higher = earlier death",
        "score": f"-{config.score_column}" if config.invert_score else config.score_column,
        "survival_columns": given,
        "shuffled_labels": False,
        "threshold_source": source,
        "excluded": exclusion_summary(excluded),
        "n_rows": len(table),
        "n_used": len(kept),
        **imported_survival_metrics(predictions, evaluate),
    }
    run_config = {
        "kind": "imported",
        "task": "survival",
        "label": "deadstatus_event",
        "import": asdict(config),
        "evaluate": asdict(evaluate),
        "threshold_source": source,
    }
    report = render_survival_report(name, metrics)  # before the folder: no half-made run
    run_id = create_run(run_config, artifacts, name)
    folder = run_dir(run_id, artifacts)
    write_predictions(folder, predictions)
    write_text_atomic(folder / "excluded.csv", excluded.to_csv(index=False))
    write_metrics(folder, metrics)
    write_text_atomic(folder / "report.html", report)
    update_status(folder, state="finished", progress=1.0, stage="imported", finished=now())
    return run_id, metrics


def write_outputs(
    folder: Path,
    run_config: dict,
    metrics: dict,
    results: dict,
    predictions: pd.DataFrame,
    baselines: dict,
    source: dict,
) -> None:
    """The outputs of an imported or externally validated run, its threshold fitted on the
    stated ``source``."""
    fitted = {"rule": metrics["thresholds"][0]["rule"], "fitted_on": source["text"]}
    write_classification_outputs(
        folder, run_config, metrics, results, predictions, baselines, fitted
    )


def reevaluate_imported(folder: Path, run_config: dict, evaluate: EvaluateConfig) -> dict:
    """Evaluate an imported run again from its saved predictions (``evaluate RUN_ID``)."""
    saved = read_metrics(folder)
    if run_config.get("task") == "survival":
        predictions = read_predictions(folder)
        metrics = saved | imported_survival_metrics(predictions, evaluate)
        write_metrics(folder, metrics)
        write_text_atomic(folder / "report.html", render_survival_report(folder.name, metrics))
        return metrics
    source = run_config["threshold_source"]  # as resolved at import
    fits = {0: fit_from_record(source)} if "threshold" in source else None
    predictions = read_predictions(folder)
    baselines = {}
    if (folder / "baselines.csv").exists():
        frame = pd.read_csv(folder / "baselines.csv", dtype={"patient_id": str})
        baselines = {kind: rows.drop(columns="model") for kind, rows in frame.groupby("model")}
    results = evaluate_predictions(predictions, evaluate, baselines, fits)
    metrics = saved | results["metrics"]
    metrics["warnings"] = metrics["warnings"] + metrics.get("baseline_notes", [])
    metrics["threshold_source"] = source
    write_outputs(folder, run_config, metrics, results, predictions, baselines, source)
    return metrics
