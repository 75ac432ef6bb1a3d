"""Calibration: are the probabilities right? Recalibrators fitted on validation, shown on test."""

import pandas as pd
import streamlit as st

from nsclc_engine.evaluate import figures
from nsclc_engine.stats.calibration import (
    calibration_summary,
    decision_curve,
    reliability_curve,
)
from pages.common import part_predictions, require_finished_run, stamp, through_app

through_app(__file__)
st.title("Calibration")
view = require_finished_run()
key = stamp(view)

method = st.radio(
    "Recalibration (fitted on validation, applied to test)",
    ["none", "platt", "temperature", "isotonic"],
    horizontal=True,
    key="cal_method",
)
strategy = st.radio("Bins", ["uniform", "quantile"], horizontal=True, key="cal_bins")
raw = part_predictions(view.run_id, key, "test", "none")
shown = part_predictions(view.run_id, key, "test", method)
for note in shown.attrs.get("notes", []):
    st.warning(note)

rows = []
for name, frame in (("raw", raw), (method, shown)) if method != "none" else (("raw", raw),):
    rows.append(
        {
            "probabilities": name,
            **calibration_summary(frame.y_true, frame.y_prob, strategy=strategy),
        }
    )
st.dataframe(
    pd.DataFrame(rows),
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
curves = {"raw": reliability_curve(raw.y_true, raw.y_prob, strategy=strategy)}
if method != "none":
    curves[method] = reliability_curve(shown.y_true, shown.y_prob, strategy=strategy)
st.plotly_chart(figures.reliability_figure(curves), key="reliability")
st.plotly_chart(
    figures.decision_curve_figure({"model (test)": decision_curve(shown.y_true, shown.y_prob)}),
    key="decision",
)
