"""The evaluation stage's config: how a run is evaluated (saved inside ``metrics.json``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from nsclc_engine.stats.calibration import RECALIBRATION_METHODS
from nsclc_engine.stats.metrics import THRESHOLD_RULES


@dataclass(frozen=True)
class EvaluateConfig:
    """How a run is evaluated; saved inside ``metrics.json``."""

    threshold_rule: str = "youden"
    threshold_target: float | None = None  # for spec_at_sens, sens_at_spec and fixed
    recalibration: str = "platt"
    n_bins: int = 10
    bootstrap_resamples: int = 2000
    seed: int = 0
    baselines: bool = True
    # survival runs: S(t) at these days in predictions.csv; calibration and the threshold at
    # each (the threshold at the last)
    horizons_days: tuple[float, ...] = (365.0, 730.0)

    def __post_init__(self) -> None:
        if self.threshold_rule not in THRESHOLD_RULES:
            raise ValueError(
                f"threshold_rule {self.threshold_rule!r}: choose one of {THRESHOLD_RULES}"
            )
        if self.recalibration not in RECALIBRATION_METHODS:
            raise ValueError(
                f"recalibration {self.recalibration!r}: choose one of {RECALIBRATION_METHODS}"
            )
        if self.n_bins < 2 or self.bootstrap_resamples < 1:
            raise ValueError("n_bins must be >= 2 and bootstrap_resamples >= 1")
        target = self.threshold_target
        if target is not None and not (math.isfinite(target) and 0 <= target <= 1):
            raise ValueError(f"threshold_target={target!r}: must be between 0 and 1")
        horizons = tuple(float(h) for h in self.horizons_days)
        if not horizons or any(not (math.isfinite(h) and h > 0) for h in horizons):
            raise ValueError(
                f"horizons_days={self.horizons_days!r}: give positive days, e.g. [365, 730]"
            )
        object.__setattr__(self, "horizons_days", tuple(sorted(set(horizons))))
        if self.seed < 0:
            raise ValueError(f"seed={self.seed}: must be 0 or more")
