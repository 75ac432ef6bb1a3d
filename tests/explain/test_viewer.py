"""The case viewer: plane images by hand, the patient table, and the real LUNG1-001 case shown
with its GTV where the RTSTRUCT puts it."""

from dataclasses import asdict

import numpy as np
import pytest

from nsclc_engine.cohort.build import CohortConfig, run_cohort
from nsclc_engine.cohort.dicom_io import ct_series_geometry, read_rtstruct_rois
from nsclc_engine.explain import viewer
from nsclc_engine.explain.gradcam import CtMap, input_map_to_ct
from nsclc_engine.preprocess.volumes import PRESETS, InputGeometry


def test_contour_of_a_square_is_its_ring():
    mask = np.zeros((6, 6), dtype=bool)
    mask[1:5, 1:5] = True
    ring = viewer.contour(mask)
    expected = mask.copy()
    expected[2:4, 2:4] = False
    assert np.array_equal(ring, expected)
    assert not viewer.contour(np.zeros((3, 3), bool)).any()


def test_render_gray_contour_heat_and_crosshair_by_hand():
    gray = np.full((4, 5), 0.5, dtype=np.float32)
    plain = viewer.render(gray)
    assert plain.shape == (4, 5, 3) and plain.dtype == np.uint8
    assert (plain == 128).all()  # 0.5 * 255 = 127.5 rounds to 128
    mask = np.zeros((4, 5), bool)
    mask[1, 1] = True  # a one-pixel GTV is all contour
    heat = np.zeros((4, 5), np.float32)
    heat[3, 4] = 1.0
    image = viewer.render(gray, mask, heat, opacity=1.0, crosshair=(0, 2))
    assert image[1, 1].tolist() == viewer.CONTOUR_RGB.astype(int).tolist()
    assert image[3, 4].tolist() == viewer.HEAT_ANCHORS[-1].astype(int).tolist()  # opaque, hot
    assert image[3, 0].tolist() == [128, 128, 128]  # cold voxels stay clear
    crossed = np.round(0.4 * 127.5 + 0.6 * viewer.CROSSHAIR_RGB).astype(int).tolist()
    assert image[0, 0].tolist() == crossed and image[2, 2].tolist() == crossed
    assert viewer.render(gray, heat=heat, opacity=0.0)[3, 4].tolist() == [128, 128, 128]


def test_rows_are_stretched_to_square_millimetres():
    gray = np.linspace(0, 1, 3, dtype=np.float32)[:, None].repeat(2, axis=1)
    stretched = viewer.render(gray, row_scale=2.0)
    assert stretched.shape == (6, 2, 3)
    assert stretched[:, 0, 0].tolist() == [0, 0, 128, 128, 255, 255]


def test_centroid_start_and_window_presets():
    mask = np.zeros((5, 6, 7), bool)
    mask[1:4, 2, 3:6] = True
    assert viewer.gtv_centroid_index(mask) == (2, 2, 4)
    assert viewer.WINDOW_PRESETS == {  # (level, width): OHIF's CT defaults, in its order
        "soft tissue": (40.0, 400.0),
        "lung": (-600.0, 1500.0),
        "liver": (90.0, 150.0),
        "bone": (480.0, 2500.0),
        "brain": (40.0, 80.0),
    }


def hand_case(shape=(12, 40, 50), spacing=(3.0, 1.0, 1.0)) -> viewer.PatientCase:
    hu = np.arange(np.prod(shape), dtype=np.float32).reshape(shape) % 3000 - 1000
    gtv = np.zeros(shape, bool)
    gtv[5:8, 18:23, 20:26] = True
    geometry = InputGeometry(
        offset_zyx=(4.0, 15.0, 17.0),
        scale_zyx=(1.0, 1.0, 1.0),
        crop_box_zyx=(4, 9, 15, 26, 17, 29),
        ct_shape_zyx=shape,
        ct_spacing_mm=spacing,
        ct_origin_mm=(0.0, 0.0, 0.0),
        ct_direction=((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
    )
    image = np.zeros((5, 11, 12), np.float32)
    return viewer.PatientCase("P1", hu, gtv, spacing, geometry, image, image > 0, {})


def test_the_viewer_payload_is_the_ct_around_the_tumour_with_its_gtv_and_maps():
    case = hand_case()
    # input box z 4-9, y 15-26, x 17-29 and the GTV, widened by 6 mm: 2 slices, 6 voxels
    assert viewer.viewer_box(case, 6.0) == (2, 11, 9, 32, 11, 35)
    assert viewer.viewer_box(case, 100.0) == (0, 12, 0, 40, 0, 50)  # clipped to the CT
    scores = np.zeros((5, 11, 12), np.float32)
    scores[2, 5, 6] = 1.0
    heat = CtMap(scores, (4, 9, 15, 26, 17, 29), case.hu.shape)
    payload = viewer.case_payload(case, {"run-a": heat}, margin_mm=6.0)
    assert payload["shape"] == [9, 23, 24] and payload["origin"] == [2, 9, 11]
    assert payload["stride"] == 1 and payload["spacing_mm"] == [3.0, 1.0, 1.0]
    hu = viewer.unpack(payload, "ct", "<i2")
    assert np.array_equal(hu, case.hu[2:11, 9:32, 11:35].astype(np.int16))
    gtv = viewer.unpack(payload, "gtv", "u1")
    assert gtv.sum() == case.gtv.sum()
    assert payload["start"] == [6 - 2, 20 - 9, 22 - 11]  # the GTV's centroid, in the box
    sent = viewer.unpack(payload, "maps", "u1", 0)
    assert payload["maps"][0]["label"] == "run-a"
    assert sent[6 - 2, 20 - 9, 23 - 11] == 255 and sent.sum() == 255  # one hot voxel
    assert len(payload["heat_lut"]) == 256 and payload["heat_lut"][-1] == [252, 255, 164]


def test_a_large_field_is_sent_at_a_stride_that_keeps_it_small():
    case = hand_case(shape=(4, 300, 260), spacing=(2.5, 0.8, 0.8))
    payload = viewer.case_payload(case, margin_mm=1000.0, max_pixels=128)
    assert payload["stride"] == 3 and payload["shape"] == [4, 100, 87]
    assert payload["spacing_mm"] == pytest.approx([2.5, 2.4, 2.4])
    assert np.array_equal(viewer.unpack(payload, "ct", "<i2"), case.hu[:, ::3, ::3])


def test_clinical_fields_never_pass_anything_else():
    row = {"age_years": 70, "patient_name": "DOE^JANE", "birth_date": "19500101", "os_2y": 1}
    assert viewer.clinical_fields(row) == {"age_years": 70, "os_2y": 1}


# --- the patient table -------------------------------------------------------------------------


# --- the real case -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lung1_case(lung1_dir, lung1_clinical, tmp_path_factory):
    out = tmp_path_factory.mktemp("lung1_viewer")
    result = run_cohort(
        lung1_dir, lung1_clinical, out / "cohort", CohortConfig(workers=1), show_progress=False
    )
    config = PRESETS["demo"]
    case = viewer.load_case(out / "cohort", out / "cache", asdict(config), "LUNG1-001")
    return case, result


@pytest.mark.slow
def test_lung1_001_opens_at_its_gtv_with_the_contour_drawn(lung1_case):
    case, result = lung1_case
    assert case.hu.shape == (134, 512, 512)
    start = viewer.gtv_centroid_index(case.gtv)
    # the contour's own centroid, from the RTSTRUCT points in mm, in CT voxel indices
    row = result.cohort.iloc[0]
    headers = [h for h in result.index.headers if h.series_uid == row.ct_series_uid]
    geometry = ct_series_geometry(headers)
    rois, _ = read_rtstruct_rois(row.rtstruct_path, "GTV-1")
    points = np.concatenate([c for roi in rois if roi.name == "GTV-1" for c in roi.contours_mm])
    centroid_xyz = geometry.patient_to_voxel(points).mean(axis=0)
    assert abs(start[0] - centroid_xyz[2]) <= 1.0  # within one slice of the view's start
    assert abs(start[1] - centroid_xyz[1]) <= 10 and abs(start[2] - centroid_xyz[0]) <= 10
    # the browser's payload holds the whole GTV and opens at its centroid, in at most 384 px
    payload = viewer.case_payload(case)
    assert max(payload["shape"][1:]) <= 384
    sent = viewer.unpack(payload, "gtv", "u1").astype(bool)
    stride = payload["stride"]
    assert sent.sum() == case.gtv[:, ::stride, ::stride].sum() > 0
    origin = np.asarray(payload["origin"])
    shown = origin + np.asarray(payload["start"]) * [1, stride, stride]
    assert np.abs(shown - start).max() <= stride
    # the network input's GTV, mapped back onto the CT, lies on the CT's GTV
    back = input_map_to_ct(case.input_mask.astype(np.float32), case.geometry).full() >= 0.5
    dice = 2 * (back & case.gtv).sum() / (back.sum() + case.gtv.sum())
    assert dice > 0.7
    assert viewer.input_covers(case, start[0]) and not viewer.input_covers(case, 0)
    assert set(case.clinical) <= set(viewer.CLINICAL_FIELDS)
    assert case.clinical["survival_time_days"] == 2165
