"""Runs: every run with its status, ranked by validation (test held out, never for choosing);
compare two side by side."""

import streamlit as st

from nsclc_engine.dashboard import experiments, review_queue
from nsclc_engine.dashboard import runs as page
from nsclc_engine.evaluate import figures
from nsclc_engine.evaluate.experiment import experiment_names, read_summary
from nsclc_engine.evaluate.multiplicity import comparisons_note
from nsclc_engine.review import store
from nsclc_engine.task_spec import TASKS
from ui.common import (
    artifacts,
    audit,
    authorize,
    load,
    require_page,
    review_db,
    role_help,
    selected_run,
    show_error,
    stamp,
)

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
        help=role_help(user, "launch_job"),
    ):
        actor = authorize("launch_job")
        launched = page.launch_demo_jobs(artifacts())
        audit(actor, "launch_job", launched[0], how="demo jobs", runs=launched)
        st.session_state.pending_run_id = launched[0]
        st.rerun()
    st.stop()


def _reviewed(frame) -> list:
    """Each finished run's review progress (verdicts / cases); blank where none applies."""
    finished = frame.run_id[frame.state == "finished"].tolist()
    try:
        current = store.current_verdicts(store.verdicts(review_db()))
    except ConnectionError as error:
        show_error("Review progress", error)
        return [None] * len(frame)
    cases = {}
    for run_id in finished:
        view = load(run_id)
        if view.predictions is not None:
            cases[run_id] = review_queue.review_cases(view)
    progress = review_queue.review_progress(current, cases)
    return [progress.get(run_id) for run_id in frame.run_id]


@st.fragment(run_every=3 if runs.state.isin(["queued", "running"]).any() else None)
def table() -> None:
    """The runs table; refreshes itself while a job is queued or running."""
    current = page.runs_overview(artifacts())
    shown = page.ranked_by_validation(current)
    shown.insert(shown.columns.get_loc("label") + 1, "reviewed", _reviewed(shown))
    summaries = {name: read_summary(artifacts(), name) for name in experiment_names(artifacts())}
    summaries = {name: summary for name, summary in summaries.items() if summary}
    if summaries:
        expanded = st.multiselect(
            "Experiments over seeds: one row each (mean ± SD over seeds); show the runs of",
            sorted(summaries),
            key="expand_experiments",
        )
        shown = experiments.experiment_rows(shown, summaries, expanded)
    scores = {page.VALIDATION_RANK: "{:.0f}", "parameters (M)": "{:.1f}", "threshold": "{:.3f}"}
    scores |= {name: "{:.3f}" for name in ("validation AUC", "validation C-index")}
    scores |= {page.TEST_AUC: "{:.3f}", page.TEST_C: "{:.3f}", "best achievable (image)": "{:.3f}"}
    scores |= {"share of achievable": "{:.0%}"}
    held_out = "held out: read it for the run you chose, do not choose by it"
    st.dataframe(
        page.blank_missing(shown, scores),
        hide_index=True,
        width="stretch",
        column_config={
            "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0),
            "reviewed": st.column_config.TextColumn(
                help="cases with a reviewer's verdict / cases the run scored outside training "
                "(review queues on the Patient page)"
            ),
            page.VALIDATION_RANK: st.column_config.TextColumn(
                help="1 = best validation AUC (C-index) among finished runs of the same task "
                "and label: choose runs by this, never by test"
            ),
            page.TEST_AUC: st.column_config.TextColumn(help=held_out),
            page.TEST_C: st.column_config.TextColumn(help=held_out),
            "best achievable (image)": st.column_config.TextColumn(
                help="synthetic cohort: the image part of the true risk on the same test "
                "patients, all an image-only model can reach",
            ),
            "share of achievable": st.column_config.TextColumn(
                help="(test value - 0.5) / (best achievable - 0.5)",
            ),
        },
    )
    st.caption(
        "Ranked by validation (optimistic: each run's best epoch was chosen on it, but it is "
        "the part meant for choosing). Test columns are held out: they describe a run already "
        "chosen and must not pick one."
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
            page.blank_missing(
                beside, {"AUC": "{:.3f}", "p (DeLong)": "{:.3f}", "p (Holm)": "{:.3f}"}
            ),
            hide_index=True,
        )
        st.caption(comparisons_note(beside.attrs["n_comparisons"], "DeLong tests"))
        st.caption(
            "Imported runs: the baselines are fitted out of fold (cross-validation) on exactly "
            "the imported patients; trained and frozen-feature runs: on the run's training "
            "split. 95% CIs by "
            "patient bootstrap; the difference and p by paired DeLong."
        )

finished = runs[(runs.state == "finished") & runs[page.TEST_AUC].notna()].run_id.tolist()
survival = runs[(runs.state == "finished") & runs[page.TEST_C].notna()].run_id.tolist()


@st.cache_data(show_spinner=False, max_entries=8)
def _pairwise(run_ids: tuple[str, ...], stamps: tuple):
    return page.pairwise_tests([load(run_id) for run_id in run_ids])


def pairwise(run_ids: list[str]):
    """Every pairwise test among ``run_ids`` (the family the Holm adjustment covers)."""
    return _pairwise(tuple(run_ids), tuple(stamp(load(r)) for r in run_ids))


def show_pairwise(tests, a: str, b: str) -> None:
    line = page.pair_line(tests, a, b)
    if line:
        st.markdown(line)
    with st.expander(f"All {len(tests)} pairwise tests among the finished runs"):
        st.dataframe(
            tests,
            hide_index=True,
            column_config={
                c: st.column_config.NumberColumn(format="%.3f")
                for c in ("difference (a - b)", "p", "p (Holm)")
            },
        )
        st.caption(comparisons_note(len(tests), "pairwise comparisons"))


st.subheader("Compare runs")
kind = "classification"
if survival:
    kind = st.radio("Kind", list(TASKS), horizontal=True, key="compare_kind")
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
            show_pairwise(pairwise(survival), *chosen)
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
        show_pairwise(pairwise(finished), *chosen)
    else:
        st.caption(comparison["note"])
elif finished:
    st.caption("Pick two finished runs to see their metrics, ROC curves and a paired test.")
