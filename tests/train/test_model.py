import pytest
import torch

from nsclc_engine.train.model import build_resnet18, load_pretrained


def test_stride_two_stem_and_two_logits():
    model = build_resnet18()
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

    model = build_resnet18()
    report = load_pretrained(model, path)
    assert set(report.missing) == {"fc.weight", "fc.bias", "layer1.0.conv1.weight"}
    assert set(report.skipped) == {"conv_seg.0.weight", "layer1.0.conv1.weight"}
    assert len(report.loaded) == len(backbone.state_dict()) - 1
    torch.testing.assert_close(model.conv1.weight, backbone.conv1.weight)


def test_a_file_with_nothing_usable_is_an_error(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"encoder.weight": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="no tensor matches"):
        load_pretrained(build_resnet18(), path)


def test_group_norm_replaces_every_batch_norm_and_still_loads_medicalnet(tmp_path):
    model = build_resnet18(norm="group")
    assert not any(isinstance(m, torch.nn.BatchNorm3d) for m in model.modules())
    assert model(torch.zeros(1, 1, 16, 32, 32)).shape == (1, 2)  # batch of one is fine
    path = tmp_path / "medicalnet.pth"
    torch.save({"state_dict": build_resnet18().state_dict()}, path)
    report = load_pretrained(model, path)
    assert all(
        name.endswith(("running_mean", "running_var", "num_batches_tracked"))
        for name in report.skipped
    )
    assert "layer4.1.bn2.weight" in report.loaded
    with pytest.raises(ValueError, match="norm"):
        build_resnet18(norm="layer")
