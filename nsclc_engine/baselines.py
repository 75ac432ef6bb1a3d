"""Baselines on the image model's own splits: clinical-only and GTV-volume-only logistic models.

Imputation, encoding and scaling are parts of a scikit-learn pipeline fitted on the training
patients only; validation and test patients are only transformed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

CLINICAL_NUMERIC = ("age_years",)
CLINICAL_CATEGORICAL = ("t_stage", "n_stage", "m_stage", "overall_stage", "histology", "gender")
BASELINES = {
    "clinical": "clinical-only logistic regression (age, T/N/M, overall stage, histology, gender)",
    "volume": "GTV-volume-only logistic regression (log(1 + volume in cm3))",
}


def clinical_pipeline():
    """Median-imputed, standardised age; most-frequent-imputed, one-hot stages, histology,
    gender (categories unseen in training are ignored); L2 logistic regression."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    features = ColumnTransformer(
        [
            (
                "numeric",
                make_pipeline(SimpleImputer(strategy="median"), StandardScaler()),
                list(CLINICAL_NUMERIC),
            ),
            (
                "categorical",
                make_pipeline(
                    SimpleImputer(strategy="most_frequent"),
                    OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                ),
                list(CLINICAL_CATEGORICAL),
            ),
        ]
    )
    return make_pipeline(features, LogisticRegression(max_iter=1000))


def volume_pipeline():
    """Median-imputed log GTV volume, standardised; logistic regression."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    return make_pipeline(
        SimpleImputer(strategy="median"),
        FunctionTransformer(np.log1p),  # log(1 + cm3): defined for any non-negative volume
        StandardScaler(),
        LogisticRegression(max_iter=1000),
    )


def _features(kind: str, table: pd.DataFrame) -> pd.DataFrame:
    if kind == "clinical":
        missing = [c for c in (*CLINICAL_NUMERIC, *CLINICAL_CATEGORICAL) if c not in table]
        if missing:
            raise ValueError(f"the clinical baseline needs the columns {missing}")
        frame = table[list(CLINICAL_NUMERIC)].astype(float).copy()
        for column in CLINICAL_CATEGORICAL:
            # strings with NaN for missing, so stage 2 and "2" are one category
            frame[column] = (
                table[column].astype("string").astype(object).where(table[column].notna(), np.nan)
            )
        return frame
    if kind == "volume":
        if "gtv_volume_cm3" not in table:
            raise ValueError("the volume baseline needs gtv_volume_cm3 (a cohort table)")
        return table[["gtv_volume_cm3"]].astype(float)
    raise ValueError(f"baseline {kind!r}: choose one of {sorted(BASELINES)}")


def fit_baseline(
    kind: str,
    table: pd.DataFrame,
    split: Mapping[str, Sequence[str]],
    label: str,
) -> pd.DataFrame:
    """Fit on ``split["train"]``, predict every part: ``patient_id, split, y_true, y_prob``."""
    table = table.set_index("patient_id")
    model = clinical_pipeline() if kind == "clinical" else volume_pipeline()
    features = _features(kind, table)
    train = list(split["train"])
    unknown = [p for part in split.values() for p in part if p not in table.index]
    if unknown:
        raise ValueError(f"{len(unknown)} split patients are not in the table, e.g. {unknown[:3]}")
    model.fit(features.loc[train], table.loc[train, label].astype(int))
    frames = []
    for part, patients in split.items():
        patients = list(patients)
        frames.append(
            pd.DataFrame(
                {
                    "patient_id": patients,
                    "split": part,
                    "y_true": table.loc[patients, label].astype(int).to_numpy(),
                    "y_prob": model.predict_proba(features.loc[patients])[:, 1],
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def fit_cox_baseline(
    kind: str,
    table: pd.DataFrame,
    split: Mapping[str, Sequence[str]],
    time: str = "survival_time_days",
    event: str = "deadstatus_event",
) -> pd.DataFrame:
    """A Cox proportional-hazards baseline (scikit-survival) on the same features and the same
    training-only preprocessing as the logistic baselines, fitted on ``split["train"]``.

    Returns ``patient_id, split, time_days, event, risk`` (higher risk = earlier death).
    scikit-survival rather than lifelines: its models are scikit-learn estimators, so the
    imputation/encoding pipeline is shared, and it has Uno's C, time-dependent AUC and the
    integrated Brier score.
    """
    from sklearn.pipeline import make_pipeline
    from sksurv.linear_model import CoxPHSurvivalAnalysis
    from sksurv.util import Surv

    table = table.set_index("patient_id")
    features = _features(kind, table)
    preprocessing = clinical_pipeline().steps[0][1] if kind == "clinical" else None
    if kind == "volume":
        preprocessing = make_pipeline(*[step for _, step in volume_pipeline().steps[:-1]])
    # a small ridge penalty keeps rare one-hot categories from diverging
    model = make_pipeline(preprocessing, CoxPHSurvivalAnalysis(alpha=0.1))
    train = list(split["train"])
    target = Surv.from_arrays(
        table.loc[train, event].astype(bool), table.loc[train, time].astype(float)
    )
    model.fit(features.loc[train], target)
    frames = []
    for part, patients in split.items():
        patients = list(patients)
        frames.append(
            pd.DataFrame(
                {
                    "patient_id": patients,
                    "split": part,
                    "time_days": table.loc[patients, time].astype(float).to_numpy(),
                    "event": table.loc[patients, event].astype(int).to_numpy(),
                    "risk": model.predict(features.loc[patients]),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)
