"""The Calibration page: summaries and curves of raw and recalibrated test predictions."""

import numpy as np
import pandas as pd
import pytest

from nsclc_engine.dashboard.calibration import calibration_view
from nsclc_engine.stats.calibration import brier_score


def frame(y_true, y_prob) -> pd.DataFrame:
    return pd.DataFrame({"y_true": y_true, "y_prob": y_prob})


def test_raw_only_for_none_and_both_sets_otherwise():
    raw = frame([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    shown = frame([0, 0, 1, 1], [0.2, 0.3, 0.6, 0.7])
    alone = calibration_view(raw, raw, "none", "uniform")
    assert alone["summary"].probabilities.tolist() == ["raw"]
    assert list(alone["reliability"]) == ["raw"]
    both = calibration_view(raw, shown, "platt", "quantile")
    assert both["summary"].probabilities.tolist() == ["raw", "platt"]
    # Brier by hand: mean squared error of each set
    assert both["summary"].brier.tolist() == pytest.approx(
        [np.mean((raw.y_prob - raw.y_true) ** 2), np.mean((shown.y_prob - shown.y_true) ** 2)]
    )
    assert both["summary"].brier[1] == pytest.approx(brier_score(shown.y_true, shown.y_prob))
    assert list(both["decision"]) == ["model (test)"]


def test_unknown_method_or_bins_are_refused():
    raw = frame([0, 1], [0.2, 0.7])
    with pytest.raises(ValueError, match="choose from"):
        calibration_view(raw, raw, "spline", "uniform")
    with pytest.raises(ValueError, match="choose from"):
        calibration_view(raw, raw, "none", "deciles")
