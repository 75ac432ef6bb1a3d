"""The Dataset and splits page: the report's Table 1 per fold, class balance, leakage check."""

from __future__ import annotations

import pandas as pd

from nsclc_engine.cohort.build import Reason
from nsclc_engine.cohort.splits import check_disjoint, split_table
from nsclc_engine.dashboard.run_view import RunView
from nsclc_engine.preprocess.dataset import expected_balance


def split_overview(view: RunView) -> dict:
    """The report's Table 1 per fold, class balance before and after sampling, leakage check."""

    if view.predictions is None or not view.splits:
        return {}
    outcome = "event" if view.config.get("task") == "survival" else "y_true"
    labels = view.predictions.drop_duplicates("patient_id").set_index("patient_id")[outcome]
    tables, balance, leaks = [], [], []
    for fold, split in enumerate(view.splits):
        table = split_table(split, labels.to_dict()).assign(fold=fold)
        tables.append(table)
        train_labels = [int(labels[p]) for p in split["train"]]
        expected = expected_balance(train_labels, bool(view.config.get("use_sampler", True)))
        balance.append(
            {"fold": fold, **{f"class {k} share per epoch": v for k, v in expected.items()}}
        )
        try:
            check_disjoint(split)
        except ValueError as error:
            leaks.append(f"fold {fold}: {error}")
    return {
        "table": pd.concat(tables, ignore_index=True),
        "sampling": pd.DataFrame(balance),
        "leaks": leaks,
        "folds": len(view.splits),
    }


def imported_overview(view: RunView) -> dict:
    """An imported run's patients: rows used of the file's, and the rows left out per reason
    with examples (``metrics.json``); ``{}`` for other runs."""
    metrics = view.metrics
    if metrics.get("kind") != "imported":
        return {}
    excluded = pd.DataFrame(
        [
            {
                "reason": entry["meaning"],
                "rows": entry["count"],
                "examples": ", ".join(entry["examples"]),
            }
            for entry in metrics.excluded.values()
        ],
        columns=["reason", "rows", "examples"],
    )
    return {
        "n_rows": metrics["n_rows"],
        "n_used": metrics["n_used"],
        "excluded": excluded,
        "score": metrics["score"],
        "source": metrics["threshold_source"]["text"],
    }


def case_mix(view: RunView) -> pd.DataFrame:
    """An external-validation run's case-mix table, development vs external cohort; empty
    for other runs."""
    return pd.DataFrame(view.metrics.case_mix)


def review_exclusion_state(
    in_force: dict[str, str], report: pd.DataFrame, included: set[str]
) -> dict[str, list]:
    """The reviewers' exclusions against a cohort build (``report``: its cleaning report;
    ``included``: its patients): ``applied`` (in force and left out on review in this build),
    ``pending`` (in force, still in this build: the next build leaves them out) and ``lifted``
    (left out on review in this build, withdrawn since: the next build takes them back)."""
    built = set(report.loc[report.reason == "review_excluded", "patient_id"])
    return {
        "applied": sorted(built & set(in_force)),
        "pending": sorted(set(in_force) & set(included)),
        "lifted": sorted(built - set(in_force)),
    }


NOTE_FOR_REVIEWERS = "excluded on review (the reviewer's note is for reviewers)"


def exclusions_shown(exclusions: pd.DataFrame, reads_notes: bool) -> pd.DataFrame:
    """A cohort's exclusions (its cleaning report's rows) as the Dataset page shows them: a
    review exclusion's detail (the reviewer, the date and the note) only to those who read
    review notes (reviewers and above); everyone else sees that it was excluded on review."""
    if reads_notes:
        return exclusions
    shown = exclusions.copy()
    shown.loc[shown.reason == Reason.REVIEW_EXCLUDED.value, "detail"] = NOTE_FOR_REVIEWERS
    return shown
