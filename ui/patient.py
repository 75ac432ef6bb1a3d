"""Per-patient case review: the original CT in three planes with the GTV and what the model
looked at (Grad-CAM), the network input beside it, and the prediction with its uncertainty."""

import pandas as pd
import streamlit as st

from nsclc_engine.dashboard import patient as page
from nsclc_engine.explain import gradcam as explain
from nsclc_engine.explain import viewer
from nsclc_engine.explain.cache import checkpoint_stamp
from nsclc_engine.explain.inference import load_run_model
from ui.common import require_finished_run, stamp

st.title("Patient")
view = require_finished_run(allow_survival=True)
if view.kind != "trained":
    why = {
        "imported": "an imported run: its predictions were made elsewhere, so there is no "
        "model or CT here to show.",
        "frozen features": "a frozen-feature run: a linear model on a pretrained encoder's "
        "features made its predictions, so there is no trained network whose attention could "
        "be shown.",
    }
    st.info(
        f"Run `{view.run_id}` is "
        + why.get(
            view.kind,
            "an external-validation run: its predictions were made by a frozen run on another "
            "cohort; open that run for its cases.",
        )
    )
    st.stop()
survival = view.config.get("task") == "survival"


@st.cache_data(show_spinner=False, max_entries=32)
def _table(run_id, key, split, recalibration, true_label, predicted, errors_first):
    return page.patient_table(view, split, recalibration, true_label, predicted, errors_first)


@st.cache_resource(show_spinner="Reading the CT and its GTV…", max_entries=4)
def _case(run_dir: str, patient_id: str, cohort_stamp: int) -> viewer.PatientCase:
    return page.patient_case(view, patient_id)


@st.cache_resource(show_spinner=False, max_entries=4)
def _model(run_dir: str, fold: int, checkpoint: str):
    return load_run_model(run_dir, fold)


def _checkpoint(fold: int) -> str:
    return checkpoint_stamp(view.run_dir, fold)


choices = st.columns(5)
split = choices[0].selectbox("Split", page.SPLITS, key="pt_split")
labels = {None: "any", 0: "0", 1: "1"}
if survival:
    true_label = predicted = None
    recalibration, errors_first = "none", False
else:
    true_label = choices[1].selectbox(
        "True label", list(labels), format_func=labels.get, key="pt_true"
    )
    predicted = choices[2].selectbox(
        "Predicted label", list(labels), format_func=labels.get, key="pt_pred"
    )
    recalibration = choices[3].selectbox("Recalibration", page.RECALIBRATIONS, key="pt_recal")
    errors_first = choices[4].checkbox("Errors first (FN, FP)", value=True, key="pt_errors")
table = _table(view.run_id, stamp(view), split, recalibration, true_label, predicted, errors_first)
if table.empty:
    st.info("No patient of this split matches the filters.")
    st.stop()


def _describe(i: int) -> str:
    row = table.loc[i]
    if survival:
        return f"{row.patient_id} · risk {row.risk:+.2f} ({row.risk_percentile:.0f}th pct)"
    fold = f" · fold {row.fold}" if view.config.get("folds", 0) else ""
    return f"{row.patient_id}{fold} · {row.outcome} · p = {row.y_prob:.3f}"


index = st.selectbox("Patient", list(table.index), format_func=_describe, key="pt_row")
row = table.loc[index]
patient_id, fold = str(row.patient_id), int(row.fold)
try:
    case = _case(str(view.run_dir), patient_id, page.cohort_stamp(view))
except (ValueError, FileNotFoundError, OSError) as error:
    st.error(f"{patient_id}: the CT cannot be shown: {error}")
    st.stop()

# a new case, or back from another page (Streamlit dropped the slider keys): start at the GTV
if st.session_state.get("pt_shown") != (view.run_id, patient_id) or not all(
    k in st.session_state for k in ("pt_z", "pt_y", "pt_x")
):
    st.session_state.pt_shown = (view.run_id, patient_id)
    z, y, x = viewer.gtv_centroid_index(case.gtv)
    st.session_state.update(pt_z=z, pt_y=y, pt_x=x)

facts, images = st.columns([1, 3])
with facts:
    st.subheader(patient_id)
    if survival:
        st.metric("Risk score (log hazard)", f"{row.risk:+.3f}")
        st.caption(
            f"{row.risk_percentile:.0f}th percentile of the {split} split"
            + (" (pooled over the folds' models)" if view.config.get("folds", 0) else "")
        )
    else:
        st.metric("Probability (raw)", f"{row.y_prob:.3f}")
        st.metric(f"Recalibrated ({recalibration})", f"{row.y_prob_recalibrated:.3f}")
        rule = page.threshold_in_force(view, fold)
        st.metric(
            "Call",
            "deceased (1)" if row.call else "alive (0)",
            page.OUTCOME_NAMES[row.outcome],
            delta_color="off",
            delta_arrow="off",
        )
        st.caption(
            f"Threshold in force {rule['threshold']:.3f} on {rule['recalibration']} "
            f"probabilities: {rule['source']}. True label: {int(row.y_true)}."
        )
    if st.toggle("Uncertainty (test-time augmentation)", key="pt_tta"):
        with st.spinner("16 augmented predictions…"):
            spread = page.uncertainty(
                view, fold, patient_id, case, _model(str(view.run_dir), fold, _checkpoint(fold))
            )
        what = "risk" if survival else "probability"
        st.metric(
            f"TTA {what}, 95 % interval",
            f"{spread['low']:.3f} – {spread['high']:.3f}",
            help="Spread over 16 copies rotated in-plane (within ±10°) and flipped, the "
            "project's augmentation transforms.",
        )
    clinical = pd.Series(case.clinical, name="value")
    st.dataframe(
        clinical.map(lambda v: "missing" if pd.isna(v) else str(v)).to_frame(), width="stretch"
    )

with images:
    controls = st.columns(4)
    preset = controls[0].selectbox(
        "Window", [*viewer.WINDOW_PRESETS, "manual"], index=0, key="pt_window"
    )
    if preset == "manual":
        level = controls[1].number_input("Level (HU)", -1200, 3000, 40, key="pt_level")
        width = controls[2].number_input("Width (HU)", 1, 5000, 400, key="pt_width")
    else:
        level, width = viewer.WINDOW_PRESETS[preset]
    show_gtv = controls[3].checkbox("GTV contour", value=True, key="pt_gtv")
    overlay = st.columns(4)
    show_map = overlay[0].toggle("Grad-CAM overlay", key="pt_cam")
    network = view.config.get("model", "resnet18")
    method = overlay[1].selectbox(
        "Method",
        explain.methods_for(network),
        format_func=lambda m: {"gradcam": "Grad-CAM"}.get(m, m),
        key="pt_method",
    )
    layer = overlay[2].selectbox(
        "Layer",
        explain.gradcam_layers(network) or ("none",),
        key="pt_layer",
        disabled=method != "gradcam",
    )
    opacity = overlay[3].slider("Opacity", 0.0, 1.0, 0.45, 0.05, key="pt_opacity")

    heat_ct = heat_input = None
    if show_map:
        with st.spinner("Computing the attribution map…"):
            heat_input, heat_ct, flat = page.attribution_maps(
                view,
                fold,
                patient_id,
                case,
                explain.ExplainConfig(method=method, layer=layer),
                _model(str(view.run_dir), fold, _checkpoint(fold)),
            )
        if flat:
            st.caption("The map is flat: no voxel raised the explained output at this layer.")

    shape = case.hu.shape
    position = (st.session_state.pt_z, st.session_state.pt_y, st.session_state.pt_x)
    planes = st.columns(4)
    for axis, (column, name, key) in enumerate(
        zip(planes[:3], viewer.PLANES, ("pt_z", "pt_y", "pt_x"), strict=True)
    ):
        column.slider(f"{name.title()} slice", 0, shape[axis] - 1, key=key)
        column.image(
            viewer.view_plane(case, axis, position, (level, width), show_gtv, heat_ct, opacity),
            caption=f"{name} {position[axis]} of 0-{shape[axis] - 1}",
            width="stretch",
            output_format="PNG",
        )
    k = viewer.input_slice_for(case, position[0])
    planes[3].caption("What the network saw")
    if not viewer.input_covers(case, position[0]):
        planes[3].caption("This CT slice is outside the input; its nearest slice is shown.")
    planes[3].image(
        viewer.view_input(case, k, heat_input, opacity, show_gtv),
        caption=f"input axial {k} of 0-{case.input_image.shape[0] - 1} (preprocessing window)",
        width="stretch",
        output_format="PNG",
    )
st.caption(
    "Only the PatientID and the clinical table's fields are shown. Grad-CAM shows where the "
    "evidence for the call sits, not why; read it beside the GTV and the input the model saw."
)
