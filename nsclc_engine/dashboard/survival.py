"""The Survival page: C-indices per model and split, time-dependent metrics, risk groups."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from nsclc_engine.dashboard.run_view import RunView
from nsclc_engine.evaluate.baselines import in_sample
from nsclc_engine.stats.survival import groups_at


def survival_models(view: RunView) -> pd.DataFrame | None:
    """The run's ``survival_models.csv`` (image / clinical / volume / fusion risks), if any."""
    path = Path(view.run_dir) / "survival_models.csv"
    if not path.exists():
        return None
    return pd.read_csv(path, dtype={"patient_id": str})


def c_index_table(view: RunView) -> pd.DataFrame:
    """Harrell's C with its 95 % CI per model and split, from ``metrics.json``."""

    models = (view.metrics or {}).get("models", {})
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
    for entry in ((view.metrics or {}).get("models") or {}).get("folds", []):
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


def fusion_weights_text(weights: list[dict]) -> str:
    """The fusion model's weights per fold, e.g. ``image +0.52, clinical +0.31; ...``."""
    return "; ".join(
        ", ".join(f"{k} {v:+.2f}" for k, v in w.items() if k != "fold") for w in weights
    )


def comparison_lines(metrics: dict) -> list[str]:
    """One line per paired test comparison of two models' C-index (markdown)."""
    return [
        f"**{c['a']} − {c['b']}** on test: C difference {c['difference']:+.3f} (95% CI "
        f"{c['ci_low']:+.3f} to {c['ci_high']:+.3f}), bootstrap p = {c['p_value']:.3f}"
        for c in ((metrics or {}).get("models") or {}).get("comparisons", [])
    ]
