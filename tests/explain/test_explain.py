"""Attributions: sanity checks on a toy model that must look at a planted blob, the model-
randomisation check, shapes and ranges on the real ResNet-18, the map's way back onto the CT,
the on-disk cache and the test-time-augmentation interval."""

import numpy as np
import pytest
import torch

from nsclc_engine.explain.gradcam import (
    ExplainConfig,
    grad_cam,
    gradcam_layers,
    hottest_voxel,
    input_map_to_ct,
    mass_inside,
    methods_for,
    rank_correlation,
    saliency,
)
from nsclc_engine.preprocess.volumes import InputGeometry, PreprocessConfig, preprocess_arrays
from nsclc_engine.train.model import build_model

SIDE = 16


def blob_volumes(n: int, seed: int):
    """Noise volumes; odd items (class 1) carry a bright ball of radius 2.5 voxels. Every item
    gets a ball *region* (drawn only in class 1) so both classes have one to compare with."""
    rng = np.random.default_rng(seed)
    volumes = rng.normal(0, 0.3, (n, 1, SIDE, SIDE, SIDE)).astype(np.float32)
    labels = np.arange(n) % 2
    zz, yy, xx = np.mgrid[:SIDE, :SIDE, :SIDE]
    regions = np.zeros((n, SIDE, SIDE, SIDE), dtype=bool)
    for i in range(n):
        c = rng.integers(4, SIDE - 4, 3)
        regions[i] = (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= 2.5**2
        if labels[i]:
            volumes[i, 0][regions[i]] += 1.5
    return torch.tensor(volumes), torch.tensor(labels), regions


class Toy(torch.nn.Module):
    """Two full-resolution conv layers, mean pooling, two logits."""

    def __init__(self):
        super().__init__()
        self.layer1 = torch.nn.Sequential(torch.nn.Conv3d(1, 8, 3, padding=1), torch.nn.ReLU())
        self.layer2 = torch.nn.Sequential(torch.nn.Conv3d(8, 8, 3, padding=1), torch.nn.ReLU())
        self.fc = torch.nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(self.layer2(self.layer1(x)).mean(dim=(2, 3, 4)))


@pytest.fixture(scope="module")
def trained_toy():
    torch.manual_seed(0)
    volumes, labels, _ = blob_volumes(64, seed=0)
    model = Toy()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(40):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(model(volumes), labels).backward()
        optimiser.step()
    return model


@pytest.fixture(scope="module")
def held_out():
    volumes, labels, regions = blob_volumes(20, seed=1)
    positives = [i for i in range(20) if labels[i]]
    return volumes, labels, regions, positives


def test_the_toy_learned_the_blob(trained_toy, held_out):
    volumes, labels, _, _ = held_out
    with torch.no_grad():
        assert (trained_toy(volumes).argmax(1) == labels).float().mean() == 1.0


def test_grad_cam_mass_concentrates_on_the_blob(trained_toy, held_out):
    volumes, _, regions, positives = held_out
    shares = [
        mass_inside(grad_cam(trained_toy, volumes[i, 0], 1, "layer2").scores, regions[i])
        for i in positives
    ]
    region_share = regions[positives].mean()  # what a map spread evenly would put there: ~2 %
    assert region_share < 0.03
    assert np.mean(shares) > 0.35  # more than ten times an even spread
    assert min(shares) > 5 * region_share


def test_model_randomisation_changes_the_map(trained_toy, held_out):
    volumes, _, regions, positives = held_out
    torch.manual_seed(5)
    random_model = Toy()
    correlations, random_shares = [], []
    for i in positives:
        trained = grad_cam(trained_toy, volumes[i, 0], 1, "layer2").scores
        randomised = grad_cam(random_model, volumes[i, 0], 1, "layer2").scores
        correlations.append(rank_correlation(trained, randomised))
        random_shares.append(mass_inside(randomised, regions[i]))
    assert np.median(correlations) < 0.3
    assert np.mean(random_shares) < 0.1


def test_saliency_is_a_full_resolution_map_in_unit_range(trained_toy, held_out):
    volumes, _, _, positives = held_out
    result = saliency(trained_toy, volumes[positives[0], 0], 1)
    assert result.scores.shape == (SIDE, SIDE, SIDE)
    assert result.scores.min() == 0.0 and result.scores.max() == 1.0
    assert result.method == "saliency" and result.raw_max > result.raw_min >= 0


@pytest.mark.parametrize(("layer", "coarse"), [("layer3", (2, 4, 4)), ("layer4", (1, 2, 2))])
def test_resnet_grad_cam_shapes_ranges_and_model_state(layer, coarse):
    torch.manual_seed(0)
    model = build_model(num_classes=2).train()
    volume = torch.rand(32, 64, 64)
    result = grad_cam(model, volume, None, layer)
    # the model is handed back as it came: training mode, trainable parameters
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert result.scores.shape == (32, 64, 64) and result.scores.dtype == np.float32
    assert result.target == 1 and result.layer == layer
    # this seeded model and input give a map with a spread, scaled to reach 1 exactly
    assert not result.flat, (result.raw_min, result.raw_max)
    assert result.scores.min() >= 0.0 and result.scores.max() == 1.0
    # the map comes from this coarse grid, upsampled trilinearly to the input
    feature = model.get_submodule(layer)
    shapes = []
    handle = feature.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[2:])))
    with torch.no_grad():
        model.eval()(volume[None, None])
    handle.remove()
    assert shapes == [coarse]


def test_survival_model_explains_its_single_output():
    model = build_model(num_classes=1)
    result = grad_cam(model, torch.rand(32, 64, 64), None, "layer3")
    assert result.target == 0


def test_explain_config_rejects_unknown_choices():
    with pytest.raises(ValueError, match="method"):
        ExplainConfig(method="lime")
    with pytest.raises(ValueError, match="needs a layer"):
        ExplainConfig(layer="")
    with pytest.raises(ValueError, match="'layer9' is not a layer of this network"):
        grad_cam(build_model(), torch.rand(16, 32, 32), None, "layer9")


@pytest.mark.parametrize("name", ["densenet121", "seresnet50", "fmcib", "vit"])
def test_each_network_is_explained_by_what_applies_to_it(name):
    """Grad-CAM at each of the network's own layers, finer first; saliency for the ViT, which
    has no convolutional feature map."""
    torch.manual_seed(0)
    model = build_model(name, input_shape=(32, 64, 64))
    volume = torch.rand(32, 64, 64)
    layers = gradcam_layers(name)
    assert (methods_for(name) == ("saliency",)) == (name == "vit") == (not layers)
    sizes = []
    for layer in layers:
        result = grad_cam(model, volume, None, layer)
        assert result.scores.shape == (32, 64, 64) and result.layer == layer
        hook = model.get_submodule(layer).register_forward_hook(
            lambda m, i, o: sizes.append(o.shape[2:].numel())
        )
        with torch.no_grad():
            model.eval()(volume[None, None])
        hook.remove()
    assert sizes == sorted(sizes, reverse=True)  # the first layer is the finer
    assert saliency(model, volume).scores.shape == (32, 64, 64)


def test_a_hot_input_voxel_lands_on_the_ct_voxels_it_was_sampled_from():
    # input voxel k samples CT index 0.5 + 2k on every axis: CT voxels 2k and 2k+1 (scale 2)
    geometry = InputGeometry(
        offset_zyx=(0.5, 0.5, 0.5),
        scale_zyx=(2.0, 2.0, 2.0),
        crop_box_zyx=(0, 8, 0, 8, 0, 8),
        ct_shape_zyx=(10, 12, 12),
        ct_spacing_mm=(3.0, 1.0, 1.0),
        ct_origin_mm=(-5.0, -6.0, 10.0),
        ct_direction=((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
    )
    values = np.zeros((4, 4, 4), dtype=np.float32)
    values[1, 2, 2] = 1.0
    mapped = input_map_to_ct(values, geometry)
    full = mapped.full()
    assert full.shape == (10, 12, 12)
    # by hand: CT voxels 2 and 3 sit at input 0.75 and 1.25, each 3/4 of voxel 1 per axis
    assert full[2:4, 4:6, 4:6] == pytest.approx(np.full((2, 2, 2), 0.75**3))
    # per axis the weights are 1/4, 3/4, 3/4, 1/4: the mass grows by the voxel ratio, 2**3
    assert full.sum() == pytest.approx(8.0)
    hot = hottest_voxel(full)
    assert hot[0] in (2, 3) and hot[1] in (4, 5) and hot[2] in (4, 5)
    centre_ct = geometry.input_to_ct_index(np.array([[1, 2, 2]]))[0]
    assert centre_ct.tolist() == [2.5, 4.5, 4.5]
    # and into patient mm: (x, y, z) = origin + index * spacing
    assert geometry.input_to_patient_mm(np.array([[1, 2, 2]]))[0].tolist() == [-0.5, -1.5, 17.5]
    # a plane of the CT map equals the same slice of the full map
    assert np.array_equal(mapped.plane(0, 3), full[3])
    assert np.array_equal(mapped.plane(2, 5), full[:, :, 5])
    assert not mapped.plane(0, 9).any()


@pytest.mark.parametrize("crop_mode", ["bbox", "fixed_fov"])
def test_the_input_mapped_back_matches_the_ct_it_came_from(crop_mode):
    """Preprocess a synthetic CT, then map the network input back: it must fall on the CT."""
    rng = np.random.default_rng(3)
    hu = rng.normal(-700, 50, (30, 60, 60)).astype(np.float32)
    zz, yy, xx = np.mgrid[:30, :60, :60]
    gtv = ((zz - 14) / 6) ** 2 + ((yy - 25) / 9) ** 2 + ((xx - 33) / 8) ** 2 <= 1
    hu[gtv] = 40.0
    spacing = (3.0, 1.0, 1.0)
    config = PreprocessConfig(crop_mode=crop_mode, out_depth=16, out_height=32, out_width=32)
    config = (
        config
        if crop_mode == "bbox"
        else PreprocessConfig(
            crop_mode=crop_mode, fov_mm=40.0, out_depth=16, out_height=32, out_width=32
        )
    )
    image, mask, offset, scale, box = preprocess_arrays(hu, gtv, spacing, config)
    geometry = InputGeometry(
        tuple(offset),
        tuple(scale),
        tuple(box),
        hu.shape,
        spacing,
        (0.0, 0.0, 0.0),
        ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
    )
    back = input_map_to_ct(mask.astype(np.float32), geometry).full() >= 0.5
    dice = 2 * (back & gtv).sum() / (back.sum() + gtv.sum())
    assert dice > 0.85
    # the image too: mapped back, it is the windowed CT again inside the field of view
    mapped = input_map_to_ct(image, geometry)
    z0, z1, y0, y1, x0, x1 = mapped.box
    windowed = np.clip((hu[z0:z1, y0:y1, x0:x1] + 1000) / 2000, 0, 1)
    assert np.corrcoef(mapped.scores.ravel(), windowed.ravel())[0, 1] > 0.8


# --- a real run's model, the disk cache and test-time augmentation ------------------------------


@pytest.fixture(scope="module")
def fixture_run(dashboard_artifacts):
    from nsclc_engine.dashboard import patient as patient_view
    from nsclc_engine.dashboard import run_view

    view = run_view.load_run(dashboard_artifacts / "runs" / "fixture")
    patient = view.predictions[view.predictions.split == "test"].iloc[0]
    return view, patient, patient_view.patient_case(view, patient.patient_id)


def test_maps_are_cached_per_patient_layer_and_checkpoint(fixture_run):
    from nsclc_engine.explain.cache import explain_patient

    view, patient, case = fixture_run
    config = ExplainConfig(method="gradcam", layer="layer4")
    first, cached_first = explain_patient(
        view.run_dir, 0, patient.patient_id, case.input_image, config
    )
    second, cached_second = explain_patient(
        view.run_dir, 0, patient.patient_id, case.input_image, config
    )
    assert (cached_first, cached_second) == (False, True)
    assert np.array_equal(first.scores, second.scores) and second.layer == "layer4"
    assert first.scores.shape == case.input_image.shape
    other, cached_other = explain_patient(
        view.run_dir, 0, patient.patient_id, case.input_image, ExplainConfig(method="saliency")
    )
    assert not cached_other and other.method == "saliency"
    # a rebuilt cohort may give the same patient ID another input: that is not a cache hit
    _, cached_new_input = explain_patient(
        view.run_dir, 0, patient.patient_id, case.input_image[::-1].copy(), config
    )
    assert not cached_new_input


def test_tta_interval_brackets_and_reproduces_the_logged_prediction(fixture_run):
    from nsclc_engine.explain.cache import patient_uncertainty
    from nsclc_engine.explain.inference import load_run_model, tta_interval

    view, patient, case = fixture_run
    model = load_run_model(view.run_dir, 0)
    result = tta_interval(model, case.input_image, "classification", samples=8, seed=0)
    # the unaugmented input gives exactly the probability training wrote for this patient
    assert result["value"] == pytest.approx(patient.y_prob, abs=1e-5)
    assert 0 <= result["low"] <= result["mean"] <= result["high"] <= 1
    assert tta_interval(model, case.input_image, "classification", 8, 0) == result
    cached = patient_uncertainty(
        view.run_dir, 0, patient.patient_id, case.input_image, "classification"
    )
    assert cached == patient_uncertainty(
        view.run_dir, 0, patient.patient_id, case.input_image, "classification"
    )


def test_training_patients_are_predicted_without_augmentation(fixture_run):
    """The run trained with augmentation (every class); its logged predictions of training
    patients must still be of their plain input (as on the Patient page)."""
    from nsclc_engine.dashboard import patient as patient_view
    from nsclc_engine.explain.inference import load_run_model, tta_interval

    view, _, _ = fixture_run
    train = view.predictions[view.predictions.split == "train"]
    minority = int(train.y_true.value_counts().idxmin())
    model = load_run_model(view.run_dir, 0)
    for row in train[train.y_true == minority].head(2).itertuples():
        case = patient_view.patient_case(view, row.patient_id)
        value = tta_interval(model, case.input_image, "classification", samples=2)["value"]
        assert value == pytest.approx(row.y_prob, abs=1e-5)
