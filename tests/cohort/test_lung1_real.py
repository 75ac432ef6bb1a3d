"""The one real Lung1 patient (LUNG1-001, flat folder with CT, RTSTRUCT, RTDOSE, RTPLAN)."""

import numpy as np
import pandas as pd
import pytest

from nsclc_engine.cohort import dicom_io
from nsclc_engine.cohort.build import CohortConfig, run_cohort
from tests.helpers import LUNG1_FEATURES, require_shared

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lung1_cohort(lung1_dir, lung1_clinical, tmp_path_factory):
    return run_cohort(
        lung1_dir,
        lung1_clinical,
        tmp_path_factory.mktemp("lung1_cohort"),
        CohortConfig(workers=1),
        show_progress=False,
    )


@pytest.fixture(scope="module")
def reference():
    features = pd.read_csv(require_shared(LUNG1_FEATURES))
    return features.set_index("Patient").loc["LUNG1-001_20180209_CT_2_GTV-1_mask"]


def test_flat_folder_is_indexed_and_non_ct_files_are_left_aside(lung1_cohort):
    modalities = pd.Series([h.modality for h in lung1_cohort.index.headers]).value_counts()
    assert modalities.to_dict() == {"CT": 134, "RTSTRUCT": 1, "RTDOSE": 1, "RTPLAN": 1}
    assert lung1_cohort.index.skipped == []


def test_lung1_001_geometry_and_gtv_against_pyradiomics(lung1_cohort, reference):
    cohort = lung1_cohort.cohort
    assert cohort.patient_id.tolist() == ["LUNG1-001"]
    row = cohort.iloc[0]
    assert (row.shape_z, row.shape_y, row.shape_x) == (134, 512, 512)
    assert row.spacing_z_mm == pytest.approx(3.0)
    assert row.spacing_y_mm == row.spacing_x_mm == pytest.approx(0.977, abs=1e-3)
    assert row.roi_names == "GTV-1" and row.ct_matched_by == "referenced_series"
    assert reference["diagnostics_Mask-original_VoxelNum"] == 54449
    assert row.gtv_voxels == pytest.approx(54449, rel=0.03)
    assert row.gtv_volume_cm3 == pytest.approx(155.5, rel=0.03)
    assert row.gtv_mean_hu == pytest.approx(reference["original_firstorder_Mean"], abs=10)
    assert reference["original_firstorder_Mean"] == pytest.approx(-65.2, abs=0.05)
    # labels from the real table: died at 2165 d, so alive at two years
    assert (row.deadstatus_event, row.os_2y, row.survival_time_days) == (1, 0, 2165)
    # the rest of the real table has no imaging here
    report = lung1_cohort.report
    assert (report.reason == "no_imaging").sum() == 421


def test_hounsfield_units_and_both_readers_agree(lung1_cohort):
    row = lung1_cohort.cohort.iloc[0]
    headers = [h for h in lung1_cohort.index.headers if h.series_uid == row.ct_series_uid]
    geometry = dicom_io.ct_series_geometry(headers)
    volume = dicom_io.read_ct_volume(geometry)
    assert volume.hu.min() == -1024  # RescaleIntercept -1024 applied to unsigned pixels
    np.testing.assert_array_equal(dicom_io.read_ct_volume_sitk(geometry), volume.hu)
    # air outside the patient, soft tissue at the GTV centroid
    assert volume.hu[0, 5, 5] < -900
    centroid = geometry.patient_to_voxel(
        np.array([[row.gtv_centroid_x_mm, row.gtv_centroid_y_mm, row.gtv_centroid_z_mm]])
    )[0]
    x, y, z = np.rint(centroid).astype(int)
    assert row.gtv_bbox_z0 <= z < row.gtv_bbox_z1
    assert -200 < volume.hu[z - 1 : z + 2, y - 2 : y + 3, x - 2 : x + 3].mean() < 150
