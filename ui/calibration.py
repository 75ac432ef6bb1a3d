"""Calibration: are the probabilities right? Recalibration methods compared on validation
(cross-validated); test shown only for the method in force."""

import streamlit as st

from nsclc_engine.dashboard import calibration as page
from nsclc_engine.evaluate import figures
from ui.common import load, part_predictions, require_finished_run, require_page, stamp

st.title("Calibration")
user = require_page("calibration")
view = require_finished_run()
key = stamp(view)

part = view.held_out
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


@st.cache_data(show_spinner=False, max_entries=16)
def _choice(run_id: str, key: tuple, strategy: str) -> dict:
    return page.recalibration_choice(load(run_id).predictions, strategy)


summary_format = {
    c: st.column_config.NumberColumn(format="%.3f") for c in ("brier", "ece", "intercept", "slope")
}
choice = _choice(view.run_id, key, strategy)
if not choice["summary"].empty:
    st.subheader("Choosing a recalibration: validation patients")
    st.dataframe(choice["summary"], hide_index=True, column_config=summary_format)
    st.caption(
        "Each method fitted and scored by cross-validation within the validation patients, so "
        "no method is scored on the rows it was fitted on; test is not read. Brier: mean "
        "squared error of the probability. ECE: bin-weighted |observed - predicted|. Intercept "
        "0 and slope 1 are ideal (slope < 1: predictions too extreme)."
    )
    for note in choice["notes"]:
        st.caption(note)
    shown_methods = st.multiselect(
        "Reliability on validation (cross-validated)",
        list(choice["reliability"]),
        default=list(dict.fromkeys(["none", page.method_in_force(view.metrics, view.predictions)])),
        key="cal_methods",
    )
    st.plotly_chart(
        figures.reliability_figure({m: choice["reliability"][m] for m in shown_methods}),
        key="reliability_validation",
    )

method = page.method_in_force(view.metrics, view.predictions)
st.subheader(f"{part.capitalize()} patients: the method in force only ({method})")
if choice["summary"].empty:
    st.caption(
        "This run has no validation predictions: its probabilities are shown as they came "
        "(its report states where its recalibration came from)."
    )
else:
    st.caption(
        f"The run's evaluation applied {method!r}, fitted on validation and frozen; {part} "
        "shows what that choice does. Other methods are not shown on test: choosing among "
        "them there would tune on the held-out patients."
    )
raw = part_predictions(view.run_id, key, part, "none")
shown = part_predictions(view.run_id, key, part, method)
for note in shown.attrs.get("notes", []):
    st.warning(note)

shown_view = page.calibration_view(raw, shown, method, strategy, part)
st.dataframe(shown_view["summary"], hide_index=True, column_config=summary_format)
st.plotly_chart(figures.reliability_figure(shown_view["reliability"]), key="reliability")
st.plotly_chart(
    figures.decision_curve_figure(shown_view["decision"]),
    key="decision",
)
