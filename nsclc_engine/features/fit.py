"""A penalised linear model on frozen features, its penalty chosen on training patients only.

Classification: standardisation and L2 logistic regression, ``C`` chosen by stratified
k-fold cross-validation (AUC) inside the training part. Survival: standardisation and an
elastic-net Cox model (scikit-survival's ``CoxnetSurvivalAnalysis``, l1_ratio 0.5), its
``alpha`` chosen by k-fold cross-validation (Harrell's C) inside the training part. The
validation and test patients are only predicted: the threshold and the recalibration are then
fitted on validation by the evaluation stage, and the test part is scored once.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

C_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
L1_RATIO = 0.5
N_ALPHAS = 12


def fit_fold(
    features: pd.DataFrame,
    split: dict[str, list[str]],
    outcomes: pd.DataFrame,
    task: str,
    cv_folds: int = 5,
    seed: int = 0,
) -> tuple[pd.DataFrame, dict]:
    """Fit on ``split["train"]``, predict every patient of the split. ``outcomes`` (index
    patient_id): ``label`` for classification, ``time_days`` and ``event`` for survival.
    Returns the predictions (the trained runs' columns, without ``fold``) and what was
    chosen."""
    train = list(split["train"])
    every = [p for part in ("train", "validation", "test") for p in split.get(part, [])]
    part_of = {p: part for part in ("train", "validation", "test") for p in split.get(part, [])}
    x_train, x_all = features.loc[train].to_numpy(), features.loc[every].to_numpy()
    if task == "survival":
        score, chosen = _cox(x_train, outcomes.loc[train], x_all, cv_folds, seed)
        frame = pd.DataFrame(
            {
                "patient_id": every,
                "split": [part_of[p] for p in every],
                "risk": score,
                "time_days": outcomes.loc[every, "time_days"].to_numpy(),
                "event": outcomes.loc[every, "event"].astype(int).to_numpy(),
            }
        )
        return frame, chosen
    labels = outcomes.loc[train, "label"].astype(int).to_numpy()
    probability, logit, chosen = _logistic(x_train, labels, x_all, cv_folds, seed)
    frame = pd.DataFrame(
        {
            "patient_id": every,
            "split": [part_of[p] for p in every],
            "y_true": outcomes.loc[every, "label"].astype(int).to_numpy(),
            "y_prob": probability,
            "logit": logit,
        }
    )
    return frame, chosen


def _inner_folds(counts: list[int], cv_folds: int, what: str) -> int:
    folds = min(cv_folds, *counts)
    if folds < 2:
        raise ValueError(
            f"the training part has {min(counts)} {what}: too few to choose the penalty by "
            "cross-validation; use more patients"
        )
    return folds


def _logistic(x_train, y_train, x_all, cv_folds: int, seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folds = _inner_folds(np.bincount(y_train, minlength=2).tolist(), cv_folds, "of one class")
    search = GridSearchCV(
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)),
        {"logisticregression__C": list(C_GRID)},
        cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
        scoring="roc_auc",
    )
    search.fit(x_train, y_train)
    chosen = {
        "model": "L2 logistic regression on standardised features",
        "C": float(search.best_params_["logisticregression__C"]),
        "inner_cv_auc": float(search.best_score_),
        "inner_folds": folds,
        "grid": list(C_GRID),
    }
    return search.predict_proba(x_all)[:, 1], search.decision_function(x_all), chosen


def _cox(x_train, outcomes: pd.DataFrame, x_all, cv_folds: int, seed: int):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sksurv.linear_model import CoxnetSurvivalAnalysis
    from sksurv.util import Surv

    y = Surv.from_arrays(outcomes.event.astype(bool).to_numpy(), outcomes.time_days.to_numpy())
    folds = _inner_folds([int(outcomes.event.sum())], cv_folds, "events")
    path = make_pipeline(
        StandardScaler(),
        CoxnetSurvivalAnalysis(l1_ratio=L1_RATIO, alpha_min_ratio=0.01, n_alphas=N_ALPHAS),
    )
    events = outcomes.event.astype(int).to_numpy()
    with warnings.catch_warnings(record=True) as caught:  # counted and reported, not shown
        warnings.simplefilter("always", ConvergenceWarning)
        # every inner fold holds events (stratified on the event), else its C-index is
        # undefined; few censored patients only draw sklearn's warning, recorded here
        splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
        inner = list(splitter.split(x_train, events))
        path.fit(x_train, y)
        alphas = [float(a) for a in path[-1].alphas_]
        search = GridSearchCV(
            make_pipeline(StandardScaler(), CoxnetSurvivalAnalysis(l1_ratio=L1_RATIO)),
            {"coxnetsurvivalanalysis__alphas": [[a] for a in alphas]},
            cv=inner,
            error_score=np.nan,  # a fit that fails is never the one chosen
        )
        search.fit(x_train, y)
    model = search.best_estimator_
    chosen = {
        "model": f"elastic-net Cox (l1_ratio {L1_RATIO}) on standardised features",
        "alpha": float(search.best_params_["coxnetsurvivalanalysis__alphas"][0]),
        "inner_cv_c_index": float(search.best_score_),
        "inner_folds": folds,
        "features_used": int(np.count_nonzero(model[-1].coef_)),
        "convergence_warnings": sum(issubclass(w.category, ConvergenceWarning) for w in caught),
    }
    return model.predict(x_all), chosen
