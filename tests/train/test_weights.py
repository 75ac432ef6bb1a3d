"""Local pretrained weights in each published layout: every tensor of the encoder is used,
what does not fit is named, and the file is recorded."""

import pytest
import torch

from nsclc_engine.train.model import build_model
from nsclc_engine.train.weights import file_sha256, load_pretrained, network_of, read_weights
from tests.helpers import medicalnet_state


def fmcib_layouts(trunk: dict) -> dict[str, object]:
    """FMCIB's two published layouts (its loader reads both) and the prefixes of the second."""
    heads = {"model.heads.0.0.weight": torch.zeros(2, 2), "model.heads.0.0.bias": torch.zeros(2)}
    return {
        "trunk_state_dict (FMCIB, VISSL)": {"trunk_state_dict": trunk},
        "state_dict with model.trunk. prefixes (FMCIB)": {
            "state_dict": {f"model.trunk.{k}": v for k, v in trunk.items()} | heads
        },
        "state_dict with model.backbone. prefixes (FMCIB)": {
            "state_dict": {f"model.backbone.{k}": v for k, v in trunk.items()}
        },
    }


@pytest.mark.slow
def test_each_fmcib_layout_loads_every_trunk_tensor(fmcib_trunk, tmp_path):
    model = build_model("fmcib")
    for layout, payload in fmcib_layouts(fmcib_trunk).items():
        path = tmp_path / "fmcib.torch"
        torch.save(payload, path)
        report = load_pretrained(model, path, "fmcib")
        assert report.layout == layout
        assert set(report.loaded) == set(fmcib_trunk)  # every key of the trunk is used
        assert set(report.missing) == {"fc.weight", "fc.bias"}  # the new head only
        assert set(report.skipped) <= {"model.heads.0.0.weight", "model.heads.0.0.bias"}
        assert report.sha256 == file_sha256(path)
        torch.testing.assert_close(model.conv1.weight, fmcib_trunk["conv1.weight"].float())
        record = report.record()
        assert record["tensors_loaded"] == len(fmcib_trunk) and record["sha256"] == report.sha256


@pytest.mark.parametrize("depth", [10, 18, 34, 50])
def test_each_medicalnet_depth_loads_every_backbone_tensor_and_is_recognised(depth, tmp_path):
    state = medicalnet_state(depth)
    path = tmp_path / f"resnet_{depth}_23dataset.pth"
    torch.save({"state_dict": state}, path)
    name = f"resnet{depth}"
    assert network_of(path, ("resnet10", "resnet18", "resnet34", "resnet50")) == name
    report = load_pretrained(build_model(name), path, name)
    assert report.layout == "state_dict (MedicalNet)"
    assert set(report.loaded) == {k.removeprefix("module.") for k in state} - {"conv_seg.0.weight"}
    assert report.skipped == ("conv_seg.0.weight",)
    assert set(report.missing) == {"fc.weight", "fc.bias"}  # only the new classifier


def test_a_file_of_another_family_names_missing_and_unexpected_tensors_and_the_architecture(
    tmp_path,
):
    path = tmp_path / "resnet_18.pth"
    torch.save({"state_dict": medicalnet_state(18)}, path)
    with pytest.raises(ValueError) as error:
        network_of(path, ("fmcib",))
    message = str(error.value)
    assert "does not fit model fmcib" in message
    assert "305 tensors of the network missing from the file (bn1.bias, " in message
    assert "51 tensors in the file the network has no place for (bn1.bias, " in message
    assert "Expected MONAI resnet50(widen_factor=2, conv1_t_stride=2" in message


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([1, 2, 3], "expected a state dict of tensors"),
        ({"state_dict": {"a": "text"}}, "expected a state dict of tensors"),
    ],
)
def test_what_is_not_a_state_dict_is_named(tmp_path, payload, message):
    path = tmp_path / "odd.pt"
    torch.save(payload, path)
    with pytest.raises(ValueError, match=message):
        read_weights(path)
    (tmp_path / "text.pt").write_text("not weights")
    with pytest.raises(ValueError, match=r"text\.pt: not a PyTorch weights file"):
        read_weights(tmp_path / "text.pt")


def test_a_pickled_object_is_refused_rather_than_run(tmp_path):
    """``weights_only=True``: a file that would run code when unpickled is not loaded."""

    class Payload:
        def __reduce__(self):
            return (print, ("ran",))

    path = tmp_path / "evil.pt"
    torch.save({"state_dict": Payload()}, path)
    with pytest.raises(ValueError, match="not a PyTorch weights file"):
        read_weights(path)


def test_a_vit_file_is_recognised_at_the_input_size_it_was_trained_for(tmp_path):
    """The ViT's patch grid and position embedding depend on the preset: a file saved at the
    paper preset fits there, and only there."""
    path = tmp_path / "vit.pt"
    torch.save(build_model("vit", input_shape=(100, 128, 128)).state_dict(), path)
    assert network_of(path, ("vit",), (100, 128, 128)) == "vit"
    with pytest.raises(ValueError, match=r"vit\.patch_embedding"):
        network_of(path, ("vit",), (32, 64, 64))
