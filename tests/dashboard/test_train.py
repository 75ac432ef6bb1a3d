"""The Train page: the form's validation on top of the chosen protocol."""

from nsclc_engine.access import LOCAL_USER as LOCAL
from nsclc_engine.dashboard import train as train_view
from nsclc_engine.train.config import TrainConfig


def test_train_form_validation_names_what_to_fix(tmp_path):
    config, errors = train_view.validate_train_form(
        {"source": "dicom", "dicom": "/nope", "clinical": "", "lr": 2.0, "folds": 1},
        tmp_path,
        LOCAL,
        (),
    )
    assert config is None and len(errors) == 4
    assert errors[:2] == [
        "DICOM folder '/nope' is not a folder on this server",
        "clinical CSV: give a path",
    ]
    config, errors = train_view.validate_train_form(
        {"source": "demo", "label": "os_2y"}, tmp_path, LOCAL, ()
    )
    assert errors == [] and config == TrainConfig(label="os_2y")


def test_train_form_keeps_the_hidden_settings_of_the_chosen_protocol(tmp_path):
    from nsclc_engine.train.config import protocol_config

    config, errors = train_view.validate_train_form(
        {"source": "demo", "protocol": "report", "lr": 1e-3, "folds": 0}, tmp_path, LOCAL, ()
    )
    assert errors == [] and config == protocol_config("report")
    assert config.label == "deadstatus_event" and config.augment == "minority"
    assert config.monitor == "loss"
    assert config.augmentation_warning
    assert train_view.protocol_defaults("house")["augment"] == "all"


def test_train_form_survival_task_takes_the_event_as_its_label(tmp_path):
    config, errors = train_view.validate_train_form(
        {"source": "demo", "label": "os_2y", "task": "survival", "lr": 1e-3, "folds": 0},
        tmp_path,
        LOCAL,
        (),
    )
    assert errors == [] and (config.task, config.label) == ("survival", "deadstatus_event")


def test_train_form_refuses_a_network_the_preset_cannot_take_and_weights_that_do_not_fit(
    tmp_path,
):
    import torch

    from tests.helpers import medicalnet_state

    form = {"source": "demo", "label": "os_2y", "lr": 1e-3, "folds": 0, "preset": "smoke"}
    config, errors = train_view.validate_train_form(
        form | {"model": "densenet121"}, tmp_path, LOCAL, ()
    )
    assert config is None and errors[0].startswith("model densenet121: the smoke preset's input")
    weights = tmp_path / "weights" / "resnet_18_23dataset.pth"
    weights.parent.mkdir()
    torch.save({"state_dict": medicalnet_state(18)}, weights)
    chosen = {"pretrained": weights.name, "encoder": "freeze"}
    config, errors = train_view.validate_train_form(
        form | {"model": "resnet50"} | chosen, tmp_path, LOCAL, ()
    )
    assert config is None and "does not fit model resnet50" in errors[0]
    config, errors = train_view.validate_train_form(
        form | {"model": "resnet18"} | chosen, tmp_path, LOCAL, ()
    )
    assert errors == [] and (config.encoder, config.pretrained) == ("freeze", str(weights))
    # a file anywhere else on the server is not offered and not loaded
    elsewhere = {"model": "resnet18", "pretrained": str(tmp_path / "other.pth")}
    torch.save({"state_dict": medicalnet_state(18)}, tmp_path / "other.pth")
    config, errors = train_view.validate_train_form(form | elsewhere, tmp_path, LOCAL, ())
    assert config is None and "not a file in" in errors[0]


def test_the_form_makes_an_experiment_of_one_run_per_seed(tmp_path):
    config = TrainConfig(epochs=2)
    launches, errors = train_view.experiment_launches(config, "2,0", "", tmp_path)
    name = "classification-os_2y-demo-resnet18"
    assert errors == [] and [run_id for run_id, _ in launches] == [f"{name}-seed2", f"{name}-seed0"]
    assert [(c.seed, c.experiment, c.epochs) for _, c in launches] == [(2, name, 2), (0, name, 2)]
    (tmp_path / "runs" / "mine-seed1").mkdir(parents=True)
    launches, errors = train_view.experiment_launches(config, "0-1", "mine", tmp_path)
    assert launches == [] and errors == [
        "experiment 'mine' has runs already (mine-seed1); name another"
    ]
    assert train_view.experiment_launches(config, "7", "", tmp_path)[1] == [
        "Seeds '7': an experiment needs two seeds or more"
    ]
