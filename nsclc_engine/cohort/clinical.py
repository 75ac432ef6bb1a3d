"""The Lung1 clinical table and the label definitions built on it.

The v3 table (Oct 2019) has one row per patient with the columns in :data:`V3_COLUMNS`;
``NA`` marks a missing value. Columns are renamed to snake_case with units
(:data:`COLUMN_NAMES`). Labels are named definitions (:data:`LABELS`), each a function of
``survival_time_days`` and ``deadstatus_event`` that returns the label (1 = positive class,
deceased) or NaN with the reason the patient has no label under that definition.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

# what a file holds goes to the server's log only: outside the ``nsclc_engine`` logger, whose
# records a run also writes to its train.log, which the Train page shows
details = logging.getLogger("nsclc_details.clinical")

V3_COLUMNS = (
    "PatientID",
    "age",
    "clinical.T.Stage",
    "Clinical.N.Stage",
    "Clinical.M.Stage",
    "Overall.Stage",
    "Histology",
    "gender",
    "Survival.time",
    "deadstatus.event",
)
COLUMN_NAMES = {
    "PatientID": "patient_id",
    "age": "age_years",
    "clinical.T.Stage": "t_stage",
    "Clinical.N.Stage": "n_stage",
    "Clinical.M.Stage": "m_stage",
    "Overall.Stage": "overall_stage",
    "Histology": "histology",
    "gender": "gender",
    "Survival.time": "survival_time_days",
    "deadstatus.event": "deadstatus_event",
}
OS_2Y_HORIZON_DAYS = 730
INTEGER_COLUMNS = ("t_stage", "n_stage", "m_stage", "survival_time_days", "deadstatus_event")


@dataclass(frozen=True)
class LabelDefinition:
    name: str
    description: str
    compute: Callable[[pd.DataFrame], tuple[pd.Series, pd.Series]]
    positive_class: str  # what 1 means, in a few words (reports, metrics.json)


def _deadstatus_event(table: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    label = table["deadstatus_event"].astype("Float64")
    reason = pd.Series("", index=table.index, dtype=object)
    reason[label.isna()] = "deadstatus.event is missing"
    return label, reason


def _os_2y(table: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    time = table["survival_time_days"].astype("Float64")
    event = table["deadstatus_event"].astype("Float64")
    label = pd.Series(pd.NA, index=table.index, dtype="Float64")
    label[(event == 1) & (time <= OS_2Y_HORIZON_DAYS)] = 1.0
    # alive at the last follow-up on day 730 itself: known to have survived two years
    label[(time > OS_2Y_HORIZON_DAYS) | ((event == 0) & (time == OS_2Y_HORIZON_DAYS))] = 0.0
    reason = pd.Series("", index=table.index, dtype=object)
    censored_early = (event == 0) & (time < OS_2Y_HORIZON_DAYS)
    reason[censored_early] = [
        f"censored at {int(t)} d, before the {OS_2Y_HORIZON_DAYS}-day horizon: "
        "2-year status unknown"
        for t in time[censored_early]
    ]
    reason[time.isna() | event.isna()] = "Survival.time or deadstatus.event is missing"
    return label, reason


LABELS: dict[str, LabelDefinition] = {
    "deadstatus_event": LabelDefinition(
        "deadstatus_event",
        "1 = deceased at last follow-up (the report's target; mostly measures follow-up length)",
        _deadstatus_event,
        "1 = deceased at last follow-up",
    ),
    "os_2y": LabelDefinition(
        "os_2y",
        f"1 = died within {OS_2Y_HORIZON_DAYS} days (day {OS_2Y_HORIZON_DAYS} included); "
        f"0 = alive on day {OS_2Y_HORIZON_DAYS} or later; censored before then = no label",
        _os_2y,
        "1 = died within 2 years",
    ),
}


def positive_class(label: str | None) -> str:
    """What 1 means for ``label``; ``"1"`` for a label the table does not define."""
    definition = LABELS.get(label or "")
    return definition.positive_class if definition else "1"


def read_clinical_csv(path: str | os.PathLike) -> pd.DataFrame:
    """Read a Lung1 clinical CSV (v3 columns) into snake_case columns.

    Keeps every row, duplicates included (the cohort step reports them). Raises ``ValueError``
    naming the file and the missing columns when it is not a v3 table.
    """
    if not Path(path).is_file():
        kind = "is a folder" if Path(path).is_dir() else "does not exist"
        raise ValueError(f"{path}: {kind}; give the clinical CSV file")
    try:
        table = pd.read_csv(
            path, na_values=["NA", ""], keep_default_na=False, dtype={"PatientID": str}
        )
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{path}: not UTF-8 text (byte {error.object[error.start]:#x} at position "
            f"{error.start}); save the table as UTF-8 CSV"
        ) from None
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path}: the file is empty; give the Lung1 clinical CSV") from None
    except pd.errors.ParserError as error:
        details.warning("%s: CSV parser error: %s", path, " ".join(str(error).split()))
        raise ValueError(
            f"{path}: not a readable CSV (the parser's detail is in the server log); give the "
            "Lung1 clinical CSV"
        ) from None
    missing = [column for column in V3_COLUMNS if column not in table.columns]
    if missing:  # the file's own header is left out: it could be any file's first line
        details.warning("%s: columns present: %s", path, list(table.columns))
        raise ValueError(
            f"{path}: not a Lung1 v3 clinical table; missing columns {missing} "
            f"({len(table.columns)} columns present, listed in the server log)"
        )
    table = table[list(V3_COLUMNS)].rename(columns=COLUMN_NAMES)
    table["patient_id"] = table["patient_id"].astype(str).str.strip()
    source_names = {new: old for old, new in COLUMN_NAMES.items()}
    for column in ("age_years", *INTEGER_COLUMNS):
        numeric = pd.to_numeric(table[column], errors="coerce")
        bad = numeric.isna() & table[column].notna()
        if column in INTEGER_COLUMNS:
            bad |= numeric.notna() & (numeric % 1 != 0)
        if bad.any():
            examples = dict(zip(table.loc[bad, "patient_id"], table.loc[bad, column], strict=True))
            kind = "whole numbers" if column in INTEGER_COLUMNS else "numbers"
            details.warning("%s: %s values that are not %s: %s", path, column, kind, examples)
            raise ValueError(
                f"{path}: column {source_names[column]} must hold {kind} or NA; patients "
                f"{list(examples)[:10]} have other values (listed in the server log)"
            )
        table[column] = numeric.astype("Int64") if column in INTEGER_COLUMNS else numeric
    bad_event = table["deadstatus_event"].notna() & ~table["deadstatus_event"].isin([0, 1])
    if bad_event.any():
        raise ValueError(
            f"{path}: deadstatus.event must be 0, 1 or NA; patients "
            f"{table.loc[bad_event, 'patient_id'].tolist()} have other values"
        )
    return table


def add_labels(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Add one column per label definition; return ``(table, unlabelled)``.

    ``unlabelled`` has a row per (patient, label) without a label: patient_id, label, detail.
    """
    table = table.copy()
    unlabelled = []
    for name, definition in LABELS.items():
        label, reason = definition.compute(table)
        table[name] = label.astype("Int64")
        missing = label.isna()
        unlabelled.append(
            pd.DataFrame(
                {
                    "patient_id": table.loc[missing, "patient_id"],
                    "label": name,
                    "detail": reason[missing],
                }
            )
        )
    return table, pd.concat(unlabelled, ignore_index=True)


def label_counts(table: pd.DataFrame, label: str) -> dict[str, int]:
    """Positives, negatives and patients without a label under one definition."""
    values = table[label]
    return {
        "positive": int((values == 1).sum()),
        "negative": int((values == 0).sum()),
        "unlabelled": int(values.isna().sum()),
    }
