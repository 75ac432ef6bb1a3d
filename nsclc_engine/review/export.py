"""Reviewers' verdicts and notes on a run's patients, out of the tool
(``python -m nsclc_engine.review export``).

:func:`finished_run` opens a run the way the review page does (finished, with predictions;
:meth:`FinishedRun.check_patient`: one of its patients). :func:`review_entries` lists every
verdict and note on the run's patients, one row each; :func:`export_csv` writes them as one
table (:func:`review_table`), :func:`export_sr` as one DICOM Comprehensive SR per reviewed
patient (:func:`review_sr`, with highdicom)::

    CONTAINER  Diagnostic Imaging Report (LN 18748-4)
      TEXT       Model run = <run id>
      CONTAINER  Model prediction          one per row of the patient in the run's predictions
        TEXT       Split;  NUM Fold
        NUM        y_prob | risk | survival_<days>d  (no units)
      CONTAINER  Reviewer's verdict        one per verdict, oldest first
        HAS OBS CONTEXT  Observer Type = Person; Person Observer Name, Login Name = the author
        CODE       Verdict = a store.VERDICTS key, its meaning
        TEXT       Comment = the verdict's note (where it has one)
        DATETIME   DateTime of Recording of Log Entry
      CONTAINER  Review note               one per note, oldest first: as a verdict, with
        CODE       Note flag = a store.FLAGS key, and TEXT Withdrawn where it was withdrawn

This tool's concepts are coded in the private scheme ``99NSCLC`` (designators beginning "99"
are local by the standard). The SR joins the CT's study: patient and study attributes are
copied from the CT headers, and every instance of the patient's CT series (the run's cohort)
is its evidence (Current Requested Procedure Evidence Sequence).
"""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import logging
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import highdicom as hd
import pandas as pd
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.sr.codedict import codes

from nsclc_engine import runs
from nsclc_engine.atomic import atomic_path, write_text_atomic
from nsclc_engine.cohort.build import load_cohort
from nsclc_engine.cohort.dicom_io import list_files
from nsclc_engine.config import one_line
from nsclc_engine.paths import review_database_exists
from nsclc_engine.review import store
from nsclc_engine.runs import PREDICTIONS

log = logging.getLogger(__name__)

FORMATS = ("dicom-sr", "csv")
ENTRY_COLUMNS = (
    "run_id",
    "patient_id",
    "kind",  # verdict or note
    "entry_id",  # the verdict's or the note's id in the review database
    "code",  # a store.VERDICTS or store.FLAGS key
    "name",  # its meaning
    "text",
    "author",
    "created_at",
    "withdrawn_by",
    "withdrawn_at",
)
OUTPUT_COLUMN = re.compile(r"^(y_prob|risk|survival_(\d+)d)$")
SR_SERIES_NUMBER = 9901  # apart from the CT's own series numbers
MANUFACTURER = "nsclc_engine"
LOCAL_SCHEME = "99NSCLC"
UTF8 = "ISO_IR 192"  # notes and names are free text
# type 2 attributes highdicom copies from the first evidence header: empty where a CT lacks one
PATIENT_AND_STUDY = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
)
# highdicom's hint on a one-component name, raised for the patient name it copies from the CT
SINGLE_COMPONENT_NAME = ".*unlikely to represent the intended person name"


def _local(value: str, meaning: str) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(value, LOCAL_SCHEME, meaning)


MODEL_RUN = _local("model-run", "Model run")
PREDICTION = _local("prediction", "Model prediction")
SPLIT = _local("split", "Split")
FOLD = _local("fold", "Fold")
VERDICT_ENTRY = _local("review-verdict", "Reviewer's verdict")
NOTE_ENTRY = _local("review-note", "Review note")
VERDICT = _local("verdict", "Verdict")
FLAG = _local("flag", "Note flag")
WITHDRAWN = _local("withdrawn", "Withdrawn")
CONTAINS = hd.sr.RelationshipTypeValues.CONTAINS


@dataclass(frozen=True)
class FinishedRun:
    """A run that finished with predictions: its ``config.json`` and ``predictions.csv``
    (patient ids as text)."""

    run_id: str
    folder: Path
    config: dict
    predictions: pd.DataFrame

    @property
    def source(self) -> str:
        """The data source its cohort came from (:func:`store.source_of`)."""
        return store.source_of(self.config)

    def check_patient(self, patient_id: str) -> None:
        """Raise ``ValueError`` unless ``patient_id`` is one of the run's patients."""
        patients = self.predictions.patient_id.drop_duplicates()
        if patient_id not in set(patients):
            examples = ", ".join(patients.head(3))
            raise ValueError(
                f"patient {patient_id!r} is not one of the {len(patients)} patients of run "
                f"{self.run_id} (its {PREDICTIONS}); give one of them, e.g. {examples}"
            )


@dataclass(frozen=True)
class Exported:
    """What :func:`export_sr` wrote, and each patient it skipped with why."""

    written: list[Path] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def finished_run(run_id: str, artifacts: str | os.PathLike) -> FinishedRun:
    """The run ``run_id`` of ``<artifacts>/runs``; ``ValueError`` naming what to do where it
    is missing, not finished or without predictions."""
    folder = runs.run_dir(run_id, artifacts)
    if not folder.is_dir():
        raise ValueError(
            f"no run {run_id!r} in {folder.parent}; give the id of a run there, or --artifacts "
            "the folder that holds it"
        )
    state = runs.status(folder).get("state")
    if state != "finished":
        raise ValueError(f"run {run_id} is {state}; review it once it has finished")
    path = folder / PREDICTIONS
    if not path.is_file():
        raise ValueError(
            f"run {run_id} has no {PREDICTIONS}; evaluate it first: "
            f"python -m nsclc_engine.evaluate {run_id}"
        )
    predictions = pd.read_csv(path, dtype={"patient_id": str})
    return FinishedRun(run_id, folder, runs.read_config(folder), predictions)


def review_entries(artifacts: str | os.PathLike, run_id: str) -> pd.DataFrame:
    """Every verdict and note on the run's patients, one row of :data:`ENTRY_COLUMNS` each,
    by patient, then oldest first (none where the artifacts have no review database: reading
    creates none)."""
    if not review_database_exists(artifacts):
        return pd.DataFrame(columns=list(ENTRY_COLUMNS))
    url = store.review_url(artifacts)
    given = store.verdicts(url, run_id=run_id)
    written = store.notes(url, run_id=run_id)
    frames = [
        frame.reindex(columns=list(ENTRY_COLUMNS))
        for frame in (
            given.rename(
                columns={"verdict_id": "entry_id", "verdict": "code", "verdict_name": "name"}
            ).assign(kind="verdict", withdrawn_by=None, withdrawn_at=None),
            written.rename(
                columns={"note_id": "entry_id", "flag": "code", "flag_name": "name"}
            ).assign(kind="note"),
        )
        if not frame.empty
    ]
    if not frames:
        return pd.DataFrame(columns=list(ENTRY_COLUMNS))
    entries = pd.concat(frames, ignore_index=True)
    entries["name"] = entries.name.fillna(entries.code)  # a code this version no longer names
    # stable: of a patient's entries in one second, verdicts first, each kind by id
    return entries.sort_values(["patient_id", "created_at"], kind="stable", ignore_index=True)


def output_columns(predictions: pd.DataFrame) -> list[str]:
    """The model's outputs among a run's prediction columns: ``y_prob`` (classification),
    ``risk`` and ``survival_<days>d`` (survival)."""
    return [column for column in predictions.columns if OUTPUT_COLUMN.match(column)]


def output_meaning(column: str, label: str) -> str:
    """What an output column (:func:`output_columns`) holds, in words."""
    found = OUTPUT_COLUMN.match(column)
    if found is None:
        raise ValueError(f"{column!r} is no model output column")
    if found.group(2):
        return f"Predicted probability of survival to day {found.group(2)}"
    if column == "risk":
        return "Predicted risk (log hazard; higher is earlier death)"
    return f"Predicted probability of {label}"


def read_ct_evidence(ct_folder: str | os.PathLike, series_uid: str) -> list[pydicom.Dataset]:
    """The headers (no pixels) of every instance of CT series ``series_uid`` in ``ct_folder``,
    by instance number. ``FileNotFoundError`` where the folder is gone; ``ValueError`` where it
    holds no instance of the series or a damaged file."""
    found = []
    for path in list_files(ct_folder):
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True)
        except InvalidDicomError:
            continue  # not a DICOM file
        except Exception as error:  # pydicom raises many types on damaged files
            raise ValueError(f"{path}: unreadable DICOM header ({type(error).__name__})") from None
        if header.get("SeriesInstanceUID") == series_uid:
            found.append(header)
    if not found:
        raise ValueError(f"{ct_folder}: no file of CT series {series_uid}")
    return sorted(found, key=lambda header: int(header.get("InstanceNumber") or 0))


def person_name(author: str) -> str:
    """``author`` as a DICOM person name: the characters that split a name's values and
    groups (``\\``, ``=``) and control characters become spaces, at most 64 characters, and a
    name of one component ends in ``^`` (stated as the family name)."""
    name = re.sub(r"[\\=\x00-\x1f]", " ", author).strip()[:63]
    return name if "^" in name else f"{name}^"


def review_sr(
    run: FinishedRun,
    patient_id: str,
    entries: pd.DataFrame,
    evidence: Sequence[pydicom.Dataset],
) -> hd.sr.ComprehensiveSR:
    """The Comprehensive SR of one patient's ``entries`` (rows of :func:`review_entries`)
    and the run's predictions for them, in the study of ``evidence`` (their CT headers)."""
    rows = run.predictions[run.predictions.patient_id == patient_id]
    outputs = output_columns(run.predictions)
    label = str(run.config.get("label") or "the label")
    root = hd.sr.ContainerContentItem(codes.LN.DiagnosticImagingReport)
    root.ContentSequence = [
        hd.sr.TextContentItem(MODEL_RUN, run.run_id, relationship_type=CONTAINS),
        *(_prediction_item(row, outputs, label) for _, row in rows.iterrows()),
        *(_entry_item(entry) for entry in entries.itertuples()),
    ]
    first = copy.deepcopy(evidence[0])  # the caller's header stays as read
    for keyword in PATIENT_AND_STUDY:
        if keyword not in first:
            setattr(first, keyword, None)
    evidence = [first, *evidence[1:]]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", SINGLE_COMPONENT_NAME, UserWarning)
        report = hd.sr.ComprehensiveSR(
            evidence=evidence,
            content=root,
            series_instance_uid=hd.UID(),
            series_number=SR_SERIES_NUMBER,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer=MANUFACTURER,
            specific_character_set=UTF8,
        )
    report.SeriesDescription = f"Review of model run {run.run_id}"[:64]
    return report


def _prediction_item(row: pd.Series, outputs: list[str], label: str) -> hd.sr.ContentItem:
    container = hd.sr.ContainerContentItem(PREDICTION, relationship_type=CONTAINS)
    no_units = codes.UCUM.NoUnits
    container.ContentSequence = [
        hd.sr.TextContentItem(SPLIT, str(row["split"]), relationship_type=CONTAINS),
        hd.sr.NumContentItem(FOLD, int(row["fold"]), no_units, relationship_type=CONTAINS),
        *(
            hd.sr.NumContentItem(
                _local(column, output_meaning(column, label)),
                float(row[column]),
                no_units,
                relationship_type=CONTAINS,
            )
            for column in outputs
            if pd.notna(row[column])
        ),
    ]
    return container


def _entry_item(entry) -> hd.sr.ContentItem:
    """One verdict or note (a row of :func:`review_entries`) as a container whose observer
    context names its author."""
    verdict = entry.kind == "verdict"
    container = hd.sr.ContainerContentItem(
        VERDICT_ENTRY if verdict else NOTE_ENTRY, relationship_type=CONTAINS
    )
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Person,
        observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(
            name=person_name(entry.author), login_name=entry.author
        ),
    )
    items = [
        *observer,
        hd.sr.CodeContentItem(
            VERDICT if verdict else FLAG,
            _local(entry.code, entry.name),
            relationship_type=CONTAINS,
        ),
    ]
    if entry.text:
        items.append(
            hd.sr.TextContentItem(codes.DCM.Comment, entry.text, relationship_type=CONTAINS)
        )
    items.append(
        hd.sr.DateTimeContentItem(
            codes.DCM.DatetimeOfRecordingOfLogEntry,
            datetime.fromisoformat(entry.created_at),
            relationship_type=CONTAINS,
        )
    )
    if isinstance(entry.withdrawn_at, str):
        withdrawn = f"by {entry.withdrawn_by} on {entry.withdrawn_at}"
        items.append(hd.sr.TextContentItem(WITHDRAWN, withdrawn, relationship_type=CONTAINS))
    container.ContentSequence = items
    return container


def sr_file_names(patient_ids: Iterable[str], run_id: str) -> dict[str, str]:
    """Patient id -> ``review_<run>_<id>.dcm``: characters other than letters, digits, ``_``
    and ``-`` become ``_``, and an id so changed (or one whose name would differ from
    another's by case only) also gets a hash of the id, so that names stay distinct."""
    names: dict[str, str] = {}
    taken: set[str] = set()
    for patient_id in sorted(set(patient_ids)):
        stem = re.sub(r"[^A-Za-z0-9_-]", "_", patient_id)[:100]
        if stem != patient_id or stem.lower() in taken:
            stem += "-" + hashlib.sha256(patient_id.encode()).hexdigest()[:10]
        taken.add(stem.lower())
        names[patient_id] = f"review_{run_id}_{stem}.dcm"
    return names


def export_sr(run: FinishedRun, entries: pd.DataFrame, out_dir: str | os.PathLike) -> Exported:
    """One SR file per patient of ``entries`` (:func:`review_entries`) in ``out_dir``, each
    written atomically; a patient whose CT cannot be read is skipped with a warning naming
    them. ``ValueError`` where the run's cohort is gone (the SR needs the CT)."""
    cohort_folder = runs.resolved_cohort(run.config)
    if cohort_folder is None:
        raise ValueError(
            f"run {run.run_id}: its cohort.csv is gone (cohort folder "
            f"{run.config.get('resolved', {}).get('cohort_dir') or 'not recorded'}), and an SR "
            "references the patient's CT from it; export --format csv instead"
        )
    cohort = load_cohort(cohort_folder).set_index("patient_id")
    names = sr_file_names(entries.patient_id, run.run_id)
    exported = Exported()
    for patient_id, mine in entries.groupby("patient_id", sort=True):
        try:
            if patient_id not in cohort.index or pd.isna(cohort.ct_folder.get(patient_id)):
                raise ValueError(f"no CT folder of theirs in the run's cohort {cohort_folder}")
            ct = cohort.loc[patient_id]
            evidence = read_ct_evidence(ct.ct_folder, ct.ct_series_uid)
        except (OSError, ValueError) as error:
            log.warning("patient %s skipped: CT unreadable (%s)", patient_id, one_line(error))
            exported.skipped[patient_id] = one_line(error)
            continue
        report = review_sr(run, patient_id, mine, evidence)
        path = Path(out_dir) / names[patient_id]
        with atomic_path(path) as temporary:
            report.save_as(temporary)
        exported.written.append(path)
    return exported


def review_table(run: FinishedRun, entries: pd.DataFrame) -> pd.DataFrame:
    """:func:`review_entries` with, per row, the patient's CT study and series (from the
    run's cohort; empty where it is gone) and prediction: split, fold and each model output
    (a patient scored in several rows: the values joined by ``"; "``, in the same order)."""
    cohort_folder = runs.resolved_cohort(run.config)
    ct_columns = ["ct_study_uid", "ct_series_uid"]
    if cohort_folder is None:
        ct = pd.DataFrame(columns=ct_columns, index=pd.Index([], name="patient_id"))
    else:
        ct = load_cohort(cohort_folder).set_index("patient_id")[ct_columns]
    predicted = ["split", "fold", *output_columns(run.predictions)]
    per_patient = run.predictions.groupby("patient_id", sort=False)[predicted].agg(
        lambda values: values.iloc[0] if len(values) == 1 else "; ".join(map(str, values))
    )
    table = entries.join(ct, on="patient_id").join(per_patient, on="patient_id")
    return table.reindex(columns=[*ENTRY_COLUMNS, *ct_columns, *predicted])


def export_csv(run: FinishedRun, entries: pd.DataFrame, out_dir: str | os.PathLike) -> Path:
    """:func:`review_table` as ``<out_dir>/review_<run>.csv``, written atomically (cells that
    a spreadsheet would run as a formula are prefixed with a quote, as ``store.notes_csv``)."""
    table = review_table(run, entries)
    safe = table.astype(object).where(table.notna(), "")
    safe = safe.map(lambda v: f"'{v}" if isinstance(v, str) and v and v[0] in "=+-@\t\r" else v)
    buffer = io.StringIO()
    safe.to_csv(buffer, index=False, quoting=csv.QUOTE_MINIMAL)
    path = Path(out_dir) / f"review_{run.run_id}.csv"
    write_text_atomic(path, buffer.getvalue())
    return path
