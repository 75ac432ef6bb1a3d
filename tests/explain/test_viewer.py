"""The case viewer: plane images by hand, the patient table, and the real LUNG1-001 case shown
with its GTV where the RTSTRUCT puts it."""

from dataclasses import asdict

import numpy as np
import pytest

from nsclc_engine.cohort.build import CohortConfig, run_cohort
from nsclc_engine.cohort.dicom_io import ct_series_geometry, read_rtstruct_rois
from nsclc_engine.explain import viewer
from nsclc_engine.explain.gradcam import input_map_to_ct
from nsclc_engine.preprocess.volumes import PRESETS


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


def test_planes_put_the_head_at_the_top():
    volume = np.arange(3 * 4 * 5).reshape(3, 4, 5)  # z grows towards the head
    coronal = viewer.plane(volume, 1, 2, superior_first=True)
    assert coronal.shape == (3, 5) and coronal[0, 0] == volume[2, 2, 0]
    sagittal = viewer.plane(volume, 2, 1, superior_first=False)
    assert sagittal.shape == (3, 4) and sagittal[0, 0] == volume[0, 0, 1]
    assert np.array_equal(viewer.plane(volume, 0, 1), volume[1])
    assert viewer.display_row(0, 3, superior_first=True) == 2
    with pytest.raises(ValueError, match="slice 3 outside"):
        viewer.plane(volume, 0, 3)


def test_centroid_start_and_window_presets():
    mask = np.zeros((5, 6, 7), bool)
    mask[1:4, 2, 3:6] = True
    assert viewer.gtv_centroid_index(mask) == (2, 2, 4)
    assert viewer.WINDOW_PRESETS["lung"] == (-600.0, 1500.0)
    assert viewer.WINDOW_PRESETS["mediastinum"] == (40.0, 400.0)
    assert viewer.WINDOW_PRESETS["bone"] == (400.0, 1800.0)


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
    # each plane through the start shows the GTV contour, and in the right place
    for axis in range(3):
        image = viewer.view_plane(case, axis, start, viewer.WINDOW_PRESETS["lung"])
        green = (image == viewer.CONTOUR_RGB.astype(np.uint8)).all(axis=-1)
        assert green.sum() > 20, f"no GTV contour drawn on plane {viewer.PLANES[axis]}"
    axial = viewer.view_plane(case, 0, start, viewer.WINDOW_PRESETS["lung"])
    rows, columns = np.nonzero((axial == viewer.CONTOUR_RGB.astype(np.uint8)).all(axis=-1))
    assert rows.min() <= start[1] <= rows.max() and columns.min() <= start[2] <= columns.max()
    # the network input's GTV, mapped back onto the CT, lies on the CT's GTV
    back = input_map_to_ct(case.input_mask.astype(np.float32), case.geometry).full() >= 0.5
    dice = 2 * (back & case.gtv).sum() / (back.sum() + case.gtv.sum())
    assert dice > 0.7
    assert viewer.input_covers(case, start[0]) and not viewer.input_covers(case, 0)
    assert set(case.clinical) <= set(viewer.CLINICAL_FIELDS)
    assert case.clinical["survival_time_days"] == 2165
