"""The Train page: the form's validation on top of the chosen protocol."""

from nsclc_engine.dashboard import train as train_view
from nsclc_engine.train.config import TrainConfig


def test_train_form_validation_names_what_to_fix(tmp_path):
    config, errors = train_view.validate_train_form(
        {"source": "dicom", "dicom": "/nope", "clinical": "", "lr": 2.0, "folds": 1}
    )
    assert config is None and len(errors) == 4
    config, errors = train_view.validate_train_form({"source": "demo", "label": "os_2y"})
    assert errors == [] and config == TrainConfig(label="os_2y")


def test_train_form_keeps_the_hidden_settings_of_the_chosen_protocol():
    from nsclc_engine.train.config import protocol_config

    config, errors = train_view.validate_train_form(
        {"source": "demo", "protocol": "report", "lr": 1e-3, "folds": 0}
    )
    assert errors == [] and config == protocol_config("report")
    assert config.label == "deadstatus_event" and config.augment == "minority"
    assert config.monitor == "loss"
    assert config.augmentation_warning
    assert train_view.protocol_defaults("house")["augment"] == "all"


def test_train_form_survival_task_takes_the_event_as_its_label():
    config, errors = train_view.validate_train_form(
        {"source": "demo", "label": "os_2y", "task": "survival", "lr": 1e-3, "folds": 0}
    )
    assert errors == [] and (config.task, config.label) == ("survival", "deadstatus_event")


def test_train_form_refuses_a_network_the_preset_cannot_take_and_weights_that_do_not_fit(
    tmp_path,
):
    import torch

    from tests.helpers import medicalnet_state

    form = {"source": "demo", "label": "os_2y", "lr": 1e-3, "folds": 0, "preset": "smoke"}
    config, errors = train_view.validate_train_form(form | {"model": "densenet121"})
    assert config is None and errors[0].startswith("model densenet121: the smoke preset's input")
    weights = tmp_path / "resnet_18_23dataset.pth"
    torch.save({"state_dict": medicalnet_state(18)}, weights)
    config, errors = train_view.validate_train_form(
        form | {"model": "resnet50", "pretrained": str(weights), "encoder": "freeze"}
    )
    assert config is None and "does not fit model resnet50" in errors[0]
    config, errors = train_view.validate_train_form(
        form | {"model": "resnet18", "pretrained": str(weights), "encoder": "freeze"}
    )
    assert errors == [] and (config.encoder, config.pretrained) == ("freeze", str(weights))
