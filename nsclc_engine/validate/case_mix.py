"""The case-mix table of an external validation: how the development cohort (the patients the
frozen run was trained, validated and tested on) and the external cohort differ in who they
are and how they were scanned. A model that looks worse externally may meet other patients or
other scanners rather than be worse; this table is where a reader looks first."""

from __future__ import annotations

import numpy as np
import pandas as pd


def _mean_sd(values: pd.Series) -> str:
    values = pd.to_numeric(values, errors="coerce").dropna()
    if values.empty:
        return "n/a"
    sd = values.std(ddof=1) if len(values) > 1 else float("nan")
    return f"{values.mean():.1f} ({sd:.1f})" if np.isfinite(sd) else f"{values.mean():.1f}"


def _median_range(values: pd.Series, iqr: bool) -> str:
    values = pd.to_numeric(values, errors="coerce").dropna()
    if values.empty:
        return "n/a"
    if iqr:
        low, high = values.quantile([0.25, 0.75])
        return f"{values.median():.2f} (IQR {low:.2f}-{high:.2f})"
    return f"{values.median():.2f} (range {values.min():.2f}-{values.max():.2f})"


def describe(cohort: pd.DataFrame | None, label: str) -> dict[str, str]:
    """One column of the table: characteristic -> summary text."""
    if cohort is None or cohort.empty:
        return {}
    result = {"patients": str(len(cohort))}
    if label in cohort:
        known = pd.to_numeric(cohort[label], errors="coerce").dropna()
        share = f"{known.mean():.0%}" if len(known) else "n/a"
        result[f"{label} = 1 (of labelled)"] = f"{int(known.sum())} / {len(known)} ({share})"
    result["age, years: mean (SD)"] = _mean_sd(cohort.get("age_years", pd.Series(dtype=float)))
    stages = cohort.get("overall_stage", pd.Series(dtype=object)).fillna("missing").astype(str)
    for stage, count in sorted(stages.value_counts().items()):
        result[f"overall stage {stage}"] = f"{count} ({count / len(cohort):.0%})"
    columns = (
        ("GTV volume, cm3: median", "gtv_volume_cm3", True),
        ("slice thickness, mm: median", "spacing_z_mm", False),
        ("pixel spacing, mm: median", "spacing_y_mm", False),
    )
    for name, column, iqr in columns:
        result[name] = _median_range(cohort.get(column, pd.Series(dtype=float)), iqr)
    return result


def case_mix_table(
    development: pd.DataFrame | None, external: pd.DataFrame, label: str
) -> pd.DataFrame:
    """``characteristic, development, external``; the development column is empty where the
    frozen run's cohort is no longer on disk."""
    left, right = describe(development, label), describe(external, label)
    names = list(dict.fromkeys([*left, *right]))
    return pd.DataFrame(
        {
            "characteristic": names,
            "development": [left.get(n, "") for n in names],
            "external": [right.get(n, "") for n in names],
        }
    )
