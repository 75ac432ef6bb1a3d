"""The shapes of a run's JSON results, owned in one place: ``metrics.json``,
``threshold.json`` and ``calibration.json`` as :mod:`nsclc_engine.runs` reads them.

Each record is still the dict that was written, so code that writes one or passes it on is
unchanged; what a reader asks of it is a typed property that is empty (never None) where the
run has no such section (not evaluated yet, an imported run, a run written before the section
existed). No caller guards against a missing section with ``(x or {}).get``."""

from __future__ import annotations


def _section(record: dict, *path: str) -> dict:
    """The dict at ``path`` in ``record``, {} where a step is missing."""
    for name in path:
        value = record.get(name)
        record = value if isinstance(value, dict) else {}
    return record


class Metrics(dict):
    """``metrics.json``: empty until the run is evaluated."""

    @property
    def held_out(self) -> str:
        """The part the run is judged on: ``test`` (or ``external``)."""
        return self.get("held_out", "test")

    @property
    def excluded(self) -> dict[str, dict]:
        """An imported run's rows left out, per reason."""
        return _section(self, "excluded")

    @property
    def calibration_external(self) -> dict[str, dict]:
        """An external validation's calibration of the frozen and the re-fitted probabilities."""
        return _section(self, "calibration_external")

    @property
    def splits(self) -> dict[str, dict]:
        """Each part's classification block (``auc``, ``at_threshold``, ``c_index`` ...)."""
        return _section(self, "splits")

    def split(self, part: str) -> dict:
        return _section(self.splits, part)

    def headline(self, part: str, key: str) -> float | None:
        """``part``'s ``auc`` or ``c_index`` (``key``) itself, None where it has none."""
        return _section(self.splits, part, key).get(key)

    @property
    def models(self) -> dict:
        """A survival run's models beside the image (``c_index``, ``folds``, ``comparisons``)."""
        return _section(self, "models")

    @property
    def horizons(self) -> dict:
        """A survival run's probabilities at its horizons (``horizons_days``, ``calibration``,
        ``threshold`` ...)."""
        return _section(self, "horizons")

    @property
    def horizons_days(self) -> list[float]:
        return list(self.horizons.get("horizons_days") or [])

    def horizon_kind(self, kind: str) -> dict:
        """The held-out figures under one baseline ``kind`` (``raw`` ...), keyed ``730d`` ...,
        with its ``d_calibration``."""
        return _section(self.horizons, kind)

    def horizon_block(self, kind: str, horizon_days: float) -> dict:
        return _section(self.horizon_kind(kind), f"{horizon_days:g}d")

    @property
    def best_achievable(self) -> dict:
        """The synthetic cohort's yardstick (``splits``, ``paired``)."""
        return _section(self, "best_achievable")

    def best(self, part: str, score: str) -> float | None:
        """The best achievable value of ``score`` (``eta_image`` ...) on ``part``'s patients."""
        return _section(self.best_achievable, "splits", part).get(score)

    def paired_share(self, part: str) -> dict:
        """The run's difference from the best achievable on ``part``, paired by patient, with
        its ``share`` of it."""
        return _section(self.best_achievable, "paired", part)

    def share(self, part: str) -> dict:
        """The run's share of the best achievable on ``part`` (``value``, CI); {} where it
        was not computed or is undefined (the best achievable no better than chance)."""
        return _section(self.best_achievable, "paired", part, "share")

    def model_c_index(self, model: str, part: str) -> float | None:
        """A survival run's C-index of ``model`` (``image``, ``clinical`` ...) on ``part``."""
        return _section(self.models, "c_index", model, part).get("c_index")

    def against_baseline(self, name: str) -> dict:
        """The paired DeLong test of the image model against baseline ``name``."""
        return _section(self.baselines, name, "delong_image_vs_baseline")

    @property
    def horizon_threshold(self) -> dict:
        """A survival run's threshold on P(death by a horizon): each fold's, and held out."""
        return _section(self.horizons, "threshold")

    @property
    def baselines(self) -> dict:
        return _section(self, "baselines")

    @property
    def evaluate_config(self) -> dict:
        return _section(self, "evaluate_config")

    @property
    def recalibration(self) -> str:
        """The recalibration the run was evaluated with (``none`` before there was one)."""
        return self.evaluate_config.get("recalibration", "none")

    @property
    def threshold_source(self) -> dict:
        """Where the threshold in force came from (the validation rows it was fitted on)."""
        return _section(self, "threshold_source")

    @property
    def case_mix(self) -> list[dict]:
        return list(self.get("case_mix") or [])

    @property
    def too_few_patients(self) -> str:
        """Why the held-out part is too small to judge ("" where it is not)."""
        return self.get("too_few_patients") or ""

    @property
    def augmentation_warning(self) -> str:
        return self.get("augmentation_warning") or ""


class Threshold(dict):
    """``threshold.json``: the thresholds fitted on validation, and the one a reviewer saved."""

    @property
    def fitted(self) -> dict:
        return _section(self, "fitted")

    @property
    def fitted_thresholds(self) -> list[dict]:
        """One entry per fold: its threshold, rule and the validation rows it came from."""
        return list(self.fitted.get("thresholds") or [])

    @property
    def operating_point(self) -> dict:
        """The saved operating point (threshold, split, who saved it), {} where none is."""
        return _section(self, "operating_point")

    @property
    def in_force(self) -> float | None:
        """The threshold in force: the saved operating point's, else the fitted threshold of
        a one-split run; None for a k-fold run without a saved one."""
        return self.get("threshold")


class Calibration(dict):
    """``calibration.json``: the recalibration fitted on validation and each part's measures."""

    @property
    def method(self) -> str:
        return self.get("method", "none")

    @property
    def splits(self) -> dict[str, dict]:
        return _section(self, "splits")

    def raw(self, part: str) -> dict:
        """``part``'s calibration of the raw probabilities (slope, intercept ...)."""
        return _section(self.splits, part, "raw")
