"""A run's decision rule frozen for other patients: the threshold in force on the raw scale
makes the same calls as on the scale it was chosen on, the recalibrator is the one the run
used, and k-fold and imported runs say what they carry."""

import json

import numpy as np
import pandas as pd
import pytest

from nsclc_engine.evaluate.frozen import fit_from_record, frozen_decision
from nsclc_engine.stats.calibration import fit_recalibrator, recalibrator_from_dict


def write_run(folder, folds=1, point=None, method="platt", seed=0):
    """A finished classification run folder: predictions, threshold.json, calibration.json."""
    rng = np.random.default_rng(seed)
    rows = []
    for fold in range(folds):
        for split in ("validation", "test"):
            y = rng.integers(0, 2, 60)
            p = np.clip(0.3 + 0.3 * y + rng.normal(0, 0.2, 60), 0.01, 0.99)
            rows.append(
                pd.DataFrame(
                    {
                        "patient_id": [f"{split}{fold}-{k}" for k in range(60)],
                        "split": split,
                        "fold": fold,
                        "y_true": y,
                        "y_prob": p,
                    }
                )
            )
    folder.mkdir(parents=True)
    pd.concat(rows).to_csv(folder / "predictions.csv", index=False)
    fitted = [{"fold": k, "threshold": 0.4 + 0.05 * k} for k in range(folds)]
    saved = {"fitted": {"rule": "youden", "thresholds": fitted}}
    if point is not None:
        saved["operating_point"] = point
    (folder / "threshold.json").write_text(json.dumps(saved))
    (folder / "calibration.json").write_text(json.dumps({"method": method}))
    return pd.concat(rows)


def test_a_point_saved_on_recalibrated_probabilities_makes_the_same_calls_raw(tmp_path):
    predictions = write_run(tmp_path / "run", point={"threshold": 0.45, "recalibration": "platt"})
    fit, record = frozen_decision(tmp_path / "run")
    validation = predictions[predictions.split == "validation"]
    platt = fit_recalibrator(validation.y_true, validation.y_prob, "platt")  # the page's fit
    probe = np.linspace(0.001, 0.999, 5001)
    np.testing.assert_array_equal(probe >= fit.threshold.threshold, platt.apply(probe) >= 0.45)
    assert fit.recalibrator.parameters == platt.parameters
    assert "saved operating point 0.450 on platt probabilities" in record["text"]
    rebuilt = fit_from_record(json.loads(json.dumps(record)))  # as stored in a run's JSON
    assert rebuilt.threshold.threshold == fit.threshold.threshold
    np.testing.assert_allclose(rebuilt.recalibrator.apply(probe), platt.apply(probe))


@pytest.mark.parametrize("method", ["isotonic", "temperature", "none"])
def test_the_evaluation_threshold_and_recalibrator_carry_over(tmp_path, method):
    predictions = write_run(tmp_path / "run", method=method)
    fit, record = frozen_decision(tmp_path / "run")
    validation = predictions[predictions.split == "validation"]
    expected = fit_recalibrator(validation.y_true, validation.y_prob, method)
    probe = np.linspace(0, 1, 101)
    np.testing.assert_allclose(fit.recalibrator.apply(probe), expected.apply(probe))
    np.testing.assert_allclose(
        recalibrator_from_dict(record["recalibrator"]).apply(probe), expected.apply(probe)
    )
    assert fit.threshold.threshold == 0.4 and "youden fitted on validation" in record["text"]


def test_a_k_fold_run_carries_its_mean_threshold_and_says_why_not_a_recalibrator(tmp_path):
    write_run(tmp_path / "run", folds=3)
    fit, record = frozen_decision(tmp_path / "run")
    assert fit.threshold.threshold == pytest.approx(0.45)
    assert fit.recalibrator.method == "none" and "one recalibrator per fold" in record["text"]
    write_run(tmp_path / "saved", folds=3, point={"threshold": 0.3, "recalibration": "platt"})
    with pytest.raises(ValueError, match="save one on raw probabilities"):
        frozen_decision(tmp_path / "saved")


def test_a_run_without_a_threshold_is_refused(tmp_path):
    write_run(tmp_path / "run")
    (tmp_path / "run" / "threshold.json").unlink()
    with pytest.raises(ValueError, match=r"no threshold in threshold\.json; evaluate it first"):
        frozen_decision(tmp_path / "run")
