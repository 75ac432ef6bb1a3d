import pytest
import torch

from nsclc_engine.train.config import BACKBONES
from nsclc_engine.train.model import build_model, load_pretrained, parameter_count


def test_stride_two_stem_and_two_logits():
    model = build_model()
    assert model.conv1.stride == (2, 2, 2)
    assert model(torch.zeros(2, 1, 16, 32, 32)).shape == (2, 2)


def test_loads_a_medicalnet_format_file_by_name_and_shape(tmp_path):
    from monai.networks.nets import resnet18

    # MedicalNet: a backbone without the classifier, saved from DataParallel, wrapped
    backbone = resnet18(
        spatial_dims=3,
        n_input_channels=1,
        conv1_t_stride=2,
        shortcut_type="A",
        bias_downsample=True,
        feed_forward=False,
    )
    state = {f"module.{name}": tensor for name, tensor in backbone.state_dict().items()}
    state["module.conv_seg.0.weight"] = torch.zeros(3, 3)  # MedicalNet's segmentation head
    state["module.layer1.0.conv1.weight"] = torch.zeros(1, 1, 1, 1, 1)  # wrong shape: skipped
    path = tmp_path / "resnet_18_23dataset.pth"
    torch.save({"state_dict": state}, path)

    model = build_model()
    report = load_pretrained(model, path)
    assert set(report.missing) == {"fc.weight", "fc.bias", "layer1.0.conv1.weight"}
    assert set(report.skipped) == {"conv_seg.0.weight", "layer1.0.conv1.weight"}
    assert len(report.loaded) == len(backbone.state_dict()) - 1
    torch.testing.assert_close(model.conv1.weight, backbone.conv1.weight)


def test_a_file_with_nothing_usable_is_an_error(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"encoder.weight": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="no tensor matches"):
        load_pretrained(build_model(), path)


def test_group_norm_replaces_every_batch_norm_and_still_loads_medicalnet(tmp_path):
    model = build_model(norm="group")
    assert not any(isinstance(m, torch.nn.BatchNorm3d) for m in model.modules())
    assert model(torch.zeros(1, 1, 16, 32, 32)).shape == (1, 2)  # batch of one is fine
    path = tmp_path / "medicalnet.pth"
    torch.save({"state_dict": build_model().state_dict()}, path)
    report = load_pretrained(model, path)
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
}


@pytest.mark.parametrize("name", BACKBONES)
def test_every_backbone_builds_with_the_stride_two_stem_and_medicalnets_shortcuts(name):
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
    counts = {name: parameter_count(build_model(name)) for name in BACKBONES}
    assert counts["resnet10"] < counts["resnet18"] < counts["resnet34"]
    assert counts["resnet18"] < counts["resnet50"] < counts["resnet34"]


@pytest.mark.parametrize("name", ["resnet10", "resnet34", "resnet50"])
def test_medicalnet_layouts_of_other_depths_load_every_backbone_tensor(tmp_path, name):
    """MedicalNet's files for each depth (shortcut B without downsample bias for 10 and 50,
    A with it for 18 and 34): every tensor but the new classifier loads by name."""
    from monai.networks import nets
    from monai.networks.nets.resnet import get_medicalnet_pretrained_resnet_args

    bias, shortcut = get_medicalnet_pretrained_resnet_args(int(name[6:]))
    backbone = getattr(nets, name)(
        spatial_dims=3,
        n_input_channels=1,
        conv1_t_stride=2,
        shortcut_type=shortcut,
        bias_downsample=bias,
        feed_forward=False,
    )
    state = {f"module.{key}": tensor for key, tensor in backbone.state_dict().items()}
    torch.save({"state_dict": state}, tmp_path / f"resnet_{name[6:]}.pth")
    report = load_pretrained(build_model(name), tmp_path / f"resnet_{name[6:]}.pth")
    assert set(report.missing) == {"fc.weight", "fc.bias"} and not report.skipped


def test_an_unknown_backbone_is_named_with_the_choices():
    with pytest.raises(ValueError, match="model 'vgg': choose one of resnet10, resnet18"):
        build_model("vgg")


def test_a_file_of_another_depth_is_refused(tmp_path):
    torch.save({"state_dict": build_model("resnet18").state_dict()}, tmp_path / "resnet_18.pth")
    with pytest.raises(ValueError, match="most likely for another depth"):
        load_pretrained(build_model("resnet50"), tmp_path / "resnet_18.pth")
