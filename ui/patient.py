"""Per-patient case review: the original CT in three planes with the GTV and what the model
looked at (Grad-CAM), the network input beside it, and the prediction with its uncertainty;
for survival runs the patient's predicted survival curve beside their split's. Runs without a
model or CT here (imported, external, frozen features) show the prediction and offer the
trained runs that scored the patient."""

import pandas as pd
import streamlit as st

from nsclc_engine.dashboard import experiments
from nsclc_engine.dashboard import patient as page
from nsclc_engine.dashboard.survival_probabilities import survival_options
from nsclc_engine.evaluate.survival import BASELINE_KINDS
from nsclc_engine.explain import gradcam as explain
from nsclc_engine.explain import viewer
from nsclc_engine.explain.cache import checkpoint_stamp
from nsclc_engine.explain.inference import load_run_model
from ui import case_viewer, review_queue
from ui.common import (
    artifacts,
    copy_link,
    from_link,
    load,
    offer_runs,
    require_finished_run,
    require_page,
    show_error,
    stamp,
    to_link,
)
from ui.notes import review_notes

st.title("Patient")
user = require_page("patient")
view = require_finished_run(allow_survival=True)
survival = view.config.get("task") == "survival"


@st.cache_data(show_spinner=False, max_entries=32)
def _table(run_id, key, split, recalibration, true_label, predicted, errors_first):
    return page.patient_table(view, split, recalibration, true_label, predicted, errors_first)


@st.cache_data(show_spinner=False, max_entries=64)
def _survival(run_id: str, key: tuple, split: str, patient_id: str, fold: int, kind: str) -> dict:
    return page.patient_survival(load(run_id), split, patient_id, fold, kind)


@st.cache_resource(show_spinner="Reading the CT and its GTV…", max_entries=4)
def _case(run_id: str, patient_id: str, cohort_stamp: int) -> viewer.PatientCase:
    return page.patient_case(load(run_id), patient_id)


@st.cache_resource(show_spinner=False, max_entries=4)
def _model(run_dir: str, fold: int, checkpoint: str):
    return load_run_model(run_dir, fold)


def _checkpoint(fold: int) -> str:
    return checkpoint_stamp(view.run_dir, fold)


@st.cache_data(show_spinner=False, max_entries=16, ttl=30)  # runs that finish meanwhile appear
def _comparable(run_id: str, key: tuple, patient_id: str) -> list[dict]:
    return page.comparable_runs(artifacts(), view, patient_id)


def _map_name(config: explain.ExplainConfig) -> str:
    return f"Grad-CAM {config.layer}" if config.method == "gradcam" else config.method


@st.cache_data(show_spinner="Preparing the case viewer…", max_entries=8)
def _payload(key: tuple, _case: viewer.PatientCase, _maps: tuple) -> dict:
    """``key``: the run, patient, cohort build and each map's run, checkpoint and method:
    what makes the payload (the case and maps themselves are not hashed)."""
    return viewer.case_payload(_case, dict(_maps))


review_queue.follow()
choices = st.columns(5)
splits = page.patient_splits(view)
from_link("split", "pt_split", splits)
from_link("patient", "pt_open", set(view.predictions.patient_id.astype(str)))
if st.session_state.get("pt_open"):  # a patient linked or chosen elsewhere: no filter hides it
    st.session_state.update(pt_true=None, pt_pred=None)
if st.session_state.get("pt_split") not in splits:  # a choice left from another run
    st.session_state.pop("pt_split", None)
opening = st.session_state.get("pt_open")  # a patient chosen on another page or run
if opening and page.split_of(view, opening, st.session_state.get("pt_split")):
    st.session_state.pt_split = page.split_of(view, opening, st.session_state.get("pt_split"))
split = choices[0].selectbox("Split", splits, key="pt_split")
labels = {None: "any", 0: "0", 1: "1"}
if survival:
    true_label = predicted = None
    recalibration, errors_first = "none", False
    kinds = survival_options(view)["kinds"]
    if st.session_state.get("pt_kind") not in kinds:
        st.session_state.pop("pt_kind", None)
    kind = choices[1].radio(
        "Baseline (fitted on validation)",
        kinds,
        key="pt_kind",
        help=" · ".join(f"{k}: {BASELINE_KINDS[k]}" for k in kinds),
    )
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


opened = st.session_state.pop("pt_open", None)  # a patient chosen on the Threshold page
if opened in set(table.patient_id):
    st.session_state.pt_row = int(table.index[table.patient_id == opened][0])
if st.session_state.get("pt_row") not in table.index:
    st.session_state.pop("pt_row", None)
index = st.selectbox("Patient", list(table.index), format_func=_describe, key="pt_row")
row = table.loc[index]
patient_id, fold = str(row.patient_id), int(row.fold)
to_link(patient=patient_id, split=split)
with st.popover("Link to this case", icon=":material/link:"):
    copy_link("patient")
review_queue.panel(view, patient_id, user)
seeds = experiments.finished_runs(experiments.summary_of(artifacts(), view))
if len(seeds) > 1:
    by_seed = experiments.patient_by_seed([load(run_id) for run_id in seeds], patient_id)
    what = "survival at 2 years" if survival else "predicted probability"
    with st.expander(f"{patient_id} by each of the experiment's {len(by_seed)} seeds"):
        st.plotly_chart(experiments.seed_strip_figure(by_seed, what), key="pt_seed_strip")
        st.caption(
            "One dot per seed of the same configuration (red: called positive at that run's "
            "threshold in force; blue: negative). Dots on both sides mean the call depends on "
            "the seed. Each seed draws its own split: the patient's part in it is in brackets "
            "(a train dot is an in-sample prediction)."
        )

if survival:
    outlook = _survival(view.run_id, stamp(view), split, patient_id, fold, kind)
    facts = st.columns([3, 2])
    facts[0].plotly_chart(page.survival_curve_figure(outlook), key="pt_survival_curve")
    with facts[1]:
        st.subheader(patient_id)
        for entry in outlook["horizons"]:
            st.markdown(page.survival_text(entry, split))
        pooled = " (pooled over the folds' models)" if view.config.get("folds", 0) else ""
        if outlook["horizons"]:
            basis = (
                f"Predicted with fold {fold}'s {kind} baseline, fitted on validation"
                if outlook["curve"] is not None
                else "From the run's survival columns"
            )
            st.caption(
                f"{basis}. Percentile: the share of the {split} split's patients predicted to "
                f"survive no better{pooled}. The grey curve is what happened to the "
                f"{outlook['n']} patients of the split ({outlook['n_deaths']} deaths)."
            )
        if outlook.get("curve_note"):
            st.caption(outlook["curve_note"])
        with st.expander("Details: the model's risk score"):
            st.metric("Risk score (log hazard)", f"{row.risk:+.3f}")
            st.caption(
                f"{row.risk_percentile:.0f}th percentile of the {split} split{pooled}; higher "
                "means earlier death. The survival curve is exp(-H0(t) exp(slope × risk)), H0 "
                "the baseline's cumulative hazard (slope 1 for the raw baseline)."
            )
else:
    facts = st.columns([2, 2, 2, 3])
    facts[0].subheader(patient_id)
    facts[1].metric(
        "Probability",
        f"{row.y_prob:.3f}",
        help=f"raw; recalibrated ({recalibration}): {row.y_prob_recalibrated:.3f}",
    )
    rule = page.threshold_in_force(view, fold)
    facts[2].metric(
        "Call",
        "deceased (1)" if row.call else "alive (0)",
        page.OUTCOME_NAMES[row.outcome],
        delta_color="off",
        delta_arrow="off",
    )
    facts[3].caption(
        f"Recalibrated ({recalibration}) {row.y_prob_recalibrated:.3f}. Threshold in force "
        f"{rule['threshold']:.3f} on {rule['recalibration']} probabilities: {rule['source']}. "
        f"True label: {int(row.y_true)}."
    )

if page.why_no_case(view):
    offer_runs(
        page.why_no_case(view),
        f"case of {patient_id}",
        page.case_of(patient_id),
        then={"pt_open": patient_id},
    )
try:
    case = _case(view.run_id, patient_id, page.cohort_stamp(view))
except (ValueError, FileNotFoundError, OSError) as error:
    show_error(f"{patient_id}: the CT cannot be shown", error)
    st.stop()

overlay = st.columns([1, 1, 1, 2])
show_map = overlay[0].toggle("Grad-CAM overlay", key="pt_cam")
method = overlay[1].selectbox(
    "Method",
    page.method_choices(view),
    format_func=lambda m: {"gradcam": "Grad-CAM"}.get(m, m),
    key="pt_method",
)
layer = overlay[2].selectbox(
    "Layer",
    page.layer_choices(view),
    key="pt_layer",
    disabled=method != "gradcam",
)
others = _comparable(view.run_id, stamp(view), patient_id) if show_map else []
compare = overlay[3].selectbox(
    "Beside it, the map of run",
    [None, *range(len(others))],
    format_func=lambda i: (
        "none"
        if i is None
        else f"{others[i]['run_id']} (fold {others[i]['fold']}, {others[i]['split']})"
    ),
    key="pt_compare",
    disabled=not show_map,
    help="Another finished run on the same data that scored this patient; its own network "
    "and preprocessing, the same CT.",
)

maps, heat_input, made_of = {}, None, []
if show_map:
    config = explain.ExplainConfig(method=method, layer=layer)
    checkpoint = _checkpoint(fold)
    with st.spinner("Computing the attribution map…"):
        heat_input, heat_ct, flat = page.attribution_maps(
            view, fold, patient_id, case, config, _model(str(view.run_dir), fold, checkpoint)
        )
    maps[f"{view.run_id} · {_map_name(config)}"] = heat_ct
    made_of.append((view.run_id, fold, checkpoint, method, layer))
    if flat:
        st.caption("The map is flat: no voxel raised the explained output at this layer.")
    if compare is not None:
        chosen = others[compare]
        other = load(chosen["run_id"])
        other_config = page.comparison_config(other, method, layer)
        try:
            stamp_of_other = checkpoint_stamp(other.run_dir, chosen["fold"])
            other_case = _case(other.run_id, patient_id, page.cohort_stamp(other))
            _, other_ct, _ = page.attribution_maps(
                other,
                chosen["fold"],
                patient_id,
                other_case,
                other_config,
                _model(str(other.run_dir), chosen["fold"], stamp_of_other),
            )
        except (ValueError, FileNotFoundError, OSError) as error:
            show_error(f"run {chosen['run_id']}: its map of {patient_id} cannot be shown", error)
        else:
            if other_ct.ct_shape != heat_ct.ct_shape:
                st.warning(f"Run {chosen['run_id']} read another CT grid for {patient_id}.")
            else:
                maps[f"{chosen['run_id']} · {_map_name(other_config)}"] = other_ct
                made_of.append(
                    (
                        other.run_id,
                        page.cohort_stamp(other),
                        chosen["fold"],
                        stamp_of_other,
                        other_config.method,
                        other_config.layer,
                    )
                )

key = (view.run_id, patient_id, page.cohort_stamp(view), tuple(made_of))
case_viewer.show(_payload(key, case, tuple(maps.items())))

details = st.columns([2, 2, 3])
with details[0]:
    st.markdown("**Clinical**")
    clinical = pd.Series(case.clinical, name="value")
    st.dataframe(
        clinical.map(lambda v: "missing" if pd.isna(v) else str(v)).to_frame(), width="stretch"
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
with details[1]:
    st.markdown("**What the network saw**")
    depth = case.input_image.shape[0]
    z = viewer.gtv_centroid_index(case.input_mask)[0]
    k = st.slider("Input slice", 0, depth - 1, z, key=f"pt_input_{patient_id}")
    st.image(
        viewer.view_input(case, k, heat_input, 0.45, True),
        caption=f"input axial {k} of 0-{depth - 1} (preprocessing window)",
        width="stretch",
        output_format="PNG",
    )
with details[2]:
    review_notes(view, patient_id, user)
st.caption(
    "Only the PatientID and the clinical table's fields are shown. Grad-CAM shows where the "
    "evidence for the call sits, not why; read it beside the GTV and the input the model saw."
)
