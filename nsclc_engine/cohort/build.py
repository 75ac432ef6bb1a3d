"""Cohort building: join imaging and clinical data by PatientID, and say why anyone is left out.

``python -m nsclc_engine.cohort --dicom DIR --clinical CSV --out DIR`` writes

* ``cohort.csv``: one row per included patient (labels, survival, covariates, the CT series
  and RTSTRUCT used, voxel grid, GTV volume and bounding box);
* ``cleaning_report.csv`` / ``.json``: one row per exclusion (patient, scope, reason code,
  detail); scope ``cohort`` removes the patient, scope ``<label>`` only leaves that label empty;
* ``dicom_index.csv`` (every indexed file, to find the files again), ``skipped_files.csv``
  and ``cohort_config.json``.

Each patient gets the first reason that applies, checked in the order of :class:`Reason`.
One broken patient never stops the cohort; input files are only ever read.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import sys
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path

import pandas as pd

from nsclc_engine.atomic import process_exists, swap_folder, write_text_atomic
from nsclc_engine.cohort import dicom_io
from nsclc_engine.cohort.clinical import LABELS, add_labels, label_counts, read_clinical_csv
from nsclc_engine.cohort.contours import gtv_columns
from nsclc_engine.config import add_config_arguments, cli_error, load_config, save_config
from nsclc_engine.parallel import parallel_map, worker_count

log = logging.getLogger(__name__)

PARALLEL_MIN_PATIENTS = 8


class Reason(str, Enum):  # noqa: UP042 (its str() and format() are relied on)
    """Exclusion reason codes, in the order they are checked."""

    DUPLICATE_CLINICAL_ID = "duplicate_clinical_id"
    NO_CLINICAL_ROW = "no_clinical_row"
    NO_IMAGING = "no_imaging"
    REVIEW_EXCLUDED = "review_excluded"  # a reviewer's "exclude from cohort" note
    NO_CT = "no_ct_series"
    NO_RTSTRUCT = "no_rtstruct"
    NO_MATCHING_ROI = "no_matching_roi"
    BAD_GEOMETRY = "bad_slice_geometry"
    UNREADABLE_FILE = "unreadable_file"
    EMPTY_CONTOUR = "empty_contour"
    MISSING_LABEL = "missing_label"
    LABEL_UNDEFINED = "label_undefined"  # scope = a label: the patient stays in the cohort


@dataclass(frozen=True)
class CohortConfig:
    """How imaging is matched and checked.

    ``roi_pattern`` is a case-insensitive regex that must match the whole ROI name.
    """

    roi_pattern: str = r"\s*GTV-1\s*"
    union_matching_rois: bool = False
    min_gtv_voxels: int = 1
    required_label: str = "deadstatus_event"
    workers: int = 0

    def __post_init__(self) -> None:
        try:
            re.compile(self.roi_pattern)
        except re.error as error:
            raise ValueError(
                f"roi_pattern {self.roi_pattern!r} is not a valid regex: {error}"
            ) from None
        if self.required_label not in LABELS:
            raise ValueError(
                f"required_label {self.required_label!r}: choose one of {sorted(LABELS)}"
            )
        if self.min_gtv_voxels < 1 or self.workers < 0:
            raise ValueError(
                f"min_gtv_voxels={self.min_gtv_voxels}, workers={self.workers}: need "
                "min_gtv_voxels >= 1 and workers >= 0 (0 = all cores)"
            )


class PatientExcluded(Exception):
    def __init__(self, reason: Reason, detail: str):
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class CohortResult:
    cohort: pd.DataFrame
    report: pd.DataFrame
    summary: dict
    index: dicom_io.DicomIndex


def inspect_patient_imaging(
    patient_id: str,
    headers: Sequence[dicom_io.DicomHeader],
    config: CohortConfig,
    skipped_by_series: dict[str, list[dicom_io.SkippedFile]] | None = None,
) -> dict:
    """Choose the CT series and ROI of one patient, read and check them, measure the GTV.

    ``skipped_by_series``: files that could not be indexed, by the CT series whose folder
    holds them (a damaged slice is otherwise invisible). Returns the imaging columns of
    ``cohort.csv``; raises :class:`PatientExcluded`.
    """
    ct_series, rtstructs, candidates = _pair_series(headers)
    rtstruct, series_uid, matched_by, rois = _choose_rois(patient_id, candidates, config)
    unreadable = skipped_by_series.get(series_uid, []) if skipped_by_series else []
    if unreadable:
        raise PatientExcluded(
            Reason.UNREADABLE_FILE,
            f"{len(unreadable)} file(s) in the folder of CT series {series_uid} could not be "
            f"read: {unreadable[0].reason}",
        )
    try:
        geometry = dicom_io.ct_series_geometry(ct_series[series_uid])
    except dicom_io.SeriesGeometryError as error:
        raise PatientExcluded(Reason.BAD_GEOMETRY, str(error)) from None
    missing = rtstruct.images_referenced_in(series_uid) - set(geometry.sop_uids)
    if missing:
        raise PatientExcluded(
            Reason.BAD_GEOMETRY,
            f"{len(missing)} CT image(s) that the RTSTRUCT {rtstruct.path} lists are missing "
            f"from series {series_uid} (e.g. SOPInstanceUID {sorted(missing)[0]})",
        )
    try:
        volume = dicom_io.read_ct_volume(geometry, patient_id, series_uid)
    except dicom_io.DicomReadError as error:
        raise PatientExcluded(Reason.UNREADABLE_FILE, str(error)) from None

    rasterised = dicom_io.roi_mask(geometry, rois)
    gtv_voxels = int(rasterised.mask.sum())
    roi_names = "+".join(roi.name for roi in rois)
    if gtv_voxels < max(config.min_gtv_voxels, 1):
        n_contours = sum(len(roi.contours_mm) for roi in rois)
        raise PatientExcluded(
            Reason.EMPTY_CONTOUR,
            f"ROI {roi_names} covers {gtv_voxels} voxels (minimum {config.min_gtv_voxels}): "
            f"{n_contours} closed contours, {rasterised.n_contours_degenerate} degenerate, "
            f"{rasterised.n_contours_outside} outside the CT",
        )
    if rasterised.n_contours_outside:
        raise PatientExcluded(
            Reason.BAD_GEOMETRY,
            f"{rasterised.n_contours_outside} contour(s) of {roi_names} lie beyond the ends of "
            f"CT series {series_uid}: slices are missing or the RTSTRUCT belongs to another scan",
        )

    first = ct_series[series_uid][0]
    paths = geometry.paths
    ct_folders = {os.path.dirname(path) for path in paths}
    return {
        "patient_id": patient_id,
        "ct_study_uid": first.study_uid,
        "ct_series_uid": series_uid,
        "frame_of_reference_uid": first.frame_of_reference_uid,
        "ct_matched_by": matched_by,
        "ct_folder": ct_folders.pop() if len(ct_folders) == 1 else os.path.commonpath(paths),
        "n_ct_files": len(paths),
        "rtstruct_path": rtstruct.path,
        "rtstruct_sop_uid": rtstruct.sop_uid,
        "n_rtstructs": len(rtstructs),
        "roi_names": roi_names,
    } | gtv_columns(geometry, volume.hu, rasterised.mask)


def _pair_series(headers: Sequence[dicom_io.DicomHeader]) -> tuple[dict, list, list]:
    """The patient's CT series, its RTSTRUCTs, and the (RTSTRUCT, CT series, how matched)
    pairs: by the RTSTRUCT's series reference first, else by frame of reference (the largest
    series). Raises :class:`PatientExcluded` where no pair exists."""
    ct_series: dict[str, list[dicom_io.DicomHeader]] = {}
    rtstructs = []
    for header in headers:
        if header.modality == "CT":
            ct_series.setdefault(header.series_uid, []).append(header)
        elif header.modality == "RTSTRUCT":
            rtstructs.append(header)
    if not ct_series:
        modalities = sorted({h.modality for h in headers})
        raise PatientExcluded(Reason.NO_CT, f"no CT image files; modalities present: {modalities}")
    if not rtstructs:
        raise PatientExcluded(
            Reason.NO_RTSTRUCT,
            f"no RTSTRUCT among {len(headers)} files; CT series: {sorted(ct_series)}",
        )

    candidates = []  # (rtstruct, ct series uid, how it was matched); series references first
    for rtstruct in sorted(rtstructs, key=lambda h: h.path):
        referenced = [uid for uid in rtstruct.referenced_series_uids if uid in ct_series]
        if referenced:
            candidates.append((rtstruct, referenced[0], "referenced_series"))
            continue
        same_frame = [
            uid
            for uid, series in ct_series.items()
            if series[0].frame_of_reference_uid in rtstruct.referenced_frame_uids
        ]
        if same_frame:
            largest = max(same_frame, key=lambda uid: len(ct_series[uid]))
            candidates.append((rtstruct, largest, "frame_of_reference"))
    candidates.sort(key=lambda candidate: candidate[2] != "referenced_series")
    if not candidates:
        wanted = sorted({uid for h in rtstructs for uid in h.referenced_series_uids})
        raise PatientExcluded(
            Reason.NO_CT,
            f"the RTSTRUCT references CT series {wanted}, none of which is present "
            f"(CT series present: {sorted(ct_series)})",
        )

    return ct_series, rtstructs, candidates


def _choose_rois(patient_id: str, candidates: list, config: CohortConfig) -> tuple:
    """``(rtstruct, series_uid, matched_by, rois)``: the first pair whose ROIs matching the
    pattern hold contours, else the first with a matching name; one ROI unless asked to
    combine them."""
    # the first candidate whose matching ROIs hold contours; else the first with a matching name
    all_names: list[str] = []
    matching = []
    for rtstruct, series_uid, matched_by in candidates:
        try:
            rois, names = dicom_io.read_rtstruct_rois(rtstruct.path, config.roi_pattern)
        except dicom_io.DicomReadError as error:
            raise PatientExcluded(Reason.UNREADABLE_FILE, str(error)) from None
        all_names.extend(names)
        if rois:
            matching.append((rtstruct, series_uid, matched_by, rois))
    if not matching:
        raise PatientExcluded(
            Reason.NO_MATCHING_ROI,
            f"no ROI name matches the pattern {config.roi_pattern}; "
            f"ROIs present: {sorted(set(all_names))}",
        )
    with_contours = [m for m in matching if any(len(roi.contours_mm) for roi in m[3])]
    rtstruct, series_uid, matched_by, rois = (with_contours or matching)[0]
    if not config.union_matching_rois and len(rois) > 1:
        log.warning(
            "%s: %d ROIs match %s (%s); using %s (set union_matching_rois to combine them)",
            patient_id,
            len(rois),
            config.roi_pattern,
            [roi.name for roi in rois],
            rois[0].name,
        )
        rois = rois[:1]

    return rtstruct, series_uid, matched_by, rois


def _inspect_or_exclude(task: tuple) -> dict:
    patient_id, headers, config, skipped_by_series = task
    try:
        return inspect_patient_imaging(patient_id, headers, config, skipped_by_series)
    except PatientExcluded as excluded:
        return {"patient_id": patient_id, "reason": excluded.reason, "detail": excluded.detail}
    except Exception as error:  # one broken patient never stops the cohort
        log.exception("%s: unexpected error while reading imaging", patient_id)
        return {
            "patient_id": patient_id,
            "reason": Reason.UNREADABLE_FILE,
            "detail": f"unexpected {type(error).__name__}: {error}",
        }


def build_cohort(
    index: dicom_io.DicomIndex,
    clinical: pd.DataFrame,
    config: CohortConfig,
    show_progress: bool = True,
    review_exclusions: dict[str, str] | None = None,
) -> CohortResult:
    """Join an index of DICOM headers with the clinical table (see the module docstring).

    ``review_exclusions``: patient -> why, the reviewers' "exclude from cohort" notes in force
    (:func:`nsclc_engine.review.store.exclusions`); each becomes a ``review_excluded`` row."""
    exclusions: list[dict] = []

    def exclude(patient_id: str, reason: Reason, detail: str, scope: str = "cohort") -> None:
        exclusions.append(
            {"patient_id": patient_id, "scope": scope, "reason": reason.value, "detail": detail}
        )

    headers_by_patient: dict[str, list[dicom_io.DicomHeader]] = {}
    for header in index.headers:
        headers_by_patient.setdefault(header.patient_id, []).append(header)
    skipped_by_series = _skipped_by_series(index)

    counts = clinical["patient_id"].value_counts()
    duplicated = set(counts[counts > 1].index)
    for patient_id in sorted(duplicated):
        exclude(
            patient_id,
            Reason.DUPLICATE_CLINICAL_ID,
            f"{counts[patient_id]} rows in the clinical table; keep one and rerun",
        )
    clinical_ids = set(clinical["patient_id"]) - duplicated
    for patient_id in sorted(set(headers_by_patient) - set(clinical["patient_id"])):
        exclude(
            patient_id,
            Reason.NO_CLINICAL_ROW,
            f"{len(headers_by_patient[patient_id])} DICOM files but no row in the clinical table",
        )
    for patient_id in sorted(clinical_ids - set(headers_by_patient)):
        exclude(patient_id, Reason.NO_IMAGING, "clinical row but no DICOM file with this PatientID")
    reviewed = clinical_ids & set(headers_by_patient) & set(review_exclusions or {})
    for patient_id in sorted(reviewed):
        exclude(patient_id, Reason.REVIEW_EXCLUDED, review_exclusions[patient_id])

    to_inspect = sorted((clinical_ids & set(headers_by_patient)) - reviewed)
    tasks = [
        (pid, headers_by_patient[pid], config, skipped_by_series.get(pid, {})) for pid in to_inspect
    ]
    workers = worker_count(config.workers, len(tasks), PARALLEL_MIN_PATIENTS)
    imaging_rows = []
    results = parallel_map(
        _inspect_or_exclude, tasks, workers, "Reading CT + RTSTRUCT", "patient", show_progress
    )
    for result in results:
        if "reason" in result:
            exclude(result["patient_id"], result["reason"], result["detail"])
        else:
            imaging_rows.append(result)

    labelled, unlabelled = add_labels(clinical[clinical["patient_id"].isin(clinical_ids)])
    # the columns come from inspect_patient_imaging's rows; with none, only the join key
    imaging = pd.DataFrame(imaging_rows) if imaging_rows else pd.DataFrame(columns=["patient_id"])
    cohort = labelled.merge(imaging, on="patient_id", how="inner")
    missing = cohort[config.required_label].isna()
    for patient_id in cohort.loc[missing, "patient_id"]:
        detail = unlabelled.loc[
            (unlabelled.patient_id == patient_id) & (unlabelled.label == config.required_label),
            "detail",
        ]
        exclude(
            patient_id, Reason.MISSING_LABEL, f"no {config.required_label} label: {detail.iloc[0]}"
        )
    cohort = cohort[~missing].sort_values("patient_id").reset_index(drop=True)
    for row in unlabelled[unlabelled.patient_id.isin(cohort.patient_id)].itertuples():
        exclude(row.patient_id, Reason.LABEL_UNDEFINED, row.detail, scope=row.label)

    report = pd.DataFrame(exclusions, columns=["patient_id", "scope", "reason", "detail"])
    report = (
        report.assign(label_scope=report.scope != "cohort")
        .sort_values(["label_scope", "scope", "patient_id"])
        .drop(columns="label_scope")
        .reset_index(drop=True)
    )
    summary = summarise(
        cohort,
        report,
        index,
        n_clinical_rows=len(clinical),
        n_imaging_patients=len(headers_by_patient),
    )
    return CohortResult(cohort, report, summary, index)


def _skipped_by_series(
    index: dicom_io.DicomIndex,
) -> dict[str, dict[str, list[dicom_io.SkippedFile]]]:
    """patient -> CT series -> skipped files lying in a folder that holds only that series."""
    series_in_folder: dict[str, set[tuple[str, str, str]]] = {}
    for header in index.headers:
        key = (header.patient_id, header.series_uid, header.modality)
        series_in_folder.setdefault(os.path.dirname(header.path), set()).add(key)
    result: dict[str, dict[str, list[dicom_io.SkippedFile]]] = {}
    for skipped in index.skipped:
        owners = series_in_folder.get(os.path.dirname(skipped.path), set())
        if len(owners) == 1:
            patient_id, series_uid, modality = next(iter(owners))
            if modality == "CT":
                result.setdefault(patient_id, {}).setdefault(series_uid, []).append(skipped)
    return result


def summarise(
    cohort: pd.DataFrame,
    report: pd.DataFrame,
    index: dicom_io.DicomIndex,
    n_clinical_rows: int,
    n_imaging_patients: int,
) -> dict:
    """Counts for the end-of-run summary and ``cleaning_report.json``."""
    removed = report[report.scope == "cohort"]
    return {
        "n_files_indexed": len(index.headers),
        "n_files_skipped": len(index.skipped),
        "n_imaging_patients": n_imaging_patients,
        "n_clinical_rows": n_clinical_rows,
        "n_included": len(cohort),
        "n_excluded": int(removed.patient_id.nunique()),
        "excluded_by_reason": dict(Counter(removed.reason)),
        "labels": {name: label_counts(cohort, name) for name in LABELS},
    }


def format_summary(summary: dict) -> str:
    lines = [
        f"Indexed {summary['n_files_indexed']} DICOM files "
        f"({summary['n_files_skipped']} skipped) for {summary['n_imaging_patients']} patients; "
        f"{summary['n_clinical_rows']} clinical rows.",
        f"Included {summary['n_included']} patients; excluded {summary['n_excluded']}.",
    ]
    lines += [
        f"  excluded, {reason}: {count}"
        for reason, count in sorted(summary["excluded_by_reason"].items())
    ]
    for name, counts in summary["labels"].items():
        lines.append(
            f"  label {name}: {counts['positive']} positive, {counts['negative']} negative, "
            f"{counts['unlabelled']} without a label"
        )
    return "\n".join(lines)


OUTPUTS = (
    "dicom_index.csv",
    "skipped_files.csv",
    "cleaning_report.csv",
    "cleaning_report.json",
    "cohort_config.json",
    "cohort.csv",
)


def write_outputs(result: CohortResult, config: CohortConfig, out_dir: str | os.PathLike) -> None:
    """Write the cohort files as one unit: into a new folder beside ``out_dir``, swapped in
    whole (:func:`nsclc_engine.atomic.swap_folder`), so a reader sees the previous build or
    this one, never a mix, and a killed build leaves the previous one as it was."""
    out_dir = Path(out_dir)
    prefix = f".{out_dir.name}.building-"
    for left in out_dir.parent.glob(f"{prefix}*"):  # builds whose process died midway
        pid = left.name.removeprefix(prefix).split("-")[0]
        if pid.isdigit() and not process_exists(int(pid)):
            shutil.rmtree(left, ignore_errors=True)
    building = out_dir.with_name(f"{prefix}{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        _write_files(result, config, building)
        swap_folder(building, out_dir)
    finally:
        shutil.rmtree(building, ignore_errors=True)


def _check_reusable(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir}: is a file; give a folder for the cohort")
    others = (
        sorted(p.name for p in out_dir.iterdir() if p.name not in OUTPUTS)
        if out_dir.is_dir()
        else []
    )
    if others:
        raise ValueError(
            f"--out {out_dir}: holds other files ({', '.join(others[:5])}); a rebuild replaces "
            "the whole folder, so give a new or a cohort folder"
        )


def _write_files(result: CohortResult, config: CohortConfig, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "dicom_index.csv", result.index.to_frame().to_csv(index=False))
    skipped = pd.DataFrame([asdict(s) for s in result.index.skipped], columns=["path", "reason"])
    write_text_atomic(out_dir / "skipped_files.csv", skipped.to_csv(index=False))
    write_text_atomic(out_dir / "cleaning_report.csv", result.report.to_csv(index=False))
    report_json = {
        "summary": result.summary,
        "exclusions": result.report.to_dict(orient="records"),
        "skipped_files": skipped.to_dict(orient="records"),
    }
    write_text_atomic(out_dir / "cleaning_report.json", json.dumps(report_json, indent=2) + "\n")
    save_config(config, out_dir / "cohort_config.json")
    write_text_atomic(out_dir / "cohort.csv", result.cohort.to_csv(index=False))


def run_cohort(
    dicom_dir: str | os.PathLike,
    clinical_csv: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: CohortConfig,
    show_progress: bool = True,
    review_exclusions: dict[str, str] | None = None,
) -> CohortResult:
    """Index ``dicom_dir``, read ``clinical_csv``, build the cohort and write it to ``out_dir``
    (``review_exclusions``: see :func:`build_cohort`)."""
    if not Path(dicom_dir).is_dir():
        kind = "is a file" if Path(dicom_dir).exists() else "does not exist"
        raise ValueError(f"--dicom {dicom_dir}: {kind}; give the folder holding the DICOM files")
    _check_reusable(Path(out_dir))
    clinical = read_clinical_csv(clinical_csv)
    index = dicom_io.index_dicom_tree(
        dicom_dir, workers=config.workers, show_progress=show_progress
    )
    if not index.headers:
        raise dicom_io.no_dicom_error(dicom_dir, len(index.skipped))
    result = build_cohort(index, clinical, config, show_progress, review_exclusions)
    write_outputs(result, config, out_dir)
    return result


def load_cohort(out_dir: str | os.PathLike) -> pd.DataFrame:
    """Read a ``cohort.csv`` written by :func:`run_cohort` with its dtypes."""
    return pd.read_csv(
        Path(out_dir) / "cohort.csv",
        dtype={"patient_id": str},
        keep_default_na=False,
        na_values=[""],
    )


def load_cleaning_report(out_dir: str | os.PathLike) -> dict:
    """``cleaning_report.json`` of a cohort folder: summary, exclusions, skipped files."""
    return json.loads((Path(out_dir) / "cleaning_report.json").read_text())


def exclusions_by_reason(report: pd.DataFrame) -> pd.DataFrame:
    """Exclusion counts per (scope, reason), cohort-level first, for display."""
    counts = report.groupby(["scope", "reason"]).size().rename("patients").reset_index()
    counts["cohort_level"] = counts.scope == "cohort"
    counts = counts.sort_values(["cohort_level", "patients"], ascending=[False, False])
    return counts.drop(columns="cohort_level").reset_index(drop=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nsclc_engine.cohort",
        description="Build the cohort (cohort.csv) and cleaning report from DICOM + clinical CSV.",
    )
    parser.add_argument("--dicom", required=True, help="folder with the DICOM files, any layout")
    parser.add_argument("--clinical", required=True, help="Lung1 clinical CSV (v3 columns)")
    parser.add_argument("--out", required=True, help="output folder")
    add_config_arguments(parser, CohortConfig)
    parser.add_argument("--roi-pattern", help="ROI name regex (case-insensitive, full match)")
    parser.add_argument(
        "--union-rois",
        action="store_true",
        help="take the union of all matching ROIs, e.g. with --roi-pattern 'GTV.*'",
    )
    parser.add_argument("--workers", type=int, help="processes (0 = all cores, 1 = serial)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")

    overrides = list(args.set)
    if args.roi_pattern is not None:
        overrides.append(f"roi_pattern={args.roi_pattern}")
    if args.union_rois:
        overrides.append("union_matching_rois=true")
    if args.workers is not None:
        overrides.append(f"workers={args.workers}")
    try:
        config = load_config(CohortConfig, args.config, overrides)
        result = run_cohort(
            args.dicom, args.clinical, args.out, config, show_progress=not args.quiet
        )
    except (ValueError, OSError) as error:
        return cli_error(error)
    print(format_summary(result.summary))
    print(f"Wrote cohort.csv and cleaning_report.csv/.json to {args.out}")
    if result.cohort.empty:
        print(
            f"error: no usable patient in {args.dicom}: see "
            f"{Path(args.out) / 'cleaning_report.csv'} "
            "for why each patient was excluded",
            file=sys.stderr,
        )
        return 1
    return 0
