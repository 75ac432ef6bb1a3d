"""The honest-result check: verdict rules by hand, and its CLI end to end on a tiny cohort."""

import json

from nsclc_engine.honesty import format_verdicts, main, verdict


def metrics(auc, low, high, oracle=None):
    payload = {"splits": {"test": {"auc": {"auc": auc, "ci_low": low, "ci_high": high}}}}
    return payload | ({"oracle_auc": oracle} if oracle is not None else {})


def test_verdict_rules():
    good = verdict(0, metrics(0.70, 0.55, 0.84, oracle=0.77), metrics(0.52, 0.35, 0.69))
    assert good.above_chance and good.contains_oracle and good.shuffled_contains_chance
    assert good.passed
    at_chance = verdict(1, metrics(0.62, 0.45, 0.78, oracle=0.77), metrics(0.5, 0.3, 0.7))
    assert not at_chance.above_chance and not at_chance.passed
    too_good = verdict(2, metrics(0.97, 0.92, 1.0, oracle=0.77), metrics(0.5, 0.3, 0.7))
    assert too_good.above_chance and not too_good.contains_oracle  # better than possible: a leak
    leaky_control = verdict(3, metrics(0.70, 0.55, 0.84, oracle=0.77), metrics(0.8, 0.66, 0.93))
    assert not leaky_control.shuffled_contains_chance and not leaky_control.passed
    table = format_verdicts([good, at_chance, too_good])
    assert "1 of 3 seeds pass every check" in table
    assert table.count("NO") == 2


def test_cli_trains_a_real_and_a_shuffled_run_per_seed(tiny_source, tmp_path, capsys):
    args = ["--seeds", "0", "--artifacts", str(tmp_path), "--prefix", "chk"]
    for key, value in {
        "dicom": tiny_source / "dicom",
        "clinical": tiny_source / "clinical.csv",
        "preset": "smoke",
        "epochs": 1,
        "folds": 2,  # overrides come after the check's settings
    }.items():
        args += ["--set", f"{key}={value}"]
    # real data has no known best achievable AUC, so the check cannot pass: exit status 1
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "0 of 1 seeds pass every check" in out and "n/a" in out
    for run_id, shuffled in (("chk-s0", False), ("chk-s0-shuffled", True)):
        config = json.loads((tmp_path / "runs" / run_id / "config.json").read_text())
        assert config["shuffle_labels"] is shuffled and config["label"] == "os_2y"
        assert config["use_sampler"] is False and config["lr"] == 1e-4
        assert config["folds"] == 2
        assert (tmp_path / "runs" / run_id / "metrics.json").is_file()
