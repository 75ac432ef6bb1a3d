"""A review queue: the cases a reviewer walks through one by one (next, previous) on the
Patient page, recording a verdict on each (:mod:`nsclc_engine.review.store`). A queue is the
patients of a confusion cell, of a split, or the held-out patients by the model's confidence;
the Runs page shows each run's progress (cases with a verdict / cases)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from nsclc_engine.dashboard.patient import patient_table
from nsclc_engine.dashboard.run_view import RunView


@dataclass(frozen=True)
class Queue:
    """``patients`` in review order, ``split`` they are opened in, ``name`` to show."""

    name: str
    split: str
    patients: tuple[str, ...]

    def position(self, patient_id: str) -> int | None:
        return self.patients.index(patient_id) if patient_id in self.patients else None

    def step(self, patient_id: str, by: int) -> str:
        """The patient ``by`` places after ``patient_id`` (kept within the queue)."""
        at = self.position(patient_id)
        at = 0 if at is None else min(max(at + by, 0), len(self.patients) - 1)
        return self.patients[at]


def split_queue(view: RunView, split: str) -> Queue:
    """A split's patients in the Patient page's order (errors first, or highest risk)."""
    table = patient_table(view, split)
    return Queue(f"{split} patients", split, tuple(table.patient_id.astype(str).unique()))


def confidence_queue(view: RunView) -> Queue:
    """The held-out patients, the model's most confident call first: the distance of the
    probability from the threshold in force (on the threshold's scale), or for a survival run
    the distance of the risk percentile from the median."""
    table = patient_table(view, view.held_out)
    if view.config.get("task") == "survival":
        confidence = (table.risk_percentile - 50).abs() / 50
    else:
        confidence = table.margin.abs()
    order = table.assign(_confidence=confidence).sort_values(
        ["_confidence", "patient_id"], ascending=[False, True]
    )
    return Queue(
        f"all {view.held_out} patients by confidence",
        view.held_out,
        tuple(order.patient_id.astype(str).unique()),
    )


def cell_queue(cell: str, split: str, rows: pd.DataFrame) -> Queue:
    """The patients a confusion cell lists (its rows, in their order)."""
    return Queue(f"{cell} of {split}", split, tuple(rows.patient_id.astype(str).unique()))


def review_cases(view: RunView) -> set[str]:
    """The cases a run is reviewed on: the patients it scored outside training."""
    scored = view.predictions[view.predictions.split != "train"]
    return set(scored.patient_id.astype(str))


def review_progress(current: pd.DataFrame, cases: dict[str, set[str]]) -> dict[str, str]:
    """``cases with a verdict / cases`` per run, from the current verdicts (one per case:
    :func:`nsclc_engine.review.store.current_verdicts`) and each run's cases."""
    progress = {}
    for run_id, patients in cases.items():
        reviewed = set(current.patient_id[current.run_id == run_id].astype(str)) & patients
        progress[run_id] = f"{len(reviewed)} / {len(patients)}"
    return progress
