"""End-to-end training on a tiny synthetic cohort with the smoke preset (seconds on a CPU)."""

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from nsclc_engine.runs import validate_run_id
from nsclc_engine.train.__main__ import main
from nsclc_engine.train.config import BACKBONES
from nsclc_engine.train.prepare import shuffled
from tests.helpers import PROJECT, free_port


def train_args(source: Path, artifacts: Path, run_id: str, *extra: str) -> list[str]:
    return [
        "--dicom",
        str(source / "dicom"),
        "--clinical",
        str(source / "clinical.csv"),
        "--label",
        "os_2y",
        "--preset",
        "smoke",
        "--artifacts",
        str(artifacts),
        "--run-id",
        run_id,
        "--quiet",
        *extra,
    ]


def test_a_run_leaves_a_complete_reproducible_folder(tiny_source, tmp_path, capsys):
    assert main(train_args(tiny_source, tmp_path, "r1", "--epochs", "2")) == 0
    run = tmp_path / "runs" / "r1"
    for name in (
        "config.json",
        "splits.json",
        "history.jsonl",
        "checkpoint_best.pt",
        "checkpoint_last.pt",
        "predictions.csv",
        "metrics.json",
        "threshold.json",
        "calibration.json",
        "report.html",
        "status.json",
        "train.log",
    ):
        assert (run / name).is_file(), name
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "finished" and status["progress"] == 1.0
    config = json.loads((run / "config.json").read_text())
    assert config["label"] == "os_2y" and config["resolved"]["versions"]["torch"]
    assert config["resolved"]["preprocess"]["out_depth"] == 16
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in history] == [1, 2]
    assert {"train_loss", "val_loss", "val_auc", "val_f1", "lr", "seconds"} <= set(history[0])
    predictions = pd.read_csv(run / "predictions.csv")
    assert list(predictions.columns) == ["patient_id", "split", "fold", "y_true", "y_prob", "logit"]
    splits = json.loads((run / "splits.json").read_text())["splits"][0]
    for part, patients in splits.items():
        assert sorted(predictions[predictions.split == part].patient_id) == patients
    assert predictions.y_prob.between(0, 1).all()
    checkpoint = torch.load(run / "checkpoint_best.pt", weights_only=True)
    assert checkpoint["config"]["preset"] == "smoke" and "model" in checkpoint
    metrics = json.loads((run / "metrics.json").read_text())
    test_auc = metrics["splits"]["test"]["auc"]
    assert test_auc["ci_low"] <= test_auc["auc"] <= test_auc["ci_high"]
    assert "test: n=" in capsys.readouterr().out


def test_bad_settings_are_refused_with_the_valid_keys(tiny_source, tmp_path, capsys):
    assert main(train_args(tiny_source, tmp_path, "r2", "--set", "learning_rate=1")) == 2
    assert "valid keys" in capsys.readouterr().err
    assert main(train_args(tiny_source, tmp_path, "../escape")) == 2
    with pytest.raises(ValueError, match="no paths"):
        validate_run_id("a/b")


def test_shuffled_labels_keep_the_class_balance_and_move_labels():
    labels = {f"P{i:02d}": int(i < 12) for i in range(40)}
    mixed = shuffled(labels, seed=0)
    assert sorted(mixed.values()) == sorted(labels.values()) and mixed != labels
    assert shuffled(labels, seed=0) == mixed


@pytest.mark.slow
def test_two_process_ddp_on_gloo_writes_artifacts_once(tiny_source, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(PROJECT), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),  # a fixed port collides with a parallel run of the suite
        "-m",
        "nsclc_engine.train",
        *train_args(tiny_source, tmp_path, "ddp", "--epochs", "1", "--set", "model=vit"),
    ]
    result = subprocess.run(
        command, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "runs" / "ddp"
    predictions = pd.read_csv(run / "predictions.csv")
    assert predictions.patient_id.is_unique  # gathered from both ranks, written once
    assert (run / "train.log").read_text().count("finished: test AUC") == 1
    assert len((run / "history.jsonl").read_text().splitlines()) == 1


def test_a_survival_run_trains_a_cox_head_and_reports_c_indices(dashboard_artifacts):
    run = dashboard_artifacts / "runs" / "fixture-survival"  # trained by the fixture
    predictions = pd.read_csv(run / "predictions.csv")
    assert list(predictions.columns) == [
        "patient_id",
        "split",
        "fold",
        "risk",
        "time_days",
        "event",
        "survival_365d",  # S(t) at the horizons, written by the evaluation
        "survival_730d",
    ]
    from nsclc_engine.runs import read_survival_baselines
    from nsclc_engine.stats.survival_probability import Baseline

    baseline = Baseline.from_dict(read_survival_baselines(run)[0]["raw"])
    assert (
        baseline.fitted_on == "validation"
        and baseline.n == (predictions.split == "validation").sum()
    )
    np.testing.assert_allclose(
        predictions.survival_730d, baseline.survival(predictions.risk, [730.0])[:, 0]
    )
    checkpoint = torch.load(run / "checkpoint_best.pt", weights_only=True)
    assert checkpoint["model"]["fc.weight"].shape[0] == 1  # one output: the log hazard ratio
    metrics = json.loads((run / "metrics.json").read_text())
    test = metrics["splits"]["test"]["c_index"]
    assert test["ci_low"] <= test["c_index"] <= test["ci_high"]
    assert "uno_c_index" in metrics["folds"][0] and "risk_groups" in metrics["folds"][0]
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert "val_c_index" in history[0]
    # what decides whether the run repeats bit for bit, as an experiment's summary reads it
    resolved = json.loads((run / "config.json").read_text())["resolved"]
    assert resolved["device"] == "cpu" and resolved["threads"] >= 1
    assert resolved["versions"]["torch"] == torch.__version__ and resolved["world_size"] == 1
    # the baselines and the fusion on the same patients, with the image model's own risks
    models = pd.read_csv(run / "survival_models.csv")
    assert {"image", "clinical", "volume", "fusion"} <= set(models.columns)
    merged = models.merge(predictions, on=["patient_id", "split", "fold"])
    assert len(merged) == len(predictions) and np.allclose(merged.image, merged.risk)
    c_index = metrics["models"]["c_index"]
    assert set(c_index) == {"image", "clinical", "volume", "fusion"}
    assert c_index["image"]["test"]["c_index"] == pytest.approx(test["c_index"])
    assert set(metrics["models"]["fusion_coefficients"][0]) == {
        "fold",
        "image",
        "clinical",
        "volume",
    }
    report = (run / "report.html").read_text()
    assert "Image vs clinical vs volume vs fusion" in report
    from nsclc_engine.train.config import TrainConfig, protocol_config

    # the event of a survival run is deadstatus_event, whatever label a protocol carried
    assert TrainConfig(task="survival", label="os_2y").label == "deadstatus_event"
    assert replace(protocol_config("house"), task="survival").label == "deadstatus_event"


def test_shuffling_moves_label_and_time_together():
    labels = {f"P{i}": i % 2 for i in range(10)}
    times = {f"P{i}": float(100 + i) for i in range(10)}
    new_labels, new_times = shuffled(labels, 3, times)
    pairs = {(labels[p], times[p]) for p in labels}
    assert {(new_labels[p], new_times[p]) for p in labels} == pairs
    assert new_labels == shuffled(labels, 3)


def test_protocols_and_runs_written_before_them(tmp_path):
    from nsclc_engine.train.config import build_config, load_run_config, protocol_config

    report = build_config(None, ["protocol=report", "seed=3"])
    assert report == replace(protocol_config("report"), seed=3)
    assert report.augmentation_warning and report.monitor == "loss"
    assert build_config(None, ["seed=3"]) == replace(protocol_config("house"), seed=3)
    with pytest.raises(ValueError, match="protocol 'nope'"):
        build_config(None, ["protocol=nope"])
    # a config.json from before protocols: resumes with what it trained with then
    old = {"config_class": "TrainConfig", "label": "deadstatus_event", "augment": "minority"}
    (tmp_path / "config.json").write_text(json.dumps(old))
    config = load_run_config(tmp_path)
    assert (config.monitor, config.context_mm, config.cox_bank) == ("loss", None, 0)
    assert config.protocol == "report"


@pytest.mark.slow
@pytest.mark.parametrize("name", [name for name in BACKBONES if name != "fmcib"])
def test_every_backbone_trains_an_epoch_and_records_its_size(tiny_source, tmp_path, name):
    """Each network of the issue's list; FMCIB's trunk (184 M parameters, 30 s an epoch here)
    is a ResNet-50 the ResNets cover, and its loading, features and Grad-CAM are tested."""
    from nsclc_engine.preprocess.volumes import PRESETS
    from nsclc_engine.train.model import build_model, parameter_count

    extra = ["--epochs", "1", "--set", f"model={name}", "--set", "bootstrap_resamples=100"]
    extra += ["--set", "device=cpu"]  # the memory measure is the CPU's
    preset = "demo" if name == "densenet121" else "smoke"  # DenseNet needs 32 voxels an axis
    extra += ["--preset", preset]
    assert main(train_args(tiny_source, tmp_path, name, *extra, "--no-queue")) == 0
    folder = tmp_path / "runs" / name
    status = json.loads((folder / "status.json").read_text())
    assert status["state"] == "finished"
    network = status["model"]
    assert network["name"] == name
    model = build_model(name, input_shape=PRESETS[preset].out_shape)
    assert network["parameters"] == network["trainable_parameters"] == parameter_count(model)
    assert network["peak_memory_mb"] > 0 and network["memory_measured"] == "process peak RSS"
    assert json.loads((folder / "config.json").read_text())["model"] == name
    checkpoint = torch.load(folder / "checkpoint_best.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(checkpoint["model"])  # the checkpoint is that network


def test_a_network_the_preset_is_too_small_for_fails_in_one_line_before_any_run(
    tiny_source, tmp_path, capsys
):
    extra = ["--set", "model=densenet121", "--no-queue"]
    assert main(train_args(tiny_source, tmp_path, "dense", *extra)) == 2
    error = capsys.readouterr().err
    assert "model densenet121: the smoke preset's input of 16x32x32 voxels is too small" in error
    assert not (tmp_path / "runs" / "dense").exists()


@pytest.mark.slow
@pytest.mark.parametrize("encoder", ["freeze", "fine-tune"])
def test_a_pretrained_encoder_is_frozen_or_fine_tuned_slower_and_recorded(
    tiny_source, tmp_path, encoder
):
    from nsclc_engine.train.weights import file_sha256
    from tests.helpers import medicalnet_state

    weights = tmp_path / "resnet_10_23dataset.pth"
    state = medicalnet_state(10)
    torch.save({"state_dict": state}, weights)
    extra = ["--epochs", "1", "--pretrained", str(weights), "--set", "model=resnet10"]
    extra += ["--set", f"encoder={encoder}", "--set", "bootstrap_resamples=100", "--no-queue"]
    assert main(train_args(tiny_source, tmp_path, encoder, *extra)) == 0
    folder = tmp_path / "runs" / encoder
    network = json.loads((folder / "status.json").read_text())["model"]
    record = network["pretrained"]
    assert (
        record["sha256"] == file_sha256(weights) and record["layout"] == "state_dict (MedicalNet)"
    )
    assert record["tensors_loaded"] == len(state) - 1 and record["skipped"] == ["conv_seg.0.weight"]
    assert set(record["missing"]) == {"fc.weight", "fc.bias"} and network["encoder"] == encoder
    last = torch.load(folder / "checkpoint_last.pt", map_location="cpu", weights_only=True)
    moved = {
        key
        for key, value in last["model"].items()
        if not key.startswith("fc.") and not torch.equal(value, state[f"module.{key}"])
    }
    rates = [group["lr"] for group in last["optimiser"]["param_groups"]]
    if encoder == "freeze":  # not a weight nor a batch-norm statistic moved; only the head learns
        assert not moved and network["trainable_parameters"] == 512 * 2 + 2 and rates == [3e-4]
    else:  # the encoder learns, at a tenth of the head's rate
        assert any(key.endswith(".weight") for key in moved)
        assert rates == pytest.approx([3e-5, 3e-4])


def test_pretrained_options_that_cannot_hold_are_refused_and_older_runs_keep_one_rate(tmp_path):
    from nsclc_engine.train.config import TrainConfig, load_run_config
    from nsclc_engine.train.fold import _parameter_groups
    from nsclc_engine.train.model import build_model

    weights = tmp_path / "w.pt"
    torch.save({}, weights)
    with pytest.raises(ValueError, match="encoder=freeze with norm=group"):
        TrainConfig(pretrained=str(weights), encoder="freeze", norm="group")
    with pytest.raises(ValueError, match="give its weights with --pretrained"):
        TrainConfig(encoder="freeze")
    # a pretrained run written before encoder_lr_scale trained everything at lr, in one group
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"pretrained": str(weights), "lr": 1e-3}))
    old = load_run_config(folder)
    model = build_model()
    groups = _parameter_groups(model, old)
    assert old.encoder_lr_scale == 1.0 and len(groups) == 1
    assert len(_parameter_groups(model, TrainConfig(pretrained=str(weights)))) == 2
