"""A survival run on a synthetic cohort whose generating model is known: the best model's
C-index CI must reach what the true risk score achieves on the same test patients, and the
image model must not beat it (better than the truth is a leak)."""

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from nsclc_engine.stats.survival import harrell_c_index
from nsclc_engine.synth.generate import write_cohort
from nsclc_engine.train.__main__ import main
from tests.helpers import TINY

pytestmark = pytest.mark.slow


def test_fusion_reaches_the_achievable_c_index_on_a_known_cohort(tmp_path):
    source = tmp_path / "source"
    # 6 mm pixels and 8 mm slices: coarse, but fine enough for the contour's volume to carry
    # the volume term of the generating model (8 mm x 12 mm voxels blur it too much)
    config = replace(
        TINY,
        n_patients=240,
        seed=11,
        rows=64,
        pixel_spacing_mm=6.0,
        n_slices=24,
        slice_thickness_mm=8.0,
        workers=2,
    )
    write_cohort(config, source, show_progress=False)
    args = ["--dicom", str(source / "dicom"), "--clinical", str(source / "clinical.csv")]
    args += ["--task", "survival", "--preset", "smoke", "--epochs", "1", "--quiet"]
    args += ["--set", "model=vit"]  # the image model is not what is checked here: the fastest
    args += ["--set", "bootstrap_resamples=500"]  # CIs to two decimals, a quarter of the time
    assert main([*args, "--artifacts", str(tmp_path), "--run-id", "known"]) == 0
    run = tmp_path / "runs" / "known"
    models = pd.read_csv(run / "survival_models.csv")
    truth = pd.read_csv(source / "synth_truth.csv").set_index("patient_id")
    test = models[models.split == "test"]
    assert len(test) >= 35
    achievable = harrell_c_index(test.time_days, test.event, truth.loc[test.patient_id, "eta"])
    metrics = json.loads((run / "metrics.json").read_text())["models"]["c_index"]
    fusion = metrics["fusion"]["test"]
    print(f"\nachievable C on test {achievable:.3f}; fusion {fusion}")
    assert fusion["ci_low"] <= achievable <= fusion["ci_high"]
    assert fusion["ci_low"] > 0.5  # and it is far from chance
    image = metrics["image"]["test"]
    assert image["c_index"] < achievable + 0.05  # nothing beats the truth except by chance
    assert np.isfinite([v["c_index"] for v in (metrics["clinical"]["test"], image)]).all()
