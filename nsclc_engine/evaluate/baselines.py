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


def preprocessing(kind: str):
    """The training-only feature pipeline of a baseline (unfitted).

    ``clinical``: median-imputed, standardised age; most-frequent-imputed, one-hot stages,
    histology, gender (categories unseen in training are ignored). ``volume``: median-imputed
    log(1 + GTV volume in cm3), standardised.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    if kind == "volume":
        return make_pipeline(
            SimpleImputer(strategy="median"),
            FunctionTransformer(np.log1p),  # defined for any non-negative volume
            StandardScaler(),
        )
    return ColumnTransformer(
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


def baseline_features(kind: str, table: pd.DataFrame) -> pd.DataFrame:
    """The input columns of baseline ``kind`` from a cohort or clinical table."""
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
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    table, features, train = _prepared(kind, table, split)
    model = make_pipeline(preprocessing(kind), LogisticRegression(max_iter=1000))
    model.fit(features.loc[train], table.loc[train, label].astype(int))
    return _per_part(
        split,
        lambda patients: {
            "y_true": table.loc[patients, label].astype(int).to_numpy(),
            "y_prob": model.predict_proba(features.loc[patients])[:, 1],
        },
    )


def _prepared(
    kind: str, table: pd.DataFrame, split: Mapping[str, Sequence[str]]
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """(table by patient, the baseline's feature columns, training patients); every split
    patient must be in the table."""
    table = table.set_index("patient_id")
    unknown = [p for part in split.values() for p in part if p not in table.index]
    if unknown:
        raise ValueError(f"{len(unknown)} split patients are not in the table, e.g. {unknown[:3]}")
    return table, baseline_features(kind, table), list(split["train"])


def _per_part(split: Mapping[str, Sequence[str]], columns) -> pd.DataFrame:
    """One frame of ``patient_id, split`` plus ``columns(patients)`` for every part."""
    return pd.concat(
        [
            pd.DataFrame({"patient_id": list(patients), "split": part, **columns(list(patients))})
            for part, patients in split.items()
        ],
        ignore_index=True,
    )


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

    table, features, train = _prepared(kind, table, split)
    # a small ridge penalty keeps rare one-hot categories from diverging
    model = make_pipeline(preprocessing(kind), CoxPHSurvivalAnalysis(alpha=0.1))
    target = Surv.from_arrays(
        table.loc[train, event].astype(bool), table.loc[train, time].astype(float)
    )
    model.fit(features.loc[train], target)
    return _per_part(
        split,
        lambda patients: {
            "time_days": table.loc[patients, time].astype(float).to_numpy(),
            "event": table.loc[patients, event].astype(int).to_numpy(),
            "risk": model.predict(features.loc[patients]),
        },
    )


SURVIVAL_MODELS = {
    "image": "the run's 3D ResNet Cox head (the CT crop only)",
    "clinical": "clinical-only Cox model (age, T/N/M, overall stage, histology, gender)",
    "volume": "GTV-volume-only Cox model (log(1 + volume in cm3))",
    "fusion": "late fusion: a Cox model on the image, clinical and volume risk scores",
}


def in_sample(model: str, split: str) -> str:
    """Why a C-index is optimistic, when it is: the model (or part of it) was fitted on it."""
    if split == "train":
        return "yes (training)"
    if split == "validation" and model == "fusion":
        return "yes (fusion weights)"
    if split == "validation" and model == "image":
        return "partly (best epoch chosen)"
    return ""


def fit_survival_models(
    table: pd.DataFrame,
    split: Mapping[str, Sequence[str]],
    image_risk: Mapping[str, float],
    time: str = "survival_time_days",
    event: str = "deadstatus_event",
) -> pd.DataFrame:
    """The four models of :data:`SURVIVAL_MODELS` on one split: ``patient_id, split,
    time_days, event`` and one risk column per model (higher = earlier death).

    Clinical and volume Cox models are fitted on the training patients (:func:`fit_cox_baseline`).
    Fusion is late fusion by stacking: the three risk scores, standardised with the training
    patients' mean and SD, go into a small ridge Cox model fitted on the *validation* patients.
    Not on the training patients: there the image risk is in-sample (the network has seen
    them and ranks them far better than it ranks new patients), so the fusion would trust it
    too much. Test patients are only scored. ``frame.attrs["fusion_coefficients"]`` holds the
    fitted weights.
    """
    from sksurv.linear_model import CoxPHSurvivalAnalysis
    from sksurv.util import Surv

    missing = [p for part in split.values() for p in part if p not in image_risk]
    if missing:
        raise ValueError(f"{len(missing)} split patients have no image risk, e.g. {missing[:3]}")
    frame = fit_cox_baseline("clinical", table, split, time, event).rename(
        columns={"risk": "clinical"}
    )
    frame["volume"] = fit_cox_baseline("volume", table, split, time, event).risk.to_numpy()
    frame["image"] = frame.patient_id.map(image_risk).astype(float)
    inputs = ["image", "clinical", "volume"]
    train = frame.split == "train"
    scale = frame.loc[train, inputs].std(ddof=0).replace(0.0, 1.0)
    standardised = (frame[inputs] - frame.loc[train, inputs].mean()) / scale
    fit_on = frame.split == "validation"
    if frame.loc[fit_on, "event"].sum() < 2:
        raise ValueError("the fusion model needs at least 2 events among validation patients")
    model = CoxPHSurvivalAnalysis(alpha=0.1)
    model.fit(
        standardised[fit_on],
        Surv.from_arrays(frame.loc[fit_on, "event"].astype(bool), frame.loc[fit_on, "time_days"]),
    )
    frame["fusion"] = model.predict(standardised)
    frame.attrs["fusion_coefficients"] = dict(zip(inputs, map(float, model.coef_), strict=True))
    return frame[["patient_id", "split", "time_days", "event", *SURVIVAL_MODELS]]
