"""The Calibration page: calibration summaries, reliability and decision curves of a run's
test predictions, raw and recalibrated (the recalibrator fitted on validation)."""

from __future__ import annotations

import pandas as pd

from nsclc_engine.stats.calibration import (
    RECALIBRATION_METHODS,
    calibration_summary,
    decision_curve,
    reliability_curve,
)

BIN_STRATEGIES = ("uniform", "quantile")


def calibration_view(
    raw: pd.DataFrame, shown: pd.DataFrame, method: str, strategy: str, part: str = "test"
) -> dict:
    """What the page shows for test predictions ``raw`` and ``shown`` (recalibrated by
    ``method``, or the same as ``raw`` for ``none``): a summary row per set of probabilities,
    their reliability curves (bins by ``strategy``) and the decision curve of ``shown``."""
    if method not in RECALIBRATION_METHODS or strategy not in BIN_STRATEGIES:
        raise ValueError(
            f"method {method!r} / bins {strategy!r}: choose from {RECALIBRATION_METHODS} and "
            f"{BIN_STRATEGIES}"
        )
    sets = {"raw": raw} if method == "none" else {"raw": raw, method: shown}
    return {
        "summary": pd.DataFrame(
            [
                {
                    "probabilities": name,
                    **calibration_summary(frame.y_true, frame.y_prob, strategy=strategy),
                }
                for name, frame in sets.items()
            ]
        ),
        "reliability": {
            name: reliability_curve(frame.y_true, frame.y_prob, strategy=strategy)
            for name, frame in sets.items()
        },
        "decision": {f"model ({part})": decision_curve(shown.y_true, shown.y_prob)},
    }


def external_calibration(metrics: dict) -> pd.DataFrame:
    """An external-validation run's calibration on the new cohort: calibration-in-the-large
    and slope of the probabilities as deployed (the frozen recalibrator applied) and, where
    it was asked for, after a recalibration-in-the-large fitted on that cohort itself."""
    names = {
        "deployed": "as deployed (frozen)",
        "recalibrated_in_the_large": "recalibrated in the large on this cohort (in-sample)",
    }
    return pd.DataFrame(
        [
            {
                "probabilities": names[key],
                "calibration-in-the-large": block["intercept"],
                "slope": block["slope"],
                "intercept shift": block.get("shift"),
            }
            for key, block in (metrics.get("calibration_external") or {}).items()
        ],
        columns=["probabilities", "calibration-in-the-large", "slope", "intercept shift"],
    )
