"""Studies: hyperparameter searches (Optuna) over the training config, their trials and best,
started and stopped from here."""

import streamlit as st

from nsclc_engine.dashboard import studies as page
from nsclc_engine.paths import shown_url
from nsclc_engine.task_spec import TASKS, metric_of
from nsclc_engine.tune.confirm import report_lines
from nsclc_engine.tune.jobs import launch_study, stop_study
from nsclc_engine.tune.study import PRUNERS, STUDY_PRESETS, TuneConfig
from ui.common import artifacts, audit, authorize, require_page, role_help

st.title("Studies")
user = require_page("studies")
url = page.storage(artifacts())
try:
    names = page.study_names(url)
except ConnectionError as error:
    st.error(str(error))
    st.stop()
st.caption(
    f"Storage: `{shown_url(url)}`. "
    "Each trial is an ordinary run tagged with its study; its objective is its validation "
    "AUC (C-index for survival), and only the study's best trial is scored on test, once."
)

with st.expander("Start a study", expanded=not names):
    with st.form("start_study"):
        left, middle, right = st.columns(3)
        name = left.text_input("Study name", "tune")
        trials = middle.number_input("Trials (this worker)", 1, 500, 10)
        preset = right.selectbox("Preset", list(STUDY_PRESETS), index=0)
        pruner = left.selectbox("Pruner", list(PRUNERS))
        task = middle.selectbox("Task", list(TASKS))
        seed = right.number_input("Seed", 0, 10**6, 0)
        start = st.form_submit_button("Start", type="primary", help=role_help(user, "start_study"))
    if start:
        actor = authorize("start_study")
        try:
            config = TuneConfig(
                trials=int(trials),
                study=name.strip(),
                preset=preset,
                pruner=pruner,
                task=task,
                seed=int(seed),
                storage=page.shared_storage(),
            )
            pid = launch_study(config, artifacts())
        except ValueError as error:
            st.error(str(error))
        else:
            audit(actor, "start_study", config.study, trials=config.trials, preset=preset)
            st.success(
                f"Study {config.study} started (worker process {pid}); its trials appear below."
            )


@st.fragment(run_every=5)
def study_view() -> None:
    """The chosen study, refreshed every few seconds while its trials run (and a study just
    started appears when its worker has created it)."""
    names = page.study_names(url)
    if not names:
        st.info(
            "No study yet. Start one above, or run `python -m nsclc_engine.tune --preset tiny`."
        )
        return
    chosen = st.selectbox("Study", names, key="study")
    study = page.load(url, chosen)
    summary = page.summary(study, url)
    counts = ", ".join(f"{n} {state}" for state, n in summary["counts"].items()) or "no trials yet"
    st.write(f"**{chosen}**: {counts}.")
    for line in summary["lost"]:
        st.warning(line, icon=":material/heart_broken:")
    if summary["best"]:
        best = summary["best"]
        test = summary["test"]
        line = (
            f"Best: trial {best['trial']} (run `{best['run_id']}`), "
            f"validation {best['validation']:.3f}"
        )
        if test and test.get("run_id") != best["run_id"]:
            line += (
                f"; the test part was scored once, for run `{test['run_id']}` (the best then), and "
                "is not looked at again"
            )
        elif test and test.get("error"):
            line += f"; scoring its test part failed: {test['error']}"
        elif test:
            key = metric_of(test).metric_key
            value = test[key]
            line += (
                f"; its test part, scored once: {value[key]:.3f} "
                f"(95% CI {value['ci_low']:.3f}-{value['ci_high']:.3f})"
            )
        st.write(line + ".")
        st.caption(
            f"The best of {summary['completed']} trials by validation score: picking the maximum "
            "of many noisy estimates inflates it. The test score, measured once, is the one to "
            "report."
        )
    if st.button(
        "Stop this study",
        disabled=summary["stop_requested"],
        help=role_help(user, "stop_study"),
    ):
        actor = authorize("stop_study")
        cancelled = stop_study(TuneConfig(study=chosen, storage=url), artifacts())
        audit(actor, "stop_study", chosen, cancelled=cancelled)
        st.success(
            "No worker starts a new trial"
            + (f"; cancelled {', '.join(cancelled)}." if cancelled else ".")
        )

    confirmed = page.confirmation_report(artifacts(), chosen)
    if confirmed:
        st.markdown("  \n".join(report_lines(confirmed)))
    elif summary["best"]:
        left, right = st.columns([1, 3], vertical_alignment="bottom")
        n_seeds = left.number_input("New seeds", 2, 20, 5, key="confirm_seeds")
        if right.button(
            f"Confirm the best over {n_seeds} new seeds",
            key="confirm_best",
            help=role_help(user, "start_study")
            or "Its settings again over new seeds, an experiment: the mean validation score "
            "beside the search's optimistic one; test scored once, after every seed.",
        ):
            actor = authorize("start_study")
            config = page.confirmation_config(
                chosen, url, summary["settings"], artifacts(), int(n_seeds)
            )
            pid = launch_study(config, artifacts())
            audit(actor, "start_study", chosen, confirm_seeds=int(n_seeds), pid=pid)
            st.success(
                f"Confirming in the background (process {pid}); the runs appear on the Runs "
                "page as an experiment."
            )

    table = page.trials(study)
    st.dataframe(page.trials_shown(table), hide_index=True, width="stretch")
    local = page.local_runs(table, artifacts())
    if local:
        pick, go = st.columns([3, 1], vertical_alignment="bottom")
        run_id = pick.selectbox("A trial's run", local, key="study_run")
        if go.button("Open its run", key="open_run"):
            st.session_state.pending_run_id = run_id  # the sidebar picks it up on the next run
            st.switch_page("ui/runs.py")
    for title, figure in page.figures(study).items():
        st.subheader(title.capitalize())
        st.plotly_chart(figure, width="stretch")


study_view()
