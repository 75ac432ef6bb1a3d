"""Threshold explorer: move the operating threshold and see what it does, live."""

import pandas as pd
import streamlit as st

from nsclc_engine import dashboard, figures
from nsclc_engine.calibration import probability_histograms
from pages.common import (
    part_predictions,
    require_finished_run,
    rule_thresholds,
    stamp,
    threshold_state,
)

st.title("Threshold")
view = require_finished_run()
key = stamp(view)

left, right = st.columns(2)
split = left.radio("Predictions", ["validation", "test"], horizontal=True, key="thr_split")
recalibration = right.radio(
    "Probabilities",
    ["none", "platt", "temperature", "isotonic"],
    format_func=lambda m: "raw" if m == "none" else f"recalibrated ({m})",
    horizontal=True,
    key="thr_recal",
)
if split == "test":
    st.warning(
        "Choose the threshold on **validation** predictions. Test predictions are for reading off "
        "what a threshold already chosen does; tuning on them repeats the report's mistake."
    )

rules = rule_thresholds(view.run_id, key, recalibration)
if "threshold" not in st.session_state:
    saved = (view.threshold or {}).get("threshold")
    st.session_state.threshold = float(saved) if saved is not None else 0.5


def _jump(value: float) -> None:
    st.session_state.threshold = round(float(value), 3)


st.caption("Thresholds fitted on validation by each rule:")
buttons = st.columns(len(rules) or 1)
for column, (name, value) in zip(buttons, rules.items(), strict=False):
    column.button(f"{name}: {value:.3f}", on_click=_jump, args=(value,), key=f"rule_{name}")

threshold = st.slider("Threshold", 0.0, 1.0, step=0.001, format="%.3f", key="threshold")
frame = part_predictions(view.run_id, key, split, recalibration)
state = threshold_state(view.run_id, key, split, recalibration, threshold)
m, ci = state["metrics"], state["ci"]

columns = st.columns(6)
for column, (name, label) in zip(
    columns,
    [
        ("sensitivity", "Sensitivity"),
        ("specificity", "Specificity"),
        ("f1", "F1"),
        ("accuracy", "Accuracy"),
        ("precision", "PPV"),
        ("npv", "NPV"),
    ],
    strict=True,
):
    low, high = ci[name]
    defined = m[name] == m[name]  # NaN: no patient in the denominator at this threshold
    column.metric(label, f"{m[name]:.3f}" if defined else "n/a")
    column.caption(f"95% CI {low:.3f}-{high:.3f}" if defined else "undefined here")

st.subheader("Confusion matrix")
counts = pd.DataFrame(
    {"predicted negative": [m["tn"], m["fn"]], "predicted positive": [m["fp"], m["tp"]]},
    index=["true negative", "true positive"],
)
table, heatmap = st.columns([1, 2])
table.table(counts)
table.caption(f"{view.metrics.get('positive_class', 'positive = 1')}; n = {len(frame)}")
heatmap.plotly_chart(figures.confusion_matrix_figure(m), key="confusion")

point = [
    {
        "name": f"threshold {threshold:.3f}",
        "fpr": 1 - m["specificity"],
        "tpr": m["sensitivity"],
        "recall": m["sensitivity"],
        "precision": m["precision"],
    }
]
roc, pr = st.columns(2)
roc.plotly_chart(
    figures.roc_figure([{"name": split, **state["roc"], "auc": state["auc"]}], point), key="roc"
)
pr.plotly_chart(
    figures.pr_figure(
        [{"name": split, **state["pr"], "ap": state["average_precision"]}],
        point,
        state["prevalence"],
    ),
    key="pr",
)
st.plotly_chart(
    figures.probability_histogram_figure(
        probability_histograms(frame.y_true, frame.y_prob), threshold
    ),
    key="histogram",
)

if st.button("Save threshold", type="primary", key="save_threshold"):
    rule = next((name for name, value in rules.items() if round(value, 3) == threshold), "manual")
    saved = dashboard.save_threshold(view.run_dir, threshold, rule, split, recalibration)
    st.success(f"Saved {saved['threshold']:.3f} ({rule}, chosen on {split}) to threshold.json.")
