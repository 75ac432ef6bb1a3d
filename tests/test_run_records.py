"""The shapes of a run's result files (nsclc_engine.run_records): each section a reader asks
for is there, typed, and empty (never None) where the run has none."""

from nsclc_engine.run_records import Calibration, Metrics, Threshold
from nsclc_engine.runs import read_calibration, read_metrics, read_threshold, write_metrics


def test_a_run_not_evaluated_yet_reads_as_empty_records(tmp_path):
    metrics, threshold = read_metrics(tmp_path), read_threshold(tmp_path)
    assert metrics == {} and not metrics and isinstance(metrics, Metrics)
    assert metrics.splits == {} and metrics.held_out == "test" and metrics.recalibration == "none"
    assert metrics.headline("test", "auc") is None and metrics.horizons_days == []
    assert metrics.horizon_block("raw", 730) == {} and metrics.case_mix == []
    assert threshold.operating_point == {} and threshold.fitted_thresholds == []
    assert threshold.in_force is None
    calibration = read_calibration(tmp_path)
    assert calibration.method == "none" and calibration.raw("test") == {}


def test_sections_are_read_where_written_and_a_null_section_is_empty(tmp_path):
    written = {
        "task": "survival",
        "held_out": "external",
        "splits": {"external": {"c_index": {"c_index": 0.61}}},
        "models": {"c_index": {"clinical": {"external": {"c_index": 0.55}}}},
        "horizons": {"horizons_days": [365, 730], "raw": {"730d": {"mean_predicted": 0.4}}},
        "best_achievable": None,  # written as null: read as empty, not as a crash
        "evaluate_config": {"recalibration": "platt"},
    }
    write_metrics(tmp_path, written)
    metrics = read_metrics(tmp_path)
    assert metrics == written  # still the dict that was written
    assert metrics.headline("external", "c_index") == 0.61
    assert metrics.model_c_index("clinical", "external") == 0.55
    assert metrics.model_c_index("volume", "external") is None
    assert metrics.horizons_days == [365, 730] and metrics.held_out == "external"
    assert metrics.horizon_block("raw", 730.0) == {"mean_predicted": 0.4}
    assert metrics.best_achievable == {} and metrics.paired_share("external") == {}
    # a share left undefined (the best achievable no better than chance) is written as null
    write_metrics(tmp_path, {"best_achievable": {"paired": {"test": {"share": None}}}})
    assert read_metrics(tmp_path).share("test") == {}
    assert metrics.recalibration == "platt"


def test_the_threshold_in_force_and_each_folds_fit():
    fitted = {"rule": "youden", "thresholds": [{"fold": 0, "threshold": 0.3}]}
    record = Threshold({"fitted": fitted, "threshold": 0.3})
    assert record.fitted_thresholds == [{"fold": 0, "threshold": 0.3}] and record.in_force == 0.3
    saved = Threshold({"fitted": fitted, "operating_point": {"threshold": 0.4}, "threshold": 0.4})
    assert saved.operating_point == {"threshold": 0.4} and saved.in_force == 0.4
    assert Calibration({"method": "platt", "splits": {"test": {"raw": {"slope": 0.9}}}}).raw(
        "test"
    ) == {"slope": 0.9}
