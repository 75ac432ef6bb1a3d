import pytest
import torch

from nsclc_engine.train.config import BACKBONES
from nsclc_engine.train.model import (
    NETWORKS,
    as_encoder,
    build_model,
    check_input,
    freeze_encoder,
    head_of,
    parameter_count,
    vit_patch,
)
from nsclc_engine.train.weights import load_pretrained
from tests.helpers import medicalnet_state

RESNETS = ("resnet10", "resnet18", "resnet34", "resnet50")


def test_stride_two_stem_and_two_logits():
    model = build_model()
    assert model.conv1.stride == (2, 2, 2)
    assert model(torch.zeros(2, 1, 16, 32, 32)).shape == (2, 2)


def test_loads_a_medicalnet_format_file_by_name_and_shape(tmp_path):
    # MedicalNet: a backbone without the classifier, with its segmentation head, from DataParallel
    state = medicalnet_state(18)
    path = tmp_path / "resnet_18_23dataset.pth"
    torch.save({"state_dict": state}, path)

    model = build_model()
    report = load_pretrained(model, path, "resnet18")
    assert set(report.missing) == {"fc.weight", "fc.bias"}
    assert set(report.skipped) == {"conv_seg.0.weight"}
    assert set(report.loaded) == {k.removeprefix("module.") for k in state} - {"conv_seg.0.weight"}
    assert report.layout == "state_dict (MedicalNet)" and len(report.sha256) == 64
    torch.testing.assert_close(model.conv1.weight, state["module.conv1.weight"])

    state["module.layer1.0.conv1.weight"] = torch.zeros(1, 1, 1, 1, 1)  # of another shape
    torch.save({"state_dict": state}, path)
    with pytest.raises(ValueError, match=r"1 tensors of the network missing from the file "):
        load_pretrained(build_model(), path, "resnet18")


def test_a_file_with_nothing_usable_is_an_error(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"encoder.weight": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="tensors in the file the network has no place for"):
        load_pretrained(build_model(), path, "resnet18")


def test_group_norm_replaces_every_batch_norm_and_still_loads_medicalnet(tmp_path):
    model = build_model(norm="group")
    assert not any(isinstance(m, torch.nn.BatchNorm3d) for m in model.modules())
    assert model(torch.zeros(1, 1, 16, 32, 32)).shape == (1, 2)  # batch of one is fine
    path = tmp_path / "medicalnet.pth"
    torch.save({"state_dict": build_model().state_dict()}, path)
    report = load_pretrained(model, path, "resnet18")
    assert all(
        name.endswith(("running_mean", "running_var", "num_batches_tracked"))
        for name in report.skipped
    )
    assert "layer4.1.bn2.weight" in report.loaded
    with pytest.raises(ValueError, match="norm"):
        build_model(norm="layer")


# parameters with two outputs, as built: a change of layout changes these
PARAMETERS = {
    "resnet10": 14356546,
    "resnet18": 32987202,
    "resnet34": 63296834,
    "resnet50": 46159170,
    "fmcib": 184486018,
    "densenet121": 11244674,
    "seresnet50": 48690162,
    "vit": 3459458,  # MONAI's 3,461,762 less the 6 blocks' unused cross-attention norms
}


@pytest.mark.parametrize("name", BACKBONES)
def test_every_network_maps_a_batch_to_logits_and_has_its_parts(name):
    model = build_model(name, input_shape=(32, 64, 64))
    assert parameter_count(model) == PARAMETERS[name]
    assert model(torch.zeros(2, 1, 32, 64, 64)).shape == (2, 2)
    width = head_of(model, name).in_features
    for layer in NETWORKS[name].gradcam_layers:  # Grad-CAM's
        assert model.get_submodule(layer) is not None
    features = as_encoder(model, name)(torch.zeros(1, 1, 32, 64, 64))
    assert features.shape == (1, width)  # the head's input: the pooled feature vector


@pytest.mark.parametrize("name", RESNETS)
def test_every_resnet_builds_with_the_stride_two_stem_and_medicalnets_shortcuts(name):
    model = build_model(name)
    assert model.conv1.stride == (2, 2, 2)
    assert model(torch.zeros(2, 1, 16, 32, 32)).shape == (2, 2)
    assert parameter_count(model) == PARAMETERS[name]
    keys = model.state_dict()
    if name in ("resnet18", "resnet34"):  # shortcut A: zero-padded identity, no tensors
        assert not any("downsample" in key for key in keys)
    else:  # shortcut B: a 1x1x1 convolution without bias, then batch norm
        first = "layer2.0.downsample.0.weight"
        widths = (128, 64) if name == "resnet10" else (512, 256)
        assert tuple(keys[first].shape) == (*widths, 1, 1, 1)
        assert "layer2.0.downsample.0.bias" not in keys
    for layer in ("layer3", "layer4"):  # Grad-CAM's
        assert isinstance(model.get_submodule(layer), torch.nn.Sequential)


def test_deeper_backbones_have_more_parameters():
    """Basic blocks grow with depth; ResNet-50's bottlenecks (1x1x1 convolutions around each
    3x3x3) hold fewer than ResNet-34's basic blocks in 3D: 46.2 M vs 63.3 M."""
    counts = {name: parameter_count(build_model(name)) for name in RESNETS}
    assert counts["resnet10"] < counts["resnet18"] < counts["resnet34"]
    assert counts["resnet18"] < counts["resnet50"] < counts["resnet34"]


def test_an_unknown_backbone_is_named_with_the_choices():
    with pytest.raises(ValueError, match="model 'vgg': choose one of resnet10, resnet18"):
        build_model("vgg")


def test_a_file_of_another_depth_is_refused_with_what_is_missing_and_unexpected(tmp_path):
    torch.save({"state_dict": build_model("resnet18").state_dict()}, tmp_path / "resnet_18.pth")
    with pytest.raises(ValueError) as error:
        load_pretrained(build_model("resnet50"), tmp_path / "resnet_18.pth", "resnet50")
    message = str(error.value)
    assert "tensors of the network missing from the file (layer1.0.bn3" in message
    assert "Expected MONAI ResNet-50 in MedicalNet's layout" in message
    assert "in all)" in message  # long lists are cut, with the count


def test_densenet_refuses_the_smoke_input_in_one_line_and_the_vit_tiles_any_input():
    with pytest.raises(
        ValueError, match=r"model densenet121: the smoke preset's input of 16x32x32"
    ):
        check_input("densenet121", (16, 32, 32), "smoke")
    check_input("densenet121", (32, 64, 64))
    for name in set(BACKBONES) - {"densenet121"}:
        check_input(name, (16, 32, 32))
    assert vit_patch((100, 128, 128)) == (20, 16, 16)  # the paper preset: 5 x 8 x 8 patches
    assert vit_patch((16, 32, 32)) == (16, 16, 16) and vit_patch((7, 9, 10)) == (7, 9, 10)
    with pytest.raises(ValueError, match="has no batch norm"):
        build_model("vit", norm="group")


def test_a_frozen_encoder_keeps_its_weights_and_statistics_and_the_head_learns():
    model = build_model("resnet10").train()
    freeze_encoder(model, "resnet10")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimiser = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model(torch.rand(4, 1, 16, 32, 32)).sum().backward()
    optimiser.step()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"fc.weight", "fc.bias"}  # no weight and no running statistic moved
    assert parameter_count(model) == 512 * 2 + 2
