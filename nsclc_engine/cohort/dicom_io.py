"""DICOM reading: the only module of the engine that touches pydicom and SimpleITK.

Three layers, from cheap to expensive:

1. :func:`index_dicom_tree` walks a folder of any layout and reads headers only
   (``stop_before_pixels``), in parallel; unreadable and non-DICOM files are skipped and listed.
2. :func:`ct_series_geometry` checks a CT series from its headers alone (one orientation, one
   pixel grid, evenly spaced slices ordered along the slice normal) and fixes the file order.
3. :func:`read_ct_volume` reads the pixels in Hounsfield units; :func:`read_rtstruct_rois`
   reads contours, and :func:`roi_mask` rasterises them onto the CT grid.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from nsclc_engine.cohort.contours import RasterisedRoi, rasterise_contours
from nsclc_engine.parallel import parallel_map, worker_count

log = logging.getLogger(__name__)

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
RT_STRUCTURE_SET_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"

# geometry tolerances: positions in mm, direction cosines unitless
POSITION_TOLERANCE_MM = 0.01
ORIENTATION_TOLERANCE = 1e-4
SLICE_GAP_TOLERANCE = 0.1  # relative deviation of a slice step from the median step
PARALLEL_MIN_FILES = 400  # below this, process start-up costs more than it saves


class DicomReadError(ValueError):
    """A file could not be read; the message names the file and what was wrong."""


class SeriesGeometryError(ValueError):
    """A CT series whose slices do not form one regular volume."""


@dataclass(frozen=True)
class DicomHeader:
    """What the index keeps of one file (headers only)."""

    path: str
    size_bytes: int
    mtime_ns: int
    modality: str
    patient_id: str
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    frame_of_reference_uid: str = ""
    instance_number: int | None = None
    image_position_mm: tuple[float, float, float] | None = None
    image_orientation: tuple[float, ...] | None = None
    pixel_spacing_mm: tuple[float, float] | None = None
    rows: int | None = None
    columns: int | None = None
    referenced_series_uids: tuple[str, ...] = ()
    referenced_frame_uids: tuple[str, ...] = ()
    # RTSTRUCT: (series UID, SOP UIDs of its images listed in ContourImageSequence)
    referenced_images: tuple[tuple[str, tuple[str, ...]], ...] = ()
    roi_names: tuple[str, ...] = ()

    def images_referenced_in(self, series_uid: str) -> set[str]:
        """SOP UIDs of the CT images of ``series_uid`` that this RTSTRUCT lists."""
        return {
            uid
            for series, images in self.referenced_images
            if series == series_uid
            for uid in images
            if uid
        }


@dataclass(frozen=True)
class SkippedFile:
    path: str
    reason: str


@dataclass
class DicomIndex:
    headers: list[DicomHeader] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)

    def to_frame(self) -> pd.DataFrame:
        """One row per indexed file; tuples are written as ``|``-joined strings."""
        columns = [name for name in DicomHeader.__dataclass_fields__ if name != "referenced_images"]
        rows = []
        for header in self.headers:
            row = {}
            for name in columns:
                value = getattr(header, name)
                if isinstance(value, tuple):
                    value = "|".join(str(v) for v in value)
                row[name] = value
            rows.append(row)
        frame = pd.DataFrame(rows, columns=columns)
        for name in ("size_bytes", "mtime_ns", "instance_number", "rows", "columns"):
            frame[name] = frame[name].astype("Int64")
        return frame


def read_index_csv(path: str | os.PathLike) -> list[DicomHeader]:
    """Headers back from a ``dicom_index.csv`` written by :meth:`DicomIndex.to_frame`."""
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    numeric_tuples = {"image_position_mm", "image_orientation", "pixel_spacing_mm"}
    text_tuples = {"referenced_series_uids", "referenced_frame_uids", "roi_names"}
    integers = {"size_bytes", "mtime_ns", "instance_number", "rows", "columns"}
    headers = []
    for record in table.to_dict(orient="records"):
        values: dict = {}
        for name, raw in record.items():
            if name in numeric_tuples:
                values[name] = tuple(float(v) for v in raw.split("|")) if raw else None
            elif name in text_tuples:
                values[name] = tuple(raw.split("|")) if raw else ()
            elif name in integers:
                values[name] = int(raw) if raw else None
            else:
                values[name] = raw
        headers.append(DicomHeader(**values))
    return headers


@dataclass(frozen=True)
class SeriesGeometry:
    """A checked CT series: files ordered along the slice normal and the voxel grid.

    Arrays built from it are indexed ``[z, y, x]``; ``spacing_mm`` is ``(z, y, x)``;
    ``direction`` has one row per array axis in (x, y, z) order, each a unit vector in patient
    coordinates (mm), so ``patient = origin + direction.T @ (index_xyz * spacing_xyz)``.
    """

    paths: tuple[str, ...]
    sop_uids: tuple[str, ...]
    shape_zyx: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]
    direction: tuple[tuple[float, float, float], ...]

    def patient_to_voxel(self, points_mm: np.ndarray) -> np.ndarray:
        """Patient coordinates ``(n, 3)`` mm -> continuous voxel indices ``(n, 3)`` as (x, y, z)."""
        offset = np.asarray(points_mm, dtype=np.float64) - np.asarray(self.origin_mm)
        spacing_xyz = np.asarray(self.spacing_mm[::-1])
        return offset @ np.asarray(self.direction).T / spacing_xyz

    def voxel_to_patient(self, index_xyz: np.ndarray) -> np.ndarray:
        """Continuous voxel indices ``(n, 3)`` as (x, y, z) -> patient coordinates (mm)."""
        spacing_xyz = np.asarray(self.spacing_mm[::-1])
        scaled = np.asarray(index_xyz, dtype=np.float64) * spacing_xyz
        return scaled @ np.asarray(self.direction) + np.asarray(self.origin_mm)

    @property
    def voxel_volume_mm3(self) -> float:
        return float(np.prod(self.spacing_mm))


@dataclass(frozen=True)
class CtVolume:
    """A CT series in Hounsfield units, ``hu[z, y, x]`` float32, with its grid."""

    hu: np.ndarray
    geometry: SeriesGeometry
    patient_id: str
    series_uid: str


@dataclass(frozen=True)
class RoiContours:
    """Closed planar contours of one ROI in patient coordinates, each ``(n, 3)`` mm."""

    name: str
    number: int
    contours_mm: tuple[np.ndarray, ...]


def read_header(path: str | os.PathLike) -> DicomHeader:
    """Read one file's header (no pixel data). Raises :class:`DicomReadError`."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = str(path)
    stat = os.stat(path)
    if stat.st_size == 0:
        raise DicomReadError(f"{path}: empty file (0 bytes)")
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        # pydicom converts values lazily: damaged elements raise here, not in dcmread
        return _header_from_dataset(path, stat, ds)
    except InvalidDicomError:
        raise DicomReadError(f"{path}: not a DICOM file (no DICM preamble)") from None
    except DicomReadError:
        raise
    except Exception as error:  # pydicom raises many types on damaged files
        raise DicomReadError(
            f"{path}: unreadable DICOM header ({type(error).__name__}: {error})"
        ) from None


def _header_from_dataset(path: str, stat: os.stat_result, ds) -> DicomHeader:
    modality = str(ds.get("Modality", "")).upper()
    if not ds.get("SOPInstanceUID") or not modality:
        raise DicomReadError(f"{path}: DICOM file without SOPInstanceUID or Modality")
    patient_id = str(ds.get("PatientID", "")).strip()
    if not patient_id:
        raise DicomReadError(f"{path}: DICOM file without PatientID, so it cannot be joined")

    referenced_series: list[str] = []
    referenced_frames: list[str] = []
    referenced_images: list[tuple[str, tuple[str, ...]]] = []
    roi_names: list[str] = []
    if modality == "RTSTRUCT":
        for frame in ds.get("ReferencedFrameOfReferenceSequence", []):
            referenced_frames.append(str(frame.get("FrameOfReferenceUID", "")))
            for study in frame.get("RTReferencedStudySequence", []):
                for series in study.get("RTReferencedSeriesSequence", []):
                    series_uid = str(series.get("SeriesInstanceUID", ""))
                    referenced_series.append(series_uid)
                    images = tuple(
                        str(image.get("ReferencedSOPInstanceUID", ""))
                        for image in series.get("ContourImageSequence", [])
                    )
                    referenced_images.append((series_uid, images))
        roi_names = [str(roi.get("ROIName", "")) for roi in ds.get("StructureSetROISequence", [])]

    return DicomHeader(
        path=path,
        size_bytes=stat.st_size,
        mtime_ns=stat.st_mtime_ns,
        modality=modality,
        patient_id=patient_id,
        study_uid=str(ds.get("StudyInstanceUID", "")),
        series_uid=str(ds.get("SeriesInstanceUID", "")),
        sop_uid=str(ds.SOPInstanceUID),
        sop_class_uid=str(ds.get("SOPClassUID", "")),
        frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "")),
        instance_number=_optional_int(ds.get("InstanceNumber")),
        image_position_mm=_optional_floats(ds.get("ImagePositionPatient"), 3),
        image_orientation=_optional_floats(ds.get("ImageOrientationPatient"), 6),
        pixel_spacing_mm=_optional_floats(ds.get("PixelSpacing"), 2),
        rows=_optional_int(ds.get("Rows")),
        columns=_optional_int(ds.get("Columns")),
        referenced_series_uids=tuple(uid for uid in referenced_series if uid),
        referenced_frame_uids=tuple(uid for uid in referenced_frames if uid),
        referenced_images=tuple(referenced_images),
        roi_names=tuple(roi_names),
    )


def _read_header_or_skip(path: str) -> DicomHeader | SkippedFile:
    try:
        return read_header(path)
    except (DicomReadError, OSError) as error:
        return SkippedFile(path, str(error))
    except Exception as error:  # never let one file stop the index
        return SkippedFile(path, f"{path}: {type(error).__name__}: {error}")


def check_has_dicom(root: str | os.PathLike) -> None:
    """ValueError naming ``root`` unless some file under it is DICOM (stops at the first one),
    so a wrong folder fails in a line before any run or cohort is made."""
    paths = list_files(root)
    if not any(isinstance(_read_header_or_skip(path), DicomHeader) for path in paths):
        raise no_dicom_error(root, len(paths))


def no_dicom_error(root: str | os.PathLike, other_files: int) -> ValueError:
    """The one message for a ``--dicom`` folder without a DICOM file."""
    return ValueError(
        f"--dicom {root}: no DICOM files found ({other_files} other files); give the folder "
        "holding the CT and RTSTRUCT files"
    )


def list_files(root: str | os.PathLike) -> list[str]:
    """Every regular file under ``root``, in a stable order, hidden files and folders skipped.

    Links to folders are not followed; a link to a file is kept only if it resolves inside
    ``root`` (a data root holds against links out of it): one that leaves it is skipped with a
    warning naming the link, never its target."""
    root = Path(os.path.abspath(root))
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder; pass the folder holding the DICOM files")
    inside = os.path.realpath(root)
    paths: list[str] = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        for name in sorted(files):
            path = os.path.join(folder, name)
            if name.startswith("."):
                continue
            if os.path.islink(path) and not _resolves_inside(path, inside):
                log.warning("%s: a link out of the folder %s is skipped", path, root)
                continue
            paths.append(path)
    return paths


def _resolves_inside(path: str, folder: str) -> bool:
    resolved = os.path.realpath(path)
    return os.path.commonpath([resolved, folder]) == folder


def index_dicom_tree(
    root: str | os.PathLike, workers: int = 0, show_progress: bool = True
) -> DicomIndex:
    """Index every DICOM file under ``root`` by header (any folder layout).

    ``workers``: processes to use; 0 picks the CPU count, 1 reads serially. Files that are not
    DICOM, empty or unreadable are skipped with a warning naming them.
    """
    paths = list_files(root)
    index = DicomIndex()
    n_workers = worker_count(workers, len(paths), PARALLEL_MIN_FILES)
    results = parallel_map(
        _read_header_or_skip,
        paths,
        n_workers,
        "Indexing DICOM headers",
        "file",
        show_progress,
        chunksize=64,
    )
    for result in results:
        (index.skipped if isinstance(result, SkippedFile) else index.headers).append(result)
    for skipped in index.skipped:
        log.warning("skipped %s", skipped.reason)
    return index


def ct_series_geometry(headers: Sequence[DicomHeader]) -> SeriesGeometry:
    """Order a CT series along its slice normal and check it forms one regular grid.

    Raises :class:`SeriesGeometryError` naming the series and the problem: missing position or
    orientation, mixed orientations or pixel grids, two slices at one position, a gap (missing
    slice) or a sheared stack.
    """
    if not headers:
        raise SeriesGeometryError("empty CT series")
    series = headers[0].series_uid
    for header in headers:
        if header.image_position_mm is None or header.image_orientation is None:
            raise SeriesGeometryError(
                f"series {series}: {header.path} has no ImagePositionPatient or "
                "ImageOrientationPatient, so slices cannot be placed"
            )
        if header.pixel_spacing_mm is None or not header.rows or not header.columns:
            raise SeriesGeometryError(
                f"series {series}: {header.path} has no PixelSpacing/Rows/Columns"
            )
    orientations = np.array([h.image_orientation for h in headers])
    if np.abs(orientations - orientations[0]).max() > ORIENTATION_TOLERANCE:
        odd = headers[int(np.abs(orientations - orientations[0]).max(axis=1).argmax())]
        raise SeriesGeometryError(
            f"series {series}: inconsistent ImageOrientationPatient "
            f"({odd.path} has {odd.image_orientation}, first slice {headers[0].image_orientation})"
        )
    grids = {(h.rows, h.columns, h.pixel_spacing_mm) for h in headers}
    if len(grids) > 1:
        raise SeriesGeometryError(
            f"series {series}: slices with different Rows/Columns/PixelSpacing: {sorted(grids)}"
        )
    row_direction = np.array(orientations[0][:3])
    column_direction = np.array(orientations[0][3:])
    normal = np.cross(row_direction, column_direction)
    if abs(np.linalg.norm(normal) - 1.0) > 1e-3:
        raise SeriesGeometryError(f"series {series}: ImageOrientationPatient is not orthonormal")

    positions = np.array([h.image_position_mm for h in headers], dtype=np.float64)
    along_normal = positions @ normal
    order = np.argsort(along_normal, kind="stable")
    positions, along_normal = positions[order], along_normal[order]
    ordered = [headers[i] for i in order]
    if len(ordered) < 2:
        raise SeriesGeometryError(f"series {series}: a single slice is not a volume")
    steps = np.diff(along_normal)
    duplicate = np.flatnonzero(steps < POSITION_TOLERANCE_MM)
    if duplicate.size:
        first, second = ordered[duplicate[0]], ordered[duplicate[0] + 1]
        raise SeriesGeometryError(
            f"series {series}: two slices at the same position {along_normal[duplicate[0]]:.2f} mm "
            f"({first.path}, {second.path}); remove the duplicate file"
        )
    slice_step = float(along_normal[-1] - along_normal[0]) / (len(ordered) - 1)
    irregular = np.flatnonzero(np.abs(steps - slice_step) > SLICE_GAP_TOLERANCE * slice_step)
    if irregular.size:
        at = irregular[0]
        raise SeriesGeometryError(
            f"series {series}: uneven slice spacing ({steps[at]:.2f} mm between "
            f"{ordered[at].path} and {ordered[at + 1].path}, mean {slice_step:.2f} mm); "
            "a slice is missing or the series mixes reconstructions"
        )
    # small steps that are each within tolerance can still add up to slices placed wrongly
    on_grid = along_normal[0] + slice_step * np.arange(len(ordered))
    drift = np.abs(along_normal - on_grid)
    if drift.max() > SLICE_GAP_TOLERANCE * slice_step:
        at = int(drift.argmax())
        raise SeriesGeometryError(
            f"series {series}: slice positions are not evenly spaced ({ordered[at].path} lies "
            f"{drift[at]:.2f} mm off a regular {slice_step:.2f} mm grid); resample the series"
        )
    in_plane_drift = (positions - positions[0]) - np.outer(along_normal - along_normal[0], normal)
    if np.abs(in_plane_drift).max() > max(0.1 * min(ordered[0].pixel_spacing_mm), 0.05):
        raise SeriesGeometryError(
            f"series {series}: slice positions drift in-plane (gantry tilt or shear); "
            "resample the series to an orthogonal grid first"
        )
    row_spacing, column_spacing = ordered[
        0
    ].pixel_spacing_mm  # DICOM: (between rows, between columns)
    return SeriesGeometry(
        paths=tuple(h.path for h in ordered),
        sop_uids=tuple(h.sop_uid for h in ordered),
        shape_zyx=(len(ordered), int(ordered[0].rows), int(ordered[0].columns)),
        spacing_mm=(slice_step, float(row_spacing), float(column_spacing)),
        origin_mm=tuple(float(v) for v in positions[0]),
        direction=tuple(
            tuple(float(v) for v in axis) for axis in (row_direction, column_direction, normal)
        ),
    )


def read_ct_volume(
    geometry: SeriesGeometry, patient_id: str = "", series_uid: str = ""
) -> CtVolume:
    """Read the pixels of a checked series in Hounsfield units (per-slice rescale applied).

    Raises :class:`DicomReadError` naming the first file that is unreadable or truncated.
    """
    import pydicom

    hu = np.empty(geometry.shape_zyx, dtype=np.float32)
    for z, path in enumerate(geometry.paths):
        try:
            ds = pydicom.dcmread(path)
            pixels = ds.pixel_array
        except Exception as error:
            raise DicomReadError(f"{path}: unreadable or truncated pixel data ({error})") from None
        if pixels.shape != geometry.shape_zyx[1:]:
            raise DicomReadError(
                f"{path}: pixel array {pixels.shape} does not match Rows/Columns "
                f"{geometry.shape_zyx[1:]}"
            )
        if "RescaleSlope" not in ds or "RescaleIntercept" not in ds:
            raise DicomReadError(
                f"{path}: no RescaleSlope/RescaleIntercept, so values cannot be read "
                "as Hounsfield units"
            )
        hu[z] = pixels * np.float32(ds.RescaleSlope) + np.float32(ds.RescaleIntercept)
    return CtVolume(hu, geometry, patient_id, series_uid)


def read_ct_volume_sitk(geometry: SeriesGeometry) -> np.ndarray:
    """The same volume read by SimpleITK/GDCM in the same slice order: ``[z, y, x]`` float32.

    Kept as a cross-check of :func:`read_ct_volume` and for the reader benchmark.
    """
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(list(geometry.paths))
    reader.SetOutputPixelType(sitk.sitkFloat32)
    return sitk.GetArrayFromImage(reader.Execute())


def read_rtstruct_rois(
    path: str | os.PathLike, name_pattern: str
) -> tuple[list[RoiContours], list[str]]:
    """ROIs of an RTSTRUCT whose name fully matches ``name_pattern`` (case-insensitive regex).

    Returns ``(matching ROIs, all ROI names)``. Only CLOSED_PLANAR contours are kept.
    """
    import pydicom

    try:
        ds = pydicom.dcmread(str(path))
    except Exception as error:
        raise DicomReadError(f"{path}: unreadable RTSTRUCT ({error})") from None
    pattern = re.compile(name_pattern, re.IGNORECASE)
    try:
        return _rois_from_dataset(ds, pattern)
    except Exception as error:
        raise DicomReadError(
            f"{path}: damaged RTSTRUCT ({type(error).__name__}: {error}); export it again"
        ) from None


def _rois_from_dataset(ds, pattern: re.Pattern) -> tuple[list[RoiContours], list[str]]:
    names = {int(roi.ROINumber): str(roi.ROIName) for roi in ds.get("StructureSetROISequence", [])}
    wanted = {number: name for number, name in names.items() if pattern.fullmatch(name)}
    rois = []
    for roi_contour in ds.get("ROIContourSequence", []):
        number = int(roi_contour.ReferencedROINumber)
        if number not in wanted:
            continue
        contours = []
        for contour in roi_contour.get("ContourSequence", []):
            if str(contour.get("ContourGeometricType", "")).upper() != "CLOSED_PLANAR":
                continue
            data = np.asarray(contour.get("ContourData", []), dtype=np.float64)
            contours.append(data.reshape(-1, 3) if data.size % 3 == 0 else np.empty((0, 3)))
        rois.append(RoiContours(wanted[number], number, tuple(contours)))
    listed = {roi.number for roi in rois}
    rois.extend(
        RoiContours(name, number, ()) for number, name in wanted.items() if number not in listed
    )
    return sorted(rois, key=lambda roi: roi.number), list(names.values())


def roi_mask(geometry: SeriesGeometry, rois: Sequence[RoiContours]) -> RasterisedRoi:
    """Union of the ROIs rasterised onto the CT grid (see :mod:`nsclc_engine.contours`).

    Each ROI is rasterised on its own and the masks OR-ed: XOR (holes) applies within one ROI
    only, so overlapping GTVs do not cancel.
    """
    mask = np.zeros(geometry.shape_zyx, dtype=bool)
    used = degenerate = outside = 0
    for roi in rois:
        contours_voxel = [
            geometry.patient_to_voxel(points) if len(points) else points
            for points in roi.contours_mm
        ]
        rasterised = rasterise_contours(contours_voxel, geometry.shape_zyx)
        mask |= rasterised.mask
        used += rasterised.n_contours_used
        degenerate += rasterised.n_contours_degenerate
        outside += rasterised.n_contours_outside
    return RasterisedRoi(mask, used, degenerate, outside)


def _optional_int(value) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _optional_floats(value, length: int) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        floats = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return floats if len(floats) == length else None
