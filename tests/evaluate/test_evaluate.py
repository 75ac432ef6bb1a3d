"""Evaluation of a run folder: thresholds and recalibration from validation only, files, report."""

import json

import numpy as np
import pandas as pd
import pytest

from nsclc_engine.evaluate.__main__ import main
from nsclc_engine.evaluate.classification import evaluate_predictions
from nsclc_engine.evaluate.config import EvaluateConfig
from nsclc_engine.stats.metrics import choose_threshold, metrics_at_threshold


def fake_predictions(folds=1, n=60, seed=0):
    rng = np.random.default_rng(seed)
    frames = []
    ids = [f"P{i:03d}" for i in range(n)]
    y = rng.integers(0, 2, n)
    p = 1 / (1 + np.exp(-(1.5 * y - 0.75 + rng.normal(0, 1, n))))
    for fold in range(folds):
        parts = np.array(["train"] * n, dtype=object)
        test = np.arange(n) % max(folds, 5) == fold
        validation = np.arange(n) % max(folds, 5) == (fold + 1) % max(folds, 5)
        parts[test], parts[validation] = "test", "validation"
        frames.append(
            pd.DataFrame(
                {"patient_id": ids, "split": parts, "fold": fold, "y_true": y, "y_prob": p}
            )
        )
    frame = pd.concat(frames, ignore_index=True)
    return frame.assign(logit=np.log(frame.y_prob / (1 - frame.y_prob)))


FAST = EvaluateConfig(bootstrap_resamples=200)


def test_threshold_and_recalibration_come_from_validation_only():
    predictions = fake_predictions()
    result = evaluate_predictions(predictions, FAST)
    validation = predictions[predictions.split == "validation"]
    expected = choose_threshold(validation.y_true, validation.y_prob, "youden").threshold
    assert result["metrics"]["thresholds"][0]["threshold"] == expected
    test = predictions[predictions.split == "test"]
    at = result["metrics"]["splits"]["test"]["at_threshold"]
    assert at["tp"] == metrics_at_threshold(test.y_true, test.y_prob, expected)["tp"]
    # flipping every test label changes the test scores but neither the threshold nor the map
    flipped = predictions.copy()
    is_test = flipped.split == "test"
    flipped.loc[is_test, "y_true"] = 1 - flipped.loc[is_test, "y_true"]
    again = evaluate_predictions(flipped, FAST)
    assert again["metrics"]["thresholds"] == result["metrics"]["thresholds"]
    assert again["calibration"]["recalibrators"] == result["calibration"]["recalibrators"]
    assert again["metrics"]["splits"]["test"] != result["metrics"]["splits"]["test"]
    for block in ("at_0.5", "at_threshold"):
        ci = result["metrics"]["splits"]["test"][block]["ci"]["sensitivity"]
        assert ci[0] <= result["metrics"]["splits"]["test"][block]["sensitivity"] <= ci[1]


def test_k_fold_runs_get_a_threshold_per_fold_and_fold_summaries():
    predictions = fake_predictions(folds=5)
    result = evaluate_predictions(predictions, FAST)["metrics"]
    assert [t["fold"] for t in result["thresholds"]] == list(range(5))
    per_fold = result["folds"]["per_fold"]
    assert len(per_fold) == 5 and sum(row["n"] for row in per_fold) == 60
    aucs = [row["auc"] for row in per_fold]
    assert result["folds"]["summary"]["auc"]["mean"] == pytest.approx(np.mean(aucs))
    assert result["splits"]["test"]["n"] == 60  # pooled out-of-fold: every patient once


def write_fake_run(root, run_id="r1"):
    run = root / "runs" / run_id
    run.mkdir(parents=True)
    predictions = fake_predictions()
    predictions.to_csv(run / "predictions.csv", index=False)
    (run / "config.json").write_text(json.dumps({"label": "os_2y", "preset": "demo"}))
    history = [
        {"fold": 0, "epoch": e, "train_loss": 1 / e, "val_loss": 1.1 / e, "val_auc": 0.6}
        for e in (1, 2)
    ]
    (run / "history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
    return run


def test_cli_writes_metrics_threshold_calibration_and_an_offline_report(tmp_path, capsys):
    run = write_fake_run(tmp_path)
    args = ["r1", "--artifacts", str(tmp_path), "--threshold-rule", "spec_at_sens"]
    args += ["--threshold-target", "0.8", "--set", "bootstrap_resamples=100"]
    assert main(args) == 0
    assert "report:" in capsys.readouterr().out
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["positive_class"] == "1 = died within 2 years"
    threshold = json.loads((run / "threshold.json").read_text())
    fitted = threshold["fitted"]
    assert fitted["rule"] == "spec_at_sens" and fitted["fitted_on"] == "validation"
    assert threshold["threshold"] == fitted["thresholds"][0]["threshold"]  # one split: in force
    calibration = json.loads((run / "calibration.json").read_text())
    assert {"raw", "recalibrated"} <= set(calibration["splits"]["test"])
    report = (run / "report.html").read_text()
    assert "<script" in report and 'src="http' not in report  # plotly.js inline: offline
    for heading in ("Discrimination", "Calibration", "Decision curve", "TRIPOD"):
        assert heading in report, heading


def test_cli_refuses_unknown_runs_and_settings(tmp_path, capsys):
    write_fake_run(tmp_path)
    assert main(["nope", "--artifacts", str(tmp_path)]) == 2
    assert "no run 'nope'" in capsys.readouterr().err
    assert main(["r1", "--artifacts", str(tmp_path), "--set", "rule=x"]) == 2
    assert "valid keys" in capsys.readouterr().err
