"""Real-data baselines on exactly a given set of patients, by out-of-fold cross-validation.

An imported model (a published CNN, a vendor tool) was scored on patients we did not choose,
and there is no training split to fit a baseline on. So every baseline here is fitted with
stratified K-fold cross-validation on those same patients, and each patient's prediction
comes from the fold that held it out. Everything a model learns (imputation, scaling,
feature selection, the penalty) is fitted inside the training folds only:

* ``clinical``: the clinical-only logistic model of :mod:`nsclc_engine.evaluate.baselines`
  (age, T/N/M, overall stage, histology, gender) on the v3 clinical table;
* ``volume``: log(1 + GTV volume in cm3) from the features table (pyradiomics
  ``original_shape_Volume``, mm3);
* ``radiomics``: an L2-penalised logistic model on the K features with the largest univariate
  F statistic; K and the penalty are chosen by an inner cross-validation on the training
  folds (nested CV), so the selection never sees the held-out patients.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from nsclc_engine.evaluate.baselines import baseline_features, preprocessing

# pyradiomics names: <image type>_<feature class>_<feature>, e.g. wavelet-LLH_glcm_Imc1
RADIOMICS_PATTERN = re.compile(
    r"^(original|wavelet-[HL]+|log-sigma-[\d-]+mm-3D|logarithm|square|squareroot|exponential"
    r"|gradient|lbp-[\w-]+)_(shape2D|shape|firstorder|glcm|glrlm|glszm|gldm|gldzm|ngtdm)_\w+$"
)
VOLUME_COLUMNS = (
    "original_shape_Volume",
    "original_shape_MeshVolume",
    "original_shape_VoxelVolume",
)
CROSSFIT_MODELS = {
    "clinical": "clinical-only logistic regression (age, T/N/M, overall stage, histology, gender)",
    "volume": "GTV-volume-only logistic regression (log(1 + volume in cm3))",
    "radiomics": "L2-penalised logistic regression on the K best pyradiomics features "
    "(K and the penalty chosen by inner CV)",
}
SELECT_K = (5, 10, 20, 50)
PENALTIES = (0.01, 0.1, 1.0)


def radiomics_columns(table: pd.DataFrame) -> list[str]:
    """The numeric pyradiomics feature columns of ``table`` (diagnostics, ids, labels and
    scores never match the pattern)."""
    return [
        column
        for column in table.columns
        if RADIOMICS_PATTERN.match(str(column)) and pd.api.types.is_numeric_dtype(table[column])
    ]


def volume_cm3(features: pd.DataFrame) -> pd.Series:
    """The GTV volume in cm3 from the first pyradiomics volume column present (mm3)."""
    for column in VOLUME_COLUMNS:
        if column in features:
            return features[column].astype(float) / 1000.0
    raise ValueError(
        f"the features table has no GTV volume column (one of {list(VOLUME_COLUMNS)}); give "
        "a pyradiomics table with --features"
    )


def _radiomics_model(n_train: int, n_features: int, seed: int):
    from sklearn.feature_selection import SelectKBest, VarianceThreshold, f_classif
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import QuantileTransformer

    # the label-free steps are fitted once per outer training fold; the supervised ones
    # (selection, penalty) inside the inner cross-validation as well
    selection = Pipeline(
        [("select", SelectKBest(f_classif)), ("model", LogisticRegression(max_iter=2000))]
    )
    # K beyond the features left after the variance filter would select them all, with a warning
    sizes = [k for k in SELECT_K if k < n_features] or ["all"]
    grid = {"select__k": sizes, "model__C": list(PENALTIES)}
    inner = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    return make_pipeline(
        SimpleImputer(strategy="median"),
        VarianceThreshold(),
        # rank-based: radiomic features are heavy-tailed
        QuantileTransformer(n_quantiles=min(100, n_train), random_state=seed),
        GridSearchCV(selection, grid, scoring="roc_auc", cv=inner, n_jobs=1),
    )


def _model(kind: str, n_train: int, n_features: int, seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    if kind == "radiomics":
        return _radiomics_model(n_train, n_features, seed)
    return make_pipeline(preprocessing(kind), LogisticRegression(max_iter=1000))


def _rows_of(table: pd.DataFrame, patients: list[str], what: str) -> pd.DataFrame:
    """``table``'s rows for ``patients``, in that order; a PatientID on several rows is an
    error naming it (which row holds the patient's values is ambiguous)."""
    repeated = sorted(set(table.patient_id[table.patient_id.duplicated()]))
    if repeated:
        raise ValueError(
            f"the {what} repeats PatientID {', '.join(map(str, repeated[:5]))}"
            f"{' ...' if len(repeated) > 5 else ''} ({len(repeated)} in all): leave those "
            "patients out first, as the cohort builder does (duplicate_clinical_id)"
        )
    return table.set_index("patient_id").reindex(patients)


def model_inputs(
    kind: str, clinical: pd.DataFrame, features: pd.DataFrame | None, patients: list[str]
) -> pd.DataFrame:
    """The inputs of one baseline for ``patients`` (rows in that order; a patient absent from
    a table gets missing values, imputed inside the folds)."""
    if kind == "clinical":
        return baseline_features("clinical", _rows_of(clinical, patients, "clinical table"))
    if features is None:
        raise ValueError(f"the {kind} baseline needs a features table (--features)")
    table = _rows_of(features, patients, "features table")
    if kind == "volume":
        return pd.DataFrame({"gtv_volume_cm3": volume_cm3(table)})
    columns = radiomics_columns(table)
    if not columns:
        raise ValueError(
            "the features table has no pyradiomics feature columns (names such as "
            "original_firstorder_Mean or wavelet-LLH_glcm_Idm); give one with --features"
        )
    return table[columns].astype(float).replace([np.inf, -np.inf], np.nan)


def out_of_fold(
    kind: str,
    clinical: pd.DataFrame,
    features: pd.DataFrame | None,
    labels: pd.Series,
    n_folds: int = 5,
    seed: int = 0,
) -> pd.DataFrame:
    """Out-of-fold probabilities of one baseline on exactly the patients of ``labels``
    (``patient_id -> 0/1``): ``patient_id, fold, y_true, y_prob``; each patient is predicted
    by the model fitted on the other folds. ``frame.attrs`` holds what the model chose."""
    from sklearn.model_selection import StratifiedKFold

    if kind not in CROSSFIT_MODELS:
        raise ValueError(f"baseline {kind!r}: choose one of {sorted(CROSSFIT_MODELS)}")
    patients = [str(p) for p in labels.index]
    y = labels.astype(int).to_numpy()
    if min(np.bincount(y, minlength=2)) < n_folds:
        raise ValueError(f"{n_folds}-fold cross-validation needs {n_folds} patients of each class")
    inputs = model_inputs(kind, clinical, features, patients)
    probability = np.full(len(y), np.nan)
    fold_of = np.zeros(len(y), dtype=int)
    chosen = []
    outer = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for fold, (train, held_out) in enumerate(outer.split(inputs, y)):
        varying = int((inputs.iloc[train].std() > 0).sum()) if kind == "radiomics" else 0
        model = _model(kind, len(train), varying, seed)
        model.fit(inputs.iloc[train], y[train])
        probability[held_out] = model.predict_proba(inputs.iloc[held_out])[:, 1]
        fold_of[held_out] = fold
        if kind == "radiomics":
            chosen.append({"fold": fold, **model[-1].best_params_})
    frame = pd.DataFrame(
        {"patient_id": patients, "fold": fold_of, "y_true": y, "y_prob": probability}
    )
    frame.attrs["chosen"] = chosen
    frame.attrs["n_inputs"] = inputs.shape[1]
    frame.attrs["missing_patients"] = int(inputs.isna().all(axis=1).sum())
    return frame
