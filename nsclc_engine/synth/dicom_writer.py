"""One synthetic patient written as real DICOM: a CT series and an RTSTRUCT, TCIA layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nsclc_engine.synth.outcome import RESCALE_INTERCEPT, PatientTruth, SynthConfig
from nsclc_engine.synth.phantom import render_patient

CT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.2"
RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
STUDY_ROOT_SOP_CLASS = "1.2.840.10008.3.1.2.3.1"


def _uid(config: SynthConfig, *parts: object) -> str:
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=[str(config.seed), *map(str, parts)])


def _file_meta(sop_class: str, sop_uid: str):
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return meta


def _common(ds, truth: PatientTruth, study_uid: str, frame_uid: str) -> None:
    ds.PatientID = truth.patient_id
    ds.PatientName = truth.patient_id  # synthetic: the ID is the only identifier
    ds.PatientSex = "M" if truth.gender == "male" else "F"
    ds.StudyInstanceUID = study_uid
    ds.FrameOfReferenceUID = frame_uid
    ds.StudyDate = ds.SeriesDate = "20000101"
    ds.StudyTime = ds.SeriesTime = "120000"
    ds.StudyID = f"{truth.number:05d}"
    ds.AccessionNumber = ""
    ds.Manufacturer = "nsclc_engine synthetic cohort"


def write_patient(config: SynthConfig, truth: PatientTruth, dicom_root: Path) -> None:
    """Write one patient's CT series and RTSTRUCT (with its defect, if any)."""
    defect = truth.defect
    if defect == "no_imaging":
        return
    rendered = render_patient(config, truth)
    ct_series_uid = _uid(config, truth.patient_id, "ct")
    uids = {
        "study": _uid(config, truth.patient_id, "study"),
        "ct_series": ct_series_uid,
        "frame": _uid(config, truth.patient_id, "frame"),
    }
    study_dir = dicom_root / truth.patient_id / f"01-01-2000-NA-CT THORAX-{truth.number:05d}"
    # scanners number slices head to feet: instance 1 is the highest z, so file names run
    # against the slice order and a reader that sorts by name or number gets it wrong
    n = len(rendered.grid.axis_mm("z"))
    slice_uids = [_uid(config, truth.patient_id, "ct", k) for k in range(n)]
    if defect != "no_ct":
        ct_dir = study_dir / f"0.000000-NA-{int(ct_series_uid[-5:]):05d}"
        _write_ct_series(config, truth, rendered, ct_dir, slice_uids, uids)
    if defect != "no_rtstruct":
        _write_rtstruct(config, truth, rendered, study_dir, slice_uids, uids)


def _write_ct_series(
    config: SynthConfig, truth: PatientTruth, rendered, ct_dir: Path, slice_uids: list, uids: dict
) -> None:
    """The CT slices, one file each (a missing, truncated, duplicated or tilted slice where
    the patient's defect says so)."""
    from pydicom.dataset import Dataset

    defect, grid = truth.defect, rendered.grid
    study_uid, ct_series_uid, frame_uid = uids["study"], uids["ct_series"], uids["frame"]
    z_mm = grid.axis_mm("z")
    n = len(z_mm)
    skipped_slice = n // 2 if defect == "missing_slice" else None
    ct_dir.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        if k == skipped_slice:
            continue
        instance = n - k
        ds = Dataset()
        ds.file_meta = _file_meta(CT_SOP_CLASS, slice_uids[k])
        _common(ds, truth, study_uid, frame_uid)
        ds.SOPClassUID = CT_SOP_CLASS
        ds.SOPInstanceUID = slice_uids[k]
        ds.SeriesInstanceUID = ct_series_uid
        ds.Modality = "CT"
        ds.SeriesNumber = 0
        ds.InstanceNumber = instance
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = [
            f"{grid.origin_mm[0]:.4f}",
            f"{grid.origin_mm[1]:.4f}",
            f"{z_mm[k]:.4f}",
        ]
        orientation = [1, 0, 0, 0, 1, 0]
        if defect == "bad_orientation" and k == n // 3:
            orientation = [1, 0, 0, 0, 0.98, 0.19899749]
        ds.ImageOrientationPatient = orientation
        ds.SliceLocation = f"{z_mm[k]:.4f}"
        ds.SliceThickness = config.slice_thickness_mm
        ds.PixelSpacing = [config.pixel_spacing_mm, config.pixel_spacing_mm]
        ds.Rows = ds.Columns = config.rows
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept = RESCALE_INTERCEPT
        ds.RescaleSlope = 1
        ds.RescaleType = "HU"
        ds.WindowCenter, ds.WindowWidth = -600, 1500
        ds.KVP = 120
        stored = (rendered.hu[k].astype(np.int32) - RESCALE_INTERCEPT).astype(np.int16)
        ds.PixelData = stored.tobytes()
        path = ct_dir / f"1-{instance:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        if defect == "truncated_slice" and k == n // 2:
            with open(path, "r+b") as handle:
                handle.truncate(path.stat().st_size - stored.nbytes // 2)
        if defect == "duplicate_slice" and k == n // 2:
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = _uid(
                config, truth.patient_id, "ct-duplicate"
            )
            ds.InstanceNumber = n + 1
            ds.save_as(ct_dir / f"1-{n + 1:03d}.dcm", enforce_file_format=True)


def _write_rtstruct(
    config: SynthConfig,
    truth: PatientTruth,
    rendered,
    study_dir: Path,
    slice_uids: list,
    uids: dict,
) -> None:
    """The RTSTRUCT: distractor ROIs first, then GTV-1 (and GTV-2), each contour referencing
    its CT slice (no GTV, or an empty one, where the patient's defect says so)."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    defect = truth.defect
    study_uid, ct_series_uid, frame_uid = uids["study"], uids["ct_series"], uids["frame"]
    z_mm = rendered.grid.axis_mm("z")
    n = len(z_mm)
    rois = dict(rendered.rois)
    if defect == "no_gtv":
        rois.pop("GTV-1")
        rois.pop("GTV-2", None)
    # distractors come first, so "take the first ROI" is wrong
    order = [name for name in ("PTV-1", "Lung R", "Lung L", "GTV-1", "GTV-2") if name in rois]
    rtstruct_uid = _uid(config, truth.patient_id, "rtstruct")
    ds = Dataset()
    ds.file_meta = _file_meta(RTSTRUCT_SOP_CLASS, rtstruct_uid)
    _common(ds, truth, study_uid, frame_uid)
    ds.SOPClassUID = RTSTRUCT_SOP_CLASS
    ds.SOPInstanceUID = rtstruct_uid
    ds.SeriesInstanceUID = _uid(config, truth.patient_id, "rtstruct-series")
    ds.Modality = "RTSTRUCT"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.StructureSetLabel = "synthetic"
    ds.StructureSetDate, ds.StructureSetTime = "20000101", "120000"

    def image_refs(indices) -> DicomSequence:
        refs = []
        for k in indices:
            ref = Dataset()
            ref.ReferencedSOPClassUID = CT_SOP_CLASS
            ref.ReferencedSOPInstanceUID = slice_uids[k]
            refs.append(ref)
        return DicomSequence(refs)

    series_ref = Dataset()
    series_ref.SeriesInstanceUID = ct_series_uid
    series_ref.ContourImageSequence = image_refs(range(n))
    study_ref = Dataset()
    study_ref.ReferencedSOPClassUID = STUDY_ROOT_SOP_CLASS
    study_ref.ReferencedSOPInstanceUID = study_uid
    study_ref.RTReferencedSeriesSequence = DicomSequence([series_ref])
    frame_ref = Dataset()
    frame_ref.FrameOfReferenceUID = frame_uid
    frame_ref.RTReferencedStudySequence = DicomSequence([study_ref])
    ds.ReferencedFrameOfReferenceSequence = DicomSequence([frame_ref])

    structure_rois, contour_rois, observations = [], [], []
    for number, name in enumerate(order, start=1):
        roi = Dataset()
        roi.ROINumber = number
        roi.ReferencedFrameOfReferenceUID = frame_uid
        roi.ROIName = name
        roi.ROIGenerationAlgorithm = "MANUAL"
        structure_rois.append(roi)
        contour_roi = Dataset()
        contour_roi.ReferencedROINumber = number
        contour_roi.ROIDisplayColor = [255, 0, 0] if name.startswith("GTV") else [0, 128, 255]
        if not (defect == "empty_gtv" and name == "GTV-1"):
            contours = []
            for k, polygon in sorted(rois[name].items()):
                contour = Dataset()
                contour.ContourImageSequence = image_refs([k])
                contour.ContourGeometricType = "CLOSED_PLANAR"
                contour.NumberOfContourPoints = len(polygon)
                points = np.column_stack([polygon, np.full(len(polygon), z_mm[k])])
                contour.ContourData = [f"{value:.3f}" for value in points.ravel()]
                contours.append(contour)
            contour_roi.ContourSequence = DicomSequence(contours)
        contour_rois.append(contour_roi)
        observation = Dataset()
        observation.ObservationNumber = number
        observation.ReferencedROINumber = number
        observation.RTROIInterpretedType = (
            name.split("-")[0] if name[:3] in ("GTV", "PTV") else "ORGAN"
        )
        observation.ROIInterpreter = ""
        observations.append(observation)
    ds.StructureSetROISequence = DicomSequence(structure_rois)
    ds.ROIContourSequence = DicomSequence(contour_rois)
    ds.RTROIObservationsSequence = DicomSequence(observations)
    rtstruct_dir = study_dir / f"1.000000-NA-{int(rtstruct_uid[-5:]):05d}"
    rtstruct_dir.mkdir(parents=True, exist_ok=True)
    ds.save_as(rtstruct_dir / "1-1.dcm", enforce_file_format=True)
