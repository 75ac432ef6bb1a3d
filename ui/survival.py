"""Survival: does the CT add anything over clinical data? Image, clinical, volume and fusion
Cox models on the same patients; Kaplan-Meier curves by risk group, the cut explored on
validation and test shown only at the cut frozen before test was read."""

import streamlit as st

from nsclc_engine.dashboard import experiments, run_view
from nsclc_engine.dashboard import patient as patient_view
from nsclc_engine.dashboard import survival as page
from nsclc_engine.evaluate import figures
from ui.common import artifacts, offer_runs, require_finished_run, require_page, stamp

st.title("Survival")
user = require_page("survival")
view = require_finished_run(allow_survival=True)
if view.config.get("task") != "survival":
    offer_runs(
        f"Run `{view.run_id}` is a classification run: it predicts no survival time. Train one "
        "with task = survival (Train page, or `python -m nsclc_engine.train --task survival`).",
        "survival",
        patient_view.why_not_survival,
    )
if view.kind == "external validation":
    block = view.metrics["splits"]["external"]
    c = block["c_index"]
    st.metric(
        f"External C-index of run {view.config.get('source_run')}, applied unchanged",
        f"{c['c_index']:.3f}",
    )
    st.caption(
        f"95% CI {c['ci_low']:.3f}-{c['ci_high']:.3f} (patient bootstrap); {block['n']} patients, "
        f"{block['n_events']} deaths. Survival probabilities at the horizons, their calibration "
        "and the frozen threshold are on the Calibration and Threshold pages; the clinical, "
        "volume and fusion models need the development cohort's splits: they are on the source "
        "run's page."
    )
    for warning in view.metrics.get("warnings", []):
        st.warning(warning)
    st.stop()


@st.cache_data(show_spinner=False, max_entries=8)
def _models(run_id: str, key: tuple):
    return page.survival_models(view)


@st.cache_data(show_spinner=False, max_entries=256)
def _cut_views(run_id: str, key: tuple, model: str, quantile: float) -> dict:
    return page.risk_cut_views(_models(run_id, key), model, quantile)


key = stamp(view)
models = _models(view.run_id, key)
st.subheader("Concordance on the same split")
table = page.c_index_table(view)
if table.empty or models is None:
    st.warning(
        "This run has no baseline or fusion models (no cohort table was found at evaluation); "
        "only the image model's C-index is in its report."
    )
    st.stop()
st.dataframe(
    experiments.with_seed_spread(table, experiments.summary_of(artifacts(), view)),
    hide_index=True,
    width="stretch",
    column_config={"C-index": st.column_config.NumberColumn(format="%.3f")},
)
verdict = run_view.test_verdict(view.metrics)
if verdict:
    st.caption(
        "Image model. "
        + run_view.verdict_text(verdict)
        + " No model can beat the full true risk on these patients except by chance."
    )
for line in page.comparison_lines(view.metrics):
    st.markdown(line)

st.subheader("Kaplan-Meier by risk group")
left, right = st.columns(2)
model = left.selectbox("Model", list(view.metrics["models"]["c_index"]), key="sv_model")
quantile = right.slider(
    "Risk cut to explore: quantile of the validation risks",
    0.1,
    0.9,
    0.5,
    0.05,
    key="sv_cut",
    help="Moves the cut on validation patients only; the test figure below keeps the frozen cut.",
)
cuts = _cut_views(view.run_id, key, model, round(float(quantile), 2))


def show_groups(state: dict, name: str) -> None:
    columns = st.columns(3)
    logrank = state["logrank"]
    columns[0].metric(f"Log-rank p ({name})", f"{logrank['p_value']:.3g}" if logrank else "—")
    columns[1].metric("High risk", state["n_high"])
    columns[2].metric("Low risk", state["n_low"])
    st.plotly_chart(
        figures.kaplan_meier_figure(state["groups"], logrank), key=f"sv_km_{name}", width="stretch"
    )


st.markdown("**Choosing the cut: validation patients**")
show_groups(cuts["choosing"], "validation")
st.caption(
    "The cut is fitted on these same patients, so this p-value is optimistic: it is for "
    "choosing, not for reporting."
    + (" k-fold run: the first fold's validation patients." if cuts["k_fold"] else "")
    + " Cut-off on the risk score: "
    + ", ".join(f"{c:+.3f}" for c in cuts["choosing"]["cuts"])
)
st.markdown(
    f"**Test patients, at the frozen cut** (quantile {cuts['frozen_quantile']:.2f} of the "
    "validation risks, fixed before test was read; the slider does not move it)"
)
show_groups(cuts["frozen"], "test, frozen cut")
st.caption(
    "Cut-off(s) on the risk score: "
    + ", ".join(f"{c:+.3f}" for c in cuts["frozen"]["cuts"])
    + (" (one per fold, each from its own validation patients)" if cuts["k_fold"] else "")
)

st.subheader("Time-dependent discrimination and calibration (test)")
st.dataframe(page.time_dependent_table(view), hide_index=True, width="stretch")
weights = view.metrics["models"].get("fusion_coefficients", [])
if weights:
    st.caption(
        "Fusion: a Cox model on the standardised image, clinical and volume risk scores, fitted "
        "on validation patients (on training patients the image score is in-sample). Weights: "
        + page.fusion_weights_text(weights)
    )
