"""Threshold explorer: move the operating threshold and see what it does, live."""

import pandas as pd
import streamlit as st

from nsclc_engine.dashboard import run_view
from nsclc_engine.dashboard import threshold as page
from nsclc_engine.evaluate import figures
from nsclc_engine.stats.calibration import RECALIBRATION_METHODS, probability_histograms
from ui.common import (
    audit,
    authorize,
    part_predictions,
    require_finished_run,
    require_page,
    rule_thresholds,
    stamp,
    threshold_state,
)

st.title("Threshold")
user = require_page("threshold")
view = require_finished_run()
key = stamp(view)

saved_point = (view.threshold or {}).get("operating_point") or {}
scale = page.default_scale(saved_point, view.config.get("folds", 0))
if "thr_recal" not in st.session_state and scale:
    st.session_state.thr_recal = scale

left, right = st.columns(2)
if st.session_state.get("thr_split") not in view.parts:
    st.session_state.pop("thr_split", None)  # another run's part (test vs external)
split = left.radio("Predictions", view.parts, horizontal=True, key="thr_split")
recalibration = right.radio(
    "Probabilities",
    RECALIBRATION_METHODS,
    format_func=lambda m: "raw" if m == "none" else f"recalibrated ({m})",
    horizontal=True,
    key="thr_recal",
)
if view.metrics and view.metrics.get("augmentation_warning"):
    st.error(view.metrics["augmentation_warning"])
verdict = run_view.test_verdict(view.metrics or {})
if verdict:
    st.caption(run_view.verdict_text(verdict))
source = (view.metrics or {}).get("threshold_source")
if source:
    st.info(f"{view.kind.capitalize()} run: {source['text']}.")
if split != "validation":
    st.warning(
        f"Choose the threshold on **validation** predictions. {split.capitalize()} predictions "
        "are for reading off what a threshold already chosen does; tuning on them repeats the "
        "report's mistake."
    )

if view.config.get("folds", 0) > 1:
    st.caption(
        "k-fold run: one threshold over the pooled out-of-fold predictions here; the report "
        "applies each fold's own validation threshold to that fold. Pooled rows come from "
        "several fold models: read them recalibrated (each fold's own fit), not raw."
    )
rules = rule_thresholds(view.run_id, key, recalibration)
if "threshold" not in st.session_state:
    saved = (view.threshold or {}).get("threshold")
    st.session_state.threshold = round(float(saved), 3) if saved is not None else 0.5
    st.session_state.threshold_rule = "saved" if saved is not None else "manual"


def _jump(name: str, value: float) -> None:
    st.session_state.threshold = round(float(value), 3)
    st.session_state.threshold_rule = name


def _moved() -> None:
    st.session_state.threshold_rule = "manual"


if rules:
    st.caption("Thresholds fitted on validation by each rule:")
buttons = st.columns(len(rules) or 1)
for column, (name, value) in zip(buttons, rules.items(), strict=False):
    column.button(f"{name}: {value:.3f}", on_click=_jump, args=(name, value), key=f"rule_{name}")

threshold = st.slider(
    "Threshold", 0.0, 1.0, step=0.001, format="%.3f", key="threshold", on_change=_moved
)
frame = part_predictions(view.run_id, key, split, recalibration)
for note in frame.attrs.get("notes", []):
    st.warning(note)
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

cells = page.cell_patients(frame, threshold)
cell = st.segmented_control(
    "Patients of a cell",
    list(page.CELLS),
    format_func=lambda c: f"{c}: {len(cells[c])} {page.CELLS[c]}",
    key="thr_cell",
)
if cell:
    rows = cells[cell]
    can_open = user.may_open("patient") and split in ("validation", "test")
    picked = st.dataframe(
        rows,
        hide_index=True,
        width="stretch",
        column_config={"y_prob": st.column_config.NumberColumn("probability", format="%.3f")},
        on_select="rerun" if can_open else "ignore",
        selection_mode="single-row",
        key=f"thr_cell_rows_{cell}",
    )
    st.caption(
        "Click a patient to open their case on the Patient page (its call there uses the "
        "threshold in force, the saved one)."
        if can_open
        else "The Patient page needs the reviewer role and a validation or test split."
    )
    chosen = picked.selection.rows if can_open else []
    if chosen:
        st.session_state.update(
            pt_open=str(rows.patient_id.iloc[chosen[0]]),
            pt_split=split,
            pt_true=None,
            pt_pred=None,
            pt_recal=recalibration if recalibration != "none" else "platt",
        )
        st.switch_page("ui/patient.py")

point = [page.operating_point(m, threshold)]
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

if st.button(
    "Save threshold",
    type="primary",
    key="save_threshold",
    disabled=split != "validation" or not user.may_do("save_threshold"),
    help="Only a threshold chosen on validation predictions can be saved (a run without "
    "validation predictions keeps the threshold of its stated source), by an operator.",
):
    actor = authorize("save_threshold")
    rule = st.session_state.get("threshold_rule", "manual")
    saved = page.save_threshold(
        view.run_dir, threshold, rule, split, recalibration, saved_by=actor.identity
    )
    audit(actor, "save_threshold", view.run_id, threshold=saved["threshold"], rule=rule)
    st.success(f"Saved {saved['threshold']:.3f} ({rule}, chosen on {split}) to threshold.json.")
