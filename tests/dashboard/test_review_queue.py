"""Review queues and review progress (nsclc_engine.dashboard.review_queue), and the blank
cells of the pages' tables."""

import numpy as np
import pandas as pd

from nsclc_engine.dashboard import review_queue as queues
from nsclc_engine.dashboard.patient import patient_table
from nsclc_engine.dashboard.run_view import part_predictions
from nsclc_engine.dashboard.runs import blank_missing
from nsclc_engine.dashboard.threshold import cell_patients


def test_a_queue_walks_its_cases_and_stays_within_them(view):
    queue = queues.split_queue(view, "validation")
    expected = patient_table(view, "validation").patient_id.astype(str).unique().tolist()
    assert list(queue.patients) == expected and queue.split == "validation"
    first, last = queue.patients[0], queue.patients[-1]
    assert queue.step(first, 1) == queue.patients[1]
    assert queue.step(first, -1) == first and queue.step(last, 1) == last
    assert queue.position(last) == len(expected) - 1 and queue.position("nobody") is None


def test_by_confidence_puts_the_surest_call_first(view, survival_view):
    queue = queues.confidence_queue(view)
    table = patient_table(view, view.held_out).set_index("patient_id")
    margins = [abs(table.margin[p]) for p in queue.patients]
    assert margins == sorted(margins, reverse=True) and queue.split == view.held_out
    # the margin is the call's: the probability on the threshold's scale minus the threshold
    assert ((table.margin >= 0).astype(int) == table.call).all()
    survival = queues.confidence_queue(survival_view)
    ranked = patient_table(survival_view, survival_view.held_out).set_index("patient_id")
    distances = [abs(ranked.risk_percentile[p] - 50) for p in survival.patients]
    assert distances == sorted(distances, reverse=True)


def test_a_cell_queue_is_its_patients_and_progress_counts_current_verdicts(view):
    frame = part_predictions(view.predictions, "validation")
    rows = cell_patients(frame, 0.0)["FP"]
    queue = queues.cell_queue("FP", "validation", rows)
    assert list(queue.patients) == rows.patient_id.astype(str).tolist()
    cases = queues.review_cases(view)
    scored = view.predictions[view.predictions.split != "train"].patient_id
    assert cases == set(scored.astype(str))
    inside, outside = sorted(cases)[:2], "not-a-case"
    current = pd.DataFrame(
        {
            "run_id": ["fixture", "fixture", "fixture", "other"],
            "patient_id": [*inside, outside, inside[0]],
        }
    )
    assert queues.review_progress(current, {"fixture": cases, "idle": set()}) == {
        "fixture": f"2 / {len(cases)}",
        "idle": "0 / 0",
    }


def test_empty_cells_are_blank_and_numbers_keep_their_format():
    frame = pd.DataFrame(
        {"auc": [0.71234, np.nan, "0.700 ± 0.100"], "note": ["a", None, None]}
        | {"share": [0.5, None, None], "n": [3, 4, 5]}
    )
    shown = blank_missing(frame, {"auc": "{:.3f}", "share": "{:.0%}"})
    assert shown.auc.tolist() == ["0.712", "", "0.700 ± 0.100"]  # an experiment's row
    assert shown.note.tolist() == ["a", "", ""]
    assert shown.share.tolist() == ["50%", "", ""] and shown.n.tolist() == [3, 4, 5]
    ranks = pd.DataFrame({"rank": pd.array([1, None], dtype="Int64")})  # a run not ranked yet
    assert blank_missing(ranks, {})["rank"].tolist() == ["1", ""]
