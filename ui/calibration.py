"""Calibration: are the probabilities right? Recalibration methods compared on validation
(cross-validated); test shown only for the method in force. Survival runs: the predicted
probability of death by a horizon against what happened (Kaplan-Meier), smoothed, in the
large, and over whole curves (D-calibration)."""

import pandas as pd
import streamlit as st

from nsclc_engine.dashboard import calibration as page
from nsclc_engine.dashboard.survival_probabilities import horizon_label, survival_options
from nsclc_engine.evaluate import figures
from nsclc_engine.evaluate.survival import BASELINE_KINDS
from ui.common import (
    load,
    offer_runs,
    part_predictions,
    require_finished_run,
    require_page,
    stamp,
)

st.title("Calibration")
user = require_page("calibration")
view = require_finished_run(allow_survival=True)
key = stamp(view)


@st.cache_data(show_spinner="Smoothing the calibration curve and its bootstrap…", max_entries=32)
def _survival_state(run_id: str, key: tuple, split: str, horizon: float, kind: str) -> dict:
    return page.survival_calibration_state(load(run_id), split, horizon, kind)


def _keep_if_offered(widget_key: str, offered: list) -> None:
    """A choice left from another run that this one does not offer falls back to the
    default."""
    if widget_key in st.session_state and st.session_state[widget_key] not in offered:
        del st.session_state[widget_key]


def _interval(ci: list, scale: float = 1.0, digits: int = 3) -> str:
    return f"95 % CI {scale * ci[0]:.{digits}f} to {scale * ci[1]:.{digits}f}"


def survival_calibration() -> None:
    options = survival_options(view)
    controls = st.columns([2, 2, 2])
    horizons = [*options["horizons"], *(["other"] if options["any_horizon"] else [])]
    _keep_if_offered("cal_horizon", horizons)
    picked = controls[0].selectbox(
        "Horizon",
        horizons,
        index=horizons.index(options["default"]) if options["default"] in horizons else 0,
        format_func=lambda h: "another day…" if h == "other" else f"{horizon_label(h)} (day {h:g})",
        key="cal_horizon",
    )
    horizon = picked
    if picked == "other":
        horizon = float(
            controls[0].number_input(
                "Day", min_value=1, max_value=36500, value=1095, step=30, key="cal_day"
            )
        )
    _keep_if_offered("cal_kind", options["kinds"])
    kind = controls[1].radio(
        "Baseline (fitted on validation)",
        options["kinds"],
        horizontal=True,
        key="cal_kind",
        help=" · ".join(f"{k}: {BASELINE_KINDS[k]}" for k in options["kinds"]),
    )
    parts = options["parts"]
    _keep_if_offered("cal_split", parts)
    split = controls[2].radio(
        "Patients", parts, index=len(parts) - 1, horizontal=True, key="cal_split"
    )
    label = horizon_label(horizon)
    state = _survival_state(view.run_id, key, split, float(horizon), kind)
    if "note" in state:
        st.info(f"{state['note']}.")
        return
    st.caption(
        f"{state['n']} {split} patients: {state['n_deaths_by_horizon']} died by {label}, "
        f"{state['n_censored_before_horizon']} were last seen alive before it (their outcome "
        f"is unknown; Kaplan-Meier accounts for them). Probabilities from the {state['source']}."
        + (" Numbers as in the run's metrics.json." if state.get("from_metrics") else "")
    )
    for note in state["notes"]:
        st.warning(note)

    st.subheader(f"Predicted and observed risk of death by {label}")
    st.plotly_chart(figures.survival_calibration_figure(state, horizon), key="survival_cal")
    st.caption(
        f"Points on the diagonal: of patients given 30 % risk of death by {label}, 30 % died. "
        "Each point is a fifth of the patients, ranked by predicted risk (observed by "
        "Kaplan-Meier, bars its 95 % CI); the line smooths over every patient."
    )
    if "groups" in state:
        st.dataframe(
            pd.DataFrame(state["groups"]).assign(
                observed_ci=lambda t: t.observed_ci.map(
                    lambda ci: "not reached" if ci is None else f"{ci[0]:.2f} to {ci[1]:.2f}"
                )
            ),
            hide_index=True,
            column_config={
                "n_events_by_horizon": st.column_config.NumberColumn(f"deaths by {label}"),
                "predicted": st.column_config.NumberColumn("mean predicted", format="%.2f"),
                "observed": st.column_config.NumberColumn("observed (KM)", format="%.2f"),
                "observed_ci": "observed 95 % CI",
            },
        )
    for block in page.CALIBRATION_BLOCKS:
        if f"{block}_note" in state:
            st.info(f"{block.replace('_', ' ')}: {state[f'{block}_note']}.")

    if "smoothed" in state:
        smoothed = state["smoothed"]
        errors = st.columns(3)
        for column, name in zip(errors, ("ici", "e50", "e90"), strict=True):
            column.metric(name.upper(), f"{smoothed[name]:.3f}")
            if f"{name}_ci" in smoothed:
                column.caption(_interval(smoothed[f"{name}_ci"]))
        if "ci_note" in smoothed:
            st.caption(f"No CI: {smoothed['ci_note']}.")
        st.caption(
            f"ICI: on average, a patient's predicted risk of death by {label} is "
            f"{100 * smoothed['ici']:.0f} percentage points away from the smoothed observed "
            "risk; E50 is the median patient's gap, E90 the gap 90 % of patients stay within "
            f"(0 is perfect). CIs: patient bootstrap, {smoothed.get('n_resamples', 0)} resamples."
        )

    if "in_the_large" in state:
        st.subheader("Calibration-in-the-large")
        large = state["in_the_large"]
        figures_row = st.columns(4)
        figures_row[0].metric(f"Died by {label} (Kaplan-Meier)", f"{100 * large['observed']:.0f} %")
        figures_row[1].metric("Mean predicted", f"{100 * large['predicted']:.0f} %")
        figures_row[2].metric("Observed − predicted", f"{100 * large['difference']:+.0f} points")
        figures_row[2].caption(_interval(large["difference_ci"], 100, 0) + " points")
        figures_row[3].metric("Observed / predicted", f"{large['ratio']:.2f}")
        figures_row[3].caption(_interval(large["ratio_ci"], 1, 2))
        st.caption(page.in_the_large_text(large))

    st.subheader("D-calibration: the whole predicted curves")
    if "d_calibration" in state:
        st.plotly_chart(figures.d_calibration_figure(state["d_calibration"]), key="d_cal")
        st.caption(page.d_calibration_text(state["d_calibration"]))
    else:
        st.info(f"{state['d_calibration_note']}.")


if view.config.get("task") == "survival":
    why = page.why_no_calibration(view)
    if why:
        offer_runs(why, "calibration", page.why_no_calibration)
    survival_calibration()
    st.stop()

part = view.held_out
strategy = st.radio("Bins", page.BIN_STRATEGIES, horizontal=True, key="cal_bins")
if part != "test":
    st.caption(f"{view.kind.capitalize()} run: the {part} patients' predictions.")
external = page.external_calibration(view)
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
        default=list(dict.fromkeys(["none", page.method_in_force(view)])),
        key="cal_methods",
    )
    st.plotly_chart(
        figures.reliability_figure({m: choice["reliability"][m] for m in shown_methods}),
        key="reliability_validation",
    )

method = page.method_in_force(view)
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
