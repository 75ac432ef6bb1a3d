"""The Survival page: C-indices per model and split, time-dependent metrics, risk groups: a
risk cut explored on validation, test shown only at the cut frozen before test was read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from nsclc_engine.dashboard.run_view import RunView
from nsclc_engine.evaluate.baselines import in_sample
from nsclc_engine.evaluate.multiplicity import comparisons_note, holm_adjust
from nsclc_engine.run_records import Metrics
from nsclc_engine.stats.survival import groups_at


def survival_models(view: RunView) -> pd.DataFrame | None:
    """The run's ``survival_models.csv`` (image / clinical / volume / fusion risks), if any."""
    path = Path(view.run_dir) / "survival_models.csv"
    if not path.exists():
        return None
    return pd.read_csv(path, dtype={"patient_id": str})


def c_index_table(view: RunView) -> pd.DataFrame:
    """Harrell's C with its 95 % CI per model and split, from ``metrics.json``."""

    models = view.metrics.models
    rows = []
    for name, per_split in models.get("c_index", {}).items():
        for part, value in per_split.items():
            rows.append(
                {
                    "model": name,
                    "split": part,
                    "C-index": value["c_index"],
                    "95% CI": f"{value['ci_low']:.3f}-{value['ci_high']:.3f}",
                    "fitted on these patients": in_sample(name, part),
                    "what": models["description"].get(name, ""),
                }
            )
    columns = ["model", "split", "C-index", "95% CI", "fitted on these patients", "what"]
    return pd.DataFrame(rows, columns=columns)


def time_dependent_table(view: RunView) -> pd.DataFrame:
    """Uno's C, time-dependent AUC at 1 and 2 years and IBS per model and fold (test)."""
    rows = []
    for entry in view.metrics.models.get("folds", []):
        for name, values in entry.items():
            if isinstance(values, dict) and "time_dependent_auc" in values:
                rows.append(
                    {
                        "fold": entry["fold"],
                        "model": name,
                        "Uno C": values["uno_c_index"],
                        **{f"AUC {k}": v for k, v in values["time_dependent_auc"].items()},
                        "IBS": values["integrated_brier_score"],
                    }
                )
    return pd.DataFrame(rows)


def risk_group_state(models: pd.DataFrame, model: str, split: str, quantile: float) -> dict:
    """Kaplan-Meier by risk group and the log-rank test for ``model``'s risks on ``split``,
    cut at the ``quantile`` of each fold's *validation* risks (0.5: the median)."""

    if not 0 < quantile < 1:
        raise ValueError(f"quantile {quantile} must lie strictly between 0 and 1")
    rows, cuts = [], []
    for _, frame in models.groupby("fold"):
        cut = float(np.quantile(frame.loc[frame.split == "validation", model], quantile))
        part = frame[frame.split == split]
        rows.append(part.assign(high=part[model] > cut))
        cuts.append(cut)
    chosen = pd.concat(rows, ignore_index=True)
    return {
        "cuts": cuts,
        "n_high": int(chosen.high.sum()),
        "n_low": int((~chosen.high).sum()),
        **groups_at(chosen.time_days, chosen.event, chosen.high),
    }


FROZEN_QUANTILE = 0.5  # the cut metrics.json's risk groups use: the median of validation risks


def risk_cut_views(models: pd.DataFrame, model: str, quantile: float) -> dict:
    """The Survival page's two views of a risk cut for ``model``.

    ``choosing``: the validation patients split at the ``quantile`` of their own risks, to
    explore a cut (a k-fold run: the first fold's validation patients, since the folds'
    validation parts share patients). ``frozen``: the test patients split at the frozen cut,
    :data:`FROZEN_QUANTILE` of each fold's validation risks, whatever ``quantile`` is: moving
    the slider never changes a test number."""
    first = models[models.fold == models.fold.min()]
    return {
        "choosing": risk_group_state(first, model, "validation", quantile),
        "frozen": risk_group_state(models, model, "test", FROZEN_QUANTILE),
        "frozen_quantile": FROZEN_QUANTILE,
        "k_fold": bool(models.fold.min() != models.fold.max()),
    }


def fusion_weights_text(weights: list[dict]) -> str:
    """The fusion model's weights per fold, e.g. ``image +0.52, clinical +0.31; ...``."""
    return "; ".join(
        ", ".join(f"{k} {v:+.2f}" for k, v in w.items() if k != "fold") for w in weights
    )


def comparison_lines(metrics: dict) -> list[str]:
    """One line per paired test comparison of two models' C-index (markdown), with the
    p-value Holm-adjusted over the comparisons shown, and a last line saying how many."""
    comparisons = Metrics(metrics).models.get("comparisons", [])
    if not comparisons:
        return []
    adjusted = holm_adjust([c["p_value"] for c in comparisons])
    lines = [
        f"**{c['a']} − {c['b']}** on test: C difference {c['difference']:+.3f} (95% CI "
        f"{c['ci_low']:+.3f} to {c['ci_high']:+.3f}), bootstrap p = {c['p_value']:.3f}, "
        f"Holm-adjusted p = {p:.3f}"
        for c, p in zip(comparisons, adjusted, strict=True)
    ]
    return [*lines, comparisons_note(len(comparisons), "paired comparisons")]
