"""Calibration: are the probabilities right? Recalibrators fitted on validation, shown on test."""

import streamlit as st

from nsclc_engine.dashboard import calibration as page
from nsclc_engine.evaluate import figures
from nsclc_engine.stats.calibration import RECALIBRATION_METHODS
from ui.common import part_predictions, require_finished_run, require_page, stamp

st.title("Calibration")
user = require_page("calibration")
view = require_finished_run()
key = stamp(view)

part = view.held_out
method = st.radio(
    f"Recalibration (fitted on validation, applied to {part})",
    RECALIBRATION_METHODS,
    horizontal=True,
    key="cal_method",
)
strategy = st.radio("Bins", page.BIN_STRATEGIES, horizontal=True, key="cal_bins")
if part != "test":
    st.caption(f"{view.kind.capitalize()} run: the {part} patients' predictions.")
external = page.external_calibration(view.metrics or {})
if not external.empty:
    st.subheader("On the external cohort")
    st.dataframe(
        external,
        hide_index=True,
        column_config={
            c: st.column_config.NumberColumn(format="%+.3f")
            for c in ("calibration-in-the-large", "slope", "intercept shift")
        },
    )
    st.caption(
        "Calibration-in-the-large 0 and slope 1 are ideal. A recalibration-in-the-large uses the "
        "external labels themselves: it shows what a local intercept update would give, not a "
        "validated result."
        + (
            " A slope shown as None could not be estimated: the probabilities barely vary, or "
            "they separate the outcomes."
            if external.slope.isna().any()
            else ""
        )
    )
raw = part_predictions(view.run_id, key, part, "none")
shown = part_predictions(view.run_id, key, part, method)
for note in shown.attrs.get("notes", []):
    st.warning(note)

shown_view = page.calibration_view(raw, shown, method, strategy, part)
st.dataframe(
    shown_view["summary"],
    hide_index=True,
    column_config={
        c: st.column_config.NumberColumn(format="%.3f")
        for c in ("brier", "ece", "intercept", "slope")
    },
)
st.caption(
    "Brier: mean squared error of the probability. ECE: bin-weighted |observed - predicted|. "
    "Intercept 0 and slope 1 are ideal (slope < 1: predictions too extreme)."
)
st.plotly_chart(figures.reliability_figure(shown_view["reliability"]), key="reliability")
st.plotly_chart(
    figures.decision_curve_figure(shown_view["decision"]),
    key="decision",
)
