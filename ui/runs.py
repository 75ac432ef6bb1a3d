"""Runs: every training run with its status and test AUC; compare two side by side."""

import streamlit as st

from nsclc_engine.dashboard import runs as page
from nsclc_engine.evaluate import figures
from ui.common import artifacts, audit, authorize, load, require_page, selected_run

st.title("Runs")
user = require_page("runs")
runs = page.runs_overview(artifacts())
if runs.empty:
    st.info(
        "No runs yet. The demo jobs build the synthetic demo cohort (434 patients, 422 of "
        "them usable, about 2 minutes on 2 CPU cores), then train a classification model "
        "(2-year survival, about 4 minutes) and a survival model on it in the background; "
        "other settings are on the Train page (headless: `python -m nsclc_engine.train`)."
    )
    if st.button(
        "Build the demo and train the demo models",
        type="primary",
        key="demo_job",
        disabled=not user.may_do("launch_job"),
    ):
        actor = authorize("launch_job")
        launched = page.launch_demo_jobs(artifacts())
        audit(actor, "launch_job", launched[0], how="demo jobs", runs=launched)
        st.session_state.pending_run_id = launched[0]
        st.rerun()
    st.stop()


@st.fragment(run_every=3 if runs.state.isin(["queued", "running"]).any() else None)
def table() -> None:
    """The runs table; refreshes itself while a job is queued or running."""
    current = page.runs_overview(artifacts())
    st.dataframe(
        current,
        hide_index=True,
        width="stretch",
        column_config={
            "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0),
            "test AUC": st.column_config.NumberColumn("test AUC", format="%.3f"),
            "test C-index": st.column_config.NumberColumn("test C-index", format="%.3f"),
            "best achievable (image)": st.column_config.NumberColumn(
                "best achievable (image)",
                format="%.3f",
                help="synthetic cohort: the image part of the true risk on the same test "
                "patients, all an image-only model can reach",
            ),
            "share of achievable": st.column_config.NumberColumn(
                "share of achievable",
                format="percent",
                help="(test value - 0.5) / (best achievable - 0.5)",
            ),
        },
    )
    if set(current[current.state == "finished"].run_id) != set(
        runs[runs.state == "finished"].run_id
    ):
        st.rerun()  # a run finished: the whole page (comparison, sidebar) picks it up


table()

selected = selected_run()
if selected is not None and selected.finished:
    beside = page.baseline_table(selected)
    if not beside.empty:
        st.subheader(f"{selected.run_id} beside baselines on the same {selected.held_out} patients")
        st.dataframe(
            beside,
            hide_index=True,
            column_config={
                "AUC": st.column_config.NumberColumn(format="%.3f"),
                "p (DeLong)": st.column_config.NumberColumn(format="%.3f"),
            },
        )
        st.caption(
            "Imported runs: the baselines are fitted out of fold (cross-validation) on exactly "
            "the imported patients; trained and frozen-feature runs: on the run's training "
            "split. 95% CIs by "
            "patient bootstrap; the difference and p by paired DeLong."
        )

finished = runs[(runs.state == "finished") & runs["test AUC"].notna()].run_id.tolist()
survival = runs[(runs.state == "finished") & runs["test C-index"].notna()].run_id.tolist()
st.subheader("Compare runs")
kind = "classification"
if survival:
    kind = st.radio("Kind", ["classification", "survival"], horizontal=True, key="compare_kind")
if kind == "survival":
    chosen = st.multiselect(
        "Finished survival runs to compare (two)", survival, max_selections=2, key="compare_sv"
    )
    if len(chosen) == 2:
        comparison = page.compare_survival_runs(load(chosen[0]), load(chosen[1]))
        st.dataframe(comparison["table"], hide_index=True)
        if comparison["difference"]:
            d = comparison["difference"]
            st.markdown(
                f"Paired bootstrap on {d['n']} shared test patients: C-index difference "
                f"{d['difference']:+.3f} (95% CI {d['ci_low']:+.3f} to {d['ci_high']:+.3f}), "
                f"p = {d['p_value']:.3f}."
            )
        else:
            st.caption(comparison["note"])
    else:
        st.caption("Pick two finished survival runs to see their C-indices and a paired test.")
    st.stop()
chosen = st.multiselect("Finished runs to compare (two)", finished, max_selections=2, key="compare")
if len(chosen) == 2:
    a, b = load(chosen[0]), load(chosen[1])
    comparison = page.compare_runs(a, b)
    st.dataframe(comparison["table"], hide_index=True)
    st.plotly_chart(figures.roc_figure(page.compare_roc(a, b)), key="compare_roc")
    if comparison["delong"]:
        d = comparison["delong"]
        st.markdown(
            f"Paired DeLong test on {d['n_shared']} shared held-out patients: AUC difference "
            f"{d['difference']:+.3f} (95% CI {d['ci_low']:+.3f} to {d['ci_high']:+.3f}), "
            f"p = {d['p_value']:.3f}."
        )
    else:
        st.caption(comparison["note"])
elif finished:
    st.caption("Pick two finished runs to see their metrics, ROC curves and a paired test.")
