"""The threshold explorer (``threshold_explorer.js``): the slider, the confusion matrix, six
rates with bootstrap CIs, the ROC and precision-recall operating point and the histogram
marker, drawn in the browser from :func:`nsclc_engine.dashboard.threshold.explorer_table`,
so moving the threshold needs no round trip to the server. The value reaches the server when
the slider rests (for the address bar, the cells' patients and saving)."""

from collections.abc import Callable
from pathlib import Path

import streamlit as st

HERE = Path(__file__).parent
KEY = "thr_explorer"

_explorer = st.components.v2.component(
    "nsclc_threshold_explorer",
    css=(HERE / "threshold_explorer.css").read_text(),
    js=(HERE / "threshold_explorer.js").read_text(),
    isolate_styles=False,  # the matrix stays in the page's DOM, findable by data-role
)


def show(table: dict, table_id: str, threshold: float, note: str, on_move: Callable) -> None:
    """Draw ``table`` at ``threshold``; ``table_id`` names what the table was computed from
    (a new one redraws); ``note`` is the matrix caption; ``on_move(value)`` runs on the
    server when the slider rests at a new value."""
    _explorer(
        key=KEY,
        data=table | {"table": table_id, "threshold": float(threshold), "positive_class": note},
        on_threshold_change=lambda: on_move(moved_to()),
    )


def moved_to() -> float | None:
    """The value the browser's slider last sent, if any."""
    state = st.session_state.get(KEY) or {}
    value = state.get("threshold") if hasattr(state, "get") else None
    return None if value is None else float(value)
