from dataclasses import replace

import numpy as np
import pytest
import torch

from nsclc_engine.cohort import dicom_io
from nsclc_engine.preprocess.volumes import (
    PRESETS,
    InputGeometry,
    PreprocessConfig,
    crop_box_bbox,
    preprocess_arrays,
    preprocess_ct,
    resample_axis_aligned,
    resolve_config,
    sampling_grid,
    window_to_unit,
)

SMALL = PreprocessConfig(out_depth=8, out_height=16, out_width=16)


def blob(shape, centre, radius, spacing=(1.0, 1.0, 1.0)):
    grids = np.meshgrid(
        *[np.arange(n) * s for n, s in zip(shape, spacing, strict=True)], indexing="ij"
    )
    distance = sum((g - c * s) ** 2 for g, c, s in zip(grids, centre, spacing, strict=True))
    return distance <= radius**2


def test_window_by_hand():
    hu = np.array([-2000.0, -1000.0, 0.0, 500.0, 1000.0, 3000.0])
    np.testing.assert_allclose(window_to_unit(hu, 0.0, 2000.0), [0, 0, 0.5, 0.75, 1, 1])
    np.testing.assert_allclose(window_to_unit(hu, -600.0, 1500.0), [0, 350 / 1500, 0.9, 1, 1, 1])


def test_bbox_with_margin_clipped_at_the_border():
    mask = np.zeros((10, 20, 30), dtype=bool)
    mask[4:6, 0:3, 25:30] = True  # touches the y = 0 and x = 29 borders
    box = crop_box_bbox(mask, (3.0, 1.0, 1.0), PreprocessConfig())
    assert box == (4, 6, 0, 13, 15, 30)  # z margin 0 (report), 10 voxels in-plane, clipped
    box_mm = crop_box_bbox(mask, (3.0, 0.5, 2.0), replace(PreprocessConfig(), margin_mm=4.0))
    assert box_mm == (2, 8, 0, 11, 23, 30)  # ceil(4/3)=2, 4/0.5=8, 4/2=2 voxels


def test_single_voxel_gtv_and_fewer_slices_than_the_target_depth():
    hu = np.full((3, 12, 12), -1000.0)
    mask = np.zeros_like(hu, dtype=bool)
    hu[1, 6, 6], mask[1, 6, 6] = 200.0, True
    image, mask_out, _, scale, box = preprocess_arrays(hu, mask, (5.0, 1.0, 1.0), SMALL)
    assert image.shape == mask_out.shape == (8, 16, 16) and image.dtype == np.float32
    assert box == (1, 2, 0, 12, 0, 12)
    # the one GTV slice is stretched over the whole depth; in-plane 12 -> 16 voxels
    assert mask_out[:, 8, 8].all() and (mask_out == mask_out[0]).all()
    assert (image[:, 8, 8] > image[:, 0, 0]).all()
    assert 0.0 <= image.min() and image.max() <= 1.0
    np.testing.assert_allclose(scale, (1 / 8, 12 / 16, 12 / 16))


def test_resampling_matches_torch_trilinear_interpolation():
    rng = np.random.default_rng(0)
    volume = rng.normal(size=(7, 11, 13)).astype(np.float32)
    out_shape = (9, 16, 8)
    scale = np.array(volume.shape) / np.array(out_shape)
    ours = resample_axis_aligned(volume, 0.5 * scale - 0.5, scale, out_shape)
    oracle = torch.nn.functional.interpolate(
        torch.from_numpy(volume)[None, None], size=out_shape, mode="trilinear", align_corners=False
    )[0, 0].numpy()
    np.testing.assert_allclose(ours, oracle, atol=1e-5)


def test_bbox_crop_equals_crop_then_torch_resize():
    rng = np.random.default_rng(1)
    hu = rng.normal(0, 300, size=(12, 30, 28))
    mask = np.zeros(hu.shape, dtype=bool)
    mask[3:7, 10:16, 8:12] = True
    config = replace(SMALL, margin_voxels_xy=3, margin_voxels_z=1)
    image, _, _, _, box = preprocess_arrays(hu, mask, (3.0, 1.0, 1.0), config)
    z0, z1, y0, y1, x0, x1 = box
    crop = torch.from_numpy(hu[z0:z1, y0:y1, x0:x1].astype(np.float32))[None, None]
    resized = torch.nn.functional.interpolate(
        crop, size=SMALL.out_shape, mode="trilinear", align_corners=False
    )[0, 0].numpy()
    np.testing.assert_allclose(image, window_to_unit(resized, 0.0, 2000.0), atol=1e-6)


def test_anisotropic_spacing_and_linear_ramps_stay_exact():
    z, y, x = np.meshgrid(np.arange(6), np.arange(10), np.arange(14), indexing="ij")
    ramp = (2.0 * z + 3.0 * y - 1.0 * x).astype(np.float32)
    offset, scale = np.array([0.5, 1.0, 2.0]), np.array([0.25, 0.5, 0.75])
    out = resample_axis_aligned(ramp, offset, scale, (16, 12, 12))
    k, j, i = np.meshgrid(np.arange(16), np.arange(12), np.arange(12), indexing="ij")
    expected = 2.0 * (0.5 + 0.25 * k) + 3.0 * (1.0 + 0.5 * j) - (2.0 + 0.75 * i)
    np.testing.assert_allclose(out, expected, atol=1e-4)


def test_input_voxel_maps_back_to_the_ct_voxel_it_came_from():
    shape, spacing = (20, 40, 40), (2.5, 0.8, 0.8)
    hu = np.full(shape, -800.0)
    mask = blob(shape, (10, 18, 22), 6.0, spacing)
    hot = (11, 20, 25)
    hu[hot] = 3000.0
    for crop_mode in ("bbox", "fixed_fov"):
        config = replace(
            SMALL, crop_mode=crop_mode, out_depth=40, out_height=64, out_width=64, fov_mm=30.0
        )
        image, _, offset, scale, _ = preprocess_arrays(hu, mask, spacing, config)
        hottest = np.array(np.unravel_index(np.argmax(image), image.shape))
        back = offset + scale * hottest
        assert np.abs(back - np.array(hot)).max() <= 1.0, crop_mode
        np.testing.assert_allclose((back - offset) / scale, hottest)


def test_fixed_fov_keeps_absolute_size_and_bbox_does_not():
    shape, spacing = (40, 64, 64), (2.0, 1.0, 1.0)
    sizes = {}
    for radius in (6.0, 12.0):
        mask = blob(shape, (20, 32, 32), radius, spacing)
        hu = np.where(mask, 40.0, -800.0)
        for crop_mode in ("bbox", "fixed_fov"):
            config = replace(SMALL, crop_mode=crop_mode, margin_voxels_xy=0, fov_mm=60.0)
            sizes[crop_mode, radius] = preprocess_arrays(hu, mask, spacing, config)[1].sum()
    assert sizes["fixed_fov", 12.0] / sizes["fixed_fov", 6.0] == pytest.approx(8, rel=0.25)
    assert sizes["bbox", 12.0] / sizes["bbox", 6.0] == pytest.approx(1, rel=0.25)


def test_bbox_with_its_margin_compresses_tumour_size_but_does_not_hide_it():
    """The README once said the bbox crop hides size. With the report's 10-voxel margin the
    GTV's share of the input still rises with its volume: size is visible, only compressed."""
    shape, spacing = (48, 128, 128), (4.0, 3.0, 3.0)
    shares = []
    for radius in (8.0, 14.0, 20.0, 30.0):
        mask = blob(shape, (24, 64, 64), radius, spacing)
        hu = np.where(mask, 40.0, -800.0)
        shares.append(preprocess_arrays(hu, mask, spacing, PRESETS["demo"])[1].mean())
    assert shares == sorted(shares) and shares[-1] > 2 * shares[0]


def test_context_keeps_the_ct_near_the_gtv_and_makes_the_rest_air():
    shape, spacing = (20, 40, 40), (1.0, 1.0, 1.0)
    hu = np.full(shape, 40.0)  # soft tissue everywhere: only the context rule makes air
    mask = np.zeros(shape, dtype=bool)
    mask[8:12, 18:22, 18:22] = True  # a 4 mm cube
    config = replace(SMALL, crop_mode="fixed_fov", fov_mm=40.0, out_depth=20, out_height=40)
    config = replace(config, out_width=40, context_mm=5.0)
    image, mask_out, *_ = preprocess_arrays(hu, mask, spacing, config)
    tissue = window_to_unit(np.array(40.0), 0, 2000)
    # the 40 mm field of view over 20 output slices: 2 mm along z, 1 mm in-plane
    assert mask_out.sum() == 2 * 4 * 4
    assert image[10, 20, 26] == pytest.approx(tissue)  # 5 mm beyond the GTV edge (x = 21)
    assert image[10, 20, 27] == 0.0  # 6 mm beyond it: air
    assert image[10, 25, 24] == pytest.approx(tissue)  # diagonal: sqrt(4^2 + 3^2) = 5 mm
    assert image[10, 25, 25] == 0.0  # sqrt(4^2 + 4^2) > 5 mm
    assert image[:, :, 0].max() == 0.0
    # a GTV smaller than one output voxel still gets its context (not the whole chest)
    dot = np.zeros(shape, dtype=bool)
    dot[10, 20, 20] = True
    coarse = replace(config, out_depth=5, out_height=10, out_width=10)  # 4 mm voxels
    image_dot, mask_dot, *_ = preprocess_arrays(hu, dot, spacing, coarse)
    assert not mask_dot.any() and 0 < (image_dot > 0).sum() < image_dot.size / 4
    # without it, the whole field of view is kept
    full = preprocess_arrays(hu, mask, spacing, replace(config, context_mm=None))[0]
    assert full[10].min() == pytest.approx(tissue)


def test_fixed_fov_beyond_the_scan_is_air():
    shape = (10, 30, 30)
    hu = np.full(shape, 40.0)  # all soft tissue
    mask = np.zeros(shape, dtype=bool)
    mask[5, 2, 15] = True  # near the y = 0 edge: the 60 mm field of view sticks out
    config = replace(SMALL, crop_mode="fixed_fov", fov_mm=60.0)
    image = preprocess_arrays(hu, mask, (1.0, 1.0, 1.0), config)[0]
    assert image[:, 0, :].max() == 0.0  # beyond y = 0: air, windowed to 0
    # output slice 3 samples CT z = -21.25 + 7.5 * 3 = 1.25, inside the scan: soft tissue
    assert image[3, 8, 8] == pytest.approx(window_to_unit(np.array(40.0), 0, 2000))
    assert image[5].max() == 0.0  # z = 16.25: beyond the last slice


def test_presets_are_configs_and_overrides_apply():
    assert PRESETS["paper"].out_shape == (100, 128, 128)
    assert PRESETS["demo"].out_shape == (32, 64, 64)
    config = resolve_config("demo", None, ["crop_mode=fixed_fov", "fov_mm=120"])
    assert config == replace(PRESETS["demo"], crop_mode="fixed_fov", fov_mm=120.0)
    with pytest.raises(ValueError, match="choose one of"):
        resolve_config("huge")
    with pytest.raises(ValueError, match="crop_mode"):
        resolve_config("demo", None, ["crop_mode=sphere"])


def test_empty_mask_is_refused():
    with pytest.raises(ValueError, match="empty"):
        sampling_grid(np.zeros((4, 4, 4), dtype=bool), (1, 1, 1), SMALL)


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["demo", "paper"])
@pytest.mark.parametrize("crop_mode", ["bbox", "fixed_fov"])
def test_real_lung1_001_preprocesses_with_its_gtv_inside_the_crop(lung1_volume, preset, crop_mode):
    volume, mask = lung1_volume
    config = replace(PRESETS[preset], crop_mode=crop_mode)
    result = preprocess_ct(volume, mask, config)
    assert result.image.shape == config.out_shape
    assert result.mask.any()
    z0, z1, y0, y1, x0, x1 = result.geometry.crop_box_zyx
    gtv = np.nonzero(mask)
    if crop_mode == "bbox":  # the whole GTV is inside the crop
        assert z0 <= gtv[0].min() and gtv[0].max() < z1
        assert y0 <= gtv[1].min() and gtv[1].max() < y1
        assert x0 <= gtv[2].min() and gtv[2].max() < x1
    # the GTV centroid in patient mm is where the input's GTV centroid maps back to
    centroid_input = np.array([axis.mean() for axis in np.nonzero(result.mask)])
    back_mm = result.geometry.input_to_patient_mm(centroid_input[None])[0]
    centroid_ct = np.array([axis.mean() for axis in gtv])[::-1]
    expected_mm = volume.geometry.voxel_to_patient(centroid_ct[None])[0]
    assert np.abs(back_mm - expected_mm).max() < 3.0  # mm


@pytest.fixture(scope="module")
def lung1_volume(lung1_dir):
    index = dicom_io.index_dicom_tree(lung1_dir, workers=1, show_progress=False)
    geometry = dicom_io.ct_series_geometry([h for h in index.headers if h.modality == "CT"])
    rtstruct = next(h for h in index.headers if h.modality == "RTSTRUCT")
    rois, _ = dicom_io.read_rtstruct_rois(rtstruct.path, "GTV-1")
    return dicom_io.read_ct_volume(geometry), dicom_io.roi_mask(geometry, rois).mask


def test_overrides_apply_on_top_of_the_chosen_preset(tmp_path):
    assert resolve_config("demo", None, ["out_depth=100"]).out_shape == (100, 64, 64)
    path = tmp_path / "c.json"
    path.write_text('{"out_height": 128}')
    assert resolve_config("demo", path, ["out_depth=100"]).out_shape == (100, 128, 64)


def test_input_to_patient_mm_follows_an_oblique_ct_direction():
    angle = np.deg2rad(30)
    rows = (np.cos(angle), np.sin(angle), 0.0)
    columns = (-np.sin(angle), np.cos(angle), 0.0)
    grid = dicom_io.SeriesGeometry(
        paths=(),
        sop_uids=(),
        shape_zyx=(5, 6, 7),
        spacing_mm=(3.0, 0.5, 0.8),
        origin_mm=(10.0, -20.0, 30.0),
        direction=(rows, columns, (0.0, 0.0, 1.0)),
    )
    geometry = InputGeometry(
        (1.0, 2.0, 3.0),
        (0.5, 0.25, 2.0),
        (0, 5, 0, 6, 0, 7),
        (5, 6, 7),
        grid.spacing_mm,
        grid.origin_mm,
        grid.direction,
    )
    points = np.array([[0.0, 0.0, 0.0], [2.0, 3.0, 1.5]])
    ct_xyz = geometry.input_to_ct_index(points)[:, ::-1]
    np.testing.assert_allclose(geometry.input_to_patient_mm(points), grid.voxel_to_patient(ct_xyz))


def test_a_field_of_view_smaller_than_the_tumour_is_reported(caplog):
    shape, spacing = (30, 60, 60), (1.0, 1.0, 1.0)
    mask = blob(shape, (15, 30, 30), 12.0, spacing)
    volume = dicom_io.CtVolume(
        np.where(mask, 40.0, -800.0).astype(np.float32),
        dicom_io.SeriesGeometry(
            (),
            (),
            shape,
            spacing,
            (0.0, 0.0, 0.0),
            ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
        ),
        "P1",
        "1.2",
    )
    inside = preprocess_ct(volume, mask, replace(SMALL, crop_mode="fixed_fov", fov_mm=40.0))
    assert inside.gtv_fraction_inside == 1.0
    cut = preprocess_ct(volume, mask, replace(SMALL, crop_mode="fixed_fov", fov_mm=16.0))
    assert 0.0 < cut.gtv_fraction_inside < 0.9  # a 16 mm cube in a 24 mm sphere
    assert "P1: only" in caplog.text
