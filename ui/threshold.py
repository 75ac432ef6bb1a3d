"""Threshold explorer: move the operating threshold and see what it does, live."""

import streamlit as st

from nsclc_engine.access import User
from nsclc_engine.dashboard import experiments, run_view
from nsclc_engine.dashboard import review_queue as queues
from nsclc_engine.dashboard import threshold as page
from nsclc_engine.dashboard.survival_probabilities import survival_options
from nsclc_engine.evaluate import figures
from nsclc_engine.evaluate.experiment import spread_text
from nsclc_engine.evaluate.survival import BASELINE_KINDS
from nsclc_engine.stats.calibration import RECALIBRATION_METHODS
from ui import review_queue, threshold_explorer
from ui.common import (
    artifacts,
    audit,
    authorize,
    copy_link,
    explorer_table,
    from_link,
    load,
    offer_runs,
    part_predictions,
    require_finished_run,
    require_page,
    rule_thresholds,
    show_error,
    stamp,
    to_link,
)

st.title("Threshold")
user = require_page("threshold")
view = require_finished_run(allow_survival=True)
key = stamp(view)


@st.cache_data(show_spinner=False, max_entries=8)
def _survival_options(run_id: str, stamp: tuple) -> dict:
    return survival_options(load(run_id))


@st.cache_data(show_spinner=False, max_entries=512)
def _survival_state(
    run_id: str, stamp: tuple, split: str, horizon: float, kind: str, threshold: float
) -> dict:
    return page.survival_threshold_state(load(run_id), split, horizon, threshold, kind)


def _survival_jump(value: float, rule: str) -> None:
    st.session_state.thr_s_threshold = round(float(value), 3)
    st.session_state.thr_s_rule = rule


def _survival_moved() -> None:
    st.session_state.thr_s_rule = "manual"


def survival_page(view: run_view.RunView, user: User) -> None:
    """A survival run: a threshold on P(death by a horizon); layout only."""
    key = stamp(view)
    why = page.why_no_threshold(view)
    if why:
        offer_runs(why, "threshold", page.why_no_threshold)
    choices = _survival_options(view.run_id, key)
    saved_point = view.threshold.operating_point
    if st.session_state.get("thr_s_run") != view.run_id:  # another run: its own defaults
        for name in ("thr_s_horizon", "thr_s_kind", "thr_s_split", "thr_s_threshold"):
            st.session_state.pop(name, None)
        st.session_state.thr_s_run = view.run_id
        st.session_state.thr_s_rule = "saved" if saved_point.get("horizon_days") else "manual"
        if saved_point.get("horizon_days") in choices["horizons"]:
            st.session_state.thr_s_horizon = saved_point["horizon_days"]
        elif saved_point.get("horizon_days") and choices["any_horizon"]:
            st.session_state.thr_s_horizon = "other"
            st.session_state.thr_s_other_days = float(saved_point["horizon_days"])
        if saved_point.get("baseline") in choices["kinds"]:
            st.session_state.thr_s_kind = saved_point["baseline"]
    options = [*choices["horizons"], *(["other"] if choices["any_horizon"] else [])]
    if st.session_state.get("thr_s_horizon") not in options:
        st.session_state.thr_s_horizon = choices["default"] or "other"
    if st.session_state.get("thr_s_split") not in choices["parts"]:
        st.session_state.pop("thr_s_split", None)

    st.caption(
        "Survival run: a threshold on each patient's predicted probability of death by a "
        "horizon (1 - S(horizon) from the Cox risk and a baseline hazard fitted on validation). "
        "Patients at or above it are called 'predicted death'."
    )
    first, second, third = st.columns(3)
    chosen = first.radio(
        "Horizon",
        options,
        format_func=lambda h: "other" if h == "other" else f"{h:g} days",
        horizontal=True,
        key="thr_s_horizon",
    )
    horizon = float(chosen) if chosen != "other" else None
    if horizon is None:
        if "thr_s_other_days" not in st.session_state:
            st.session_state.thr_s_other_days = 1095.0  # three years
        horizon = float(
            first.number_input(
                "Horizon (days)",
                min_value=1.0,
                step=30.0,
                format="%.0f",
                key="thr_s_other_days",
                help="Any horizon: P(death) from the run's saved baseline, fitted on validation.",
            )
        )
    kind = second.radio(
        "Baseline",
        choices["kinds"],
        horizontal=True,
        key="thr_s_kind",
        help="; ".join(f"{k}: {BASELINE_KINDS[k]}" for k in choices["kinds"]),
    )
    from_link("split", "thr_s_split", choices["parts"])
    split = third.radio("Predictions", choices["parts"], horizontal=True, key="thr_s_split")
    if view.metrics.augmentation_warning:
        st.error(view.metrics.augmentation_warning)
    source = view.metrics.threshold_source
    if source:
        st.info(f"{view.kind.capitalize()} run: {source['text']}.")
    if split != "validation":
        st.warning(
            f"Choose the threshold on **validation** predictions. {split.capitalize()} "
            "predictions are for reading off what a threshold already chosen does."
        )

    if "thr_s_threshold" not in st.session_state:
        start = saved_point.get("threshold") if saved_point.get("horizon_days") else None
        if start is None:
            try:
                start = _survival_state(view.run_id, key, split, horizon, kind, 0.5)["fitted"][
                    "threshold"
                ]
            except ValueError:
                start = None
        st.session_state.thr_s_threshold = round(float(start), 3) if start is not None else 0.5
    from_link("threshold", "thr_s_threshold", parse=page.parse_threshold)
    threshold = st.slider(
        f"Threshold on P(death by day {horizon:g})",
        0.0,
        1.0,
        step=0.001,
        format="%.3f",
        key="thr_s_threshold",
        on_change=_survival_moved,
    )
    to_link(threshold=float(threshold), split=split)
    try:
        state = _survival_state(view.run_id, key, split, horizon, kind, float(threshold))
    except ValueError as error:
        show_error("No probability of death at this horizon", error)
        return
    fitted = state["fitted"]
    if fitted["threshold"] is not None:
        st.button(
            f"Fitted threshold: {fitted['threshold']:.3f}",
            on_click=_survival_jump,
            args=(fitted["threshold"], fitted["rule"]),
            key="thr_s_fitted",
        )
        st.caption(f"{fitted['text'].capitalize()}.")
        if len(fitted["thresholds"]) > 1:
            st.caption(
                "k-fold run: one threshold over the pooled rows here; the folds' own: "
                + ", ".join(f"fold {f}: {v:.3f}" for f, v in fitted["thresholds"].items())
            )
    else:
        st.caption(f"No threshold fitted on validation here: {fitted['text']}.")
    if saved_point.get("horizon_days"):
        st.caption(
            f"Saved operating point: {saved_point['threshold']:.3f} on "
            f"{saved_point.get('scale', 'P(death)')} ({saved_point.get('baseline', 'raw')} "
            f"baseline, {saved_point.get('rule', 'manual')}, chosen on "
            f"{saved_point.get('split_used', 'validation')} by "
            f"{saved_point.get('saved_by') or 'unknown'}, {saved_point.get('written', '')})."
        )
    follow_up = state["follow_up_days"]
    if follow_up is not None and horizon > follow_up:
        st.warning(
            f"Day {horizon:g} is beyond the last death the baseline knows (day {follow_up:g}): "
            "S(t) is carried flat there, so P(death) stops growing."
        )

    m = state["metrics"]
    columns = st.columns(3)
    for column, (name, label) in zip(
        columns[:2], [("sensitivity", "Sensitivity"), ("specificity", "Specificity")], strict=True
    ):
        defined = m[name] == m[name]  # NaN: no case (or no control) at this horizon
        low, high = m[f"{name}_ci"]
        column.metric(f"{label} at day {horizon:g}", f"{m[name]:.3f}" if defined else "n/a")
        column.caption(f"95% CI {low:.3f}-{high:.3f}" if defined else "undefined here")
    if "auc" in state:
        columns[2].metric(f"Time-dependent AUC at day {horizon:g}", f"{state['auc']:.3f}")
    else:
        columns[2].metric(f"Time-dependent AUC at day {horizon:g}", "n/a")
        columns[2].caption(state["roc_note"])
    st.caption(
        f"Cumulative/dynamic: sensitivity is the share of patients who died by day {horizon:g} "
        "called 'predicted death', each weighted by the inverse probability of remaining "
        f"uncensored (IPCW; censoring from {state['censoring_from']}); specificity is the "
        f"share of patients alive after day {horizon:g} called 'predicted survival'. 95% CIs: "
        f"patient bootstrap. P(death) from the {state['p_source']}."
    )

    st.subheader("Confusion matrix")
    counts = state["counts"]
    st.table(state["confusion"])
    st.caption(
        f"{counts['censored_pos'] + counts['censored_neg']} patients were censored before day "
        f"{horizon:g}: whether they died by then is unknown, so they are neither positive nor "
        f"negative (not counted as true or false negatives); n = {len(state['patients'])}."
    )
    with st.expander("Patients"):
        st.dataframe(
            state["patients"],
            hide_index=True,
            width="stretch",
            column_config={"p": st.column_config.NumberColumn("P(death)", format="%.3f")},
            key="thr_s_patients",
        )

    roc, histogram = st.columns(2)
    if "roc" in state:
        curve = {"name": f"{split}, day {horizon:g}", **state["roc"], "auc": state["auc"]}
        roc.plotly_chart(figures.roc_figure([curve], [state["point"]]), key="thr_s_roc")
    counts = state["histogram"]
    figure = figures.outcome_histogram_figure(counts["edges"], counts["counts"], threshold, horizon)
    histogram.plotly_chart(figure, key="thr_s_histogram")

    if st.button(
        "Save threshold",
        type="primary",
        key="thr_s_save",
        disabled=split != "validation",
        help="Only a threshold chosen on validation predictions can be saved, with its horizon "
        "and baseline, by an operator.",
    ):
        actor = authorize("save_threshold")
        rule = st.session_state.get("thr_s_rule", "manual")
        saved = page.save_survival_threshold(
            view.run_dir, threshold, horizon, kind, split, rule, saved_by=actor.identity
        )
        audit(
            actor,
            "save_threshold",
            view.run_id,
            threshold=saved["threshold"],
            rule=rule,
            horizon_days=saved["horizon_days"],
        )
        st.success(
            f"Saved {saved['threshold']:.3f} on {saved['scale']} ({kind} baseline, {rule}, chosen "
            f"on {split}) to threshold.json."
        )


if view.config.get("task") == "survival":
    survival_page(view, user)
    st.stop()

saved_point = view.threshold.operating_point
scale = page.default_scale(saved_point, view.config.get("folds", 0))
if "thr_recal" not in st.session_state and scale:
    st.session_state.thr_recal = scale

left, right = st.columns(2)
if st.session_state.get("thr_split") not in view.parts:
    st.session_state.pop("thr_split", None)  # another run's part (test vs external)
from_link("split", "thr_split", view.parts)
split = left.radio("Predictions", view.parts, horizontal=True, key="thr_split")
recalibration = right.radio(
    "Probabilities",
    RECALIBRATION_METHODS,
    format_func=lambda m: "raw" if m == "none" else f"recalibrated ({m})",
    horizontal=True,
    key="thr_recal",
)
if view.metrics.augmentation_warning:
    st.error(view.metrics.augmentation_warning)
verdict = run_view.test_verdict(view.metrics)
if verdict:
    st.caption(run_view.verdict_text(verdict))
source = view.metrics.threshold_source
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
    saved = view.threshold.in_force
    st.session_state.threshold = round(float(saved), 3) if saved is not None else 0.5
    st.session_state.threshold_rule = "saved" if saved is not None else "manual"
from_link("threshold", "threshold", parse=page.parse_threshold)


def _jump(name: str, value: float) -> None:
    st.session_state.threshold = round(float(value), 3)
    st.session_state.threshold_rule = name


def _moved() -> None:
    st.session_state.threshold_rule = "manual"


def _moved_in_browser(value: float | None) -> None:
    if value is not None:
        st.session_state.threshold = round(value, 3)
        _moved()


if rules:
    st.caption("Thresholds fitted on validation by each rule:")
buttons = st.columns(len(rules) + 1)
for column, (name, value) in zip(buttons, rules.items(), strict=False):
    column.button(f"{name}: {value:.3f}", on_click=_jump, args=(name, value), key=f"rule_{name}")
buttons[-1].number_input(
    "Exact threshold",
    0.0,
    1.0,
    step=0.001,
    format="%.3f",
    key="threshold",
    on_change=_moved,
    label_visibility="collapsed",
)
threshold = float(st.session_state.threshold)
to_link(threshold=threshold, split=split)

frame = part_predictions(view.run_id, key, split, recalibration)
for note in frame.attrs.get("notes", []):
    st.warning(note)
threshold_explorer.show(
    explorer_table(view.run_id, key, split, recalibration),
    f"{view.run_id}/{split}/{recalibration}/{key}",
    threshold,
    f"{view.metrics.get('positive_class', 'positive = 1')}",
    _moved_in_browser,
)
with st.popover("Link to this view", icon=":material/link:"):
    copy_link("threshold")
summary = experiments.summary_of(artifacts(), view)
seeds = experiments.finished_runs(summary)
if len(seeds) > 1:
    with st.expander(f"Over the {len(seeds)} seeds of experiment {summary['experiment']}"):
        spread = experiments.threshold_spread(
            [load(run_id) for run_id in seeds], split, threshold, recalibration
        )
        fitted = spread["fitted"]
        st.markdown(
            f"Threshold fitted on validation (Youden J) by each seed: "
            f"**{spread_text(fitted)}**, from {fitted['min']:.3f} to {fitted['max']:.3f}."
        )
        st.dataframe(
            {
                "metric": list(spread["metrics"]),
                f"at {threshold:.3f}, {split}: mean ± SD over seeds": [
                    spread_text(entry) for entry in spread["metrics"].values()
                ],
            },
            hide_index=True,
        )

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
    if can_open and st.button(
        f"Review these {len(rows)} patients one by one", key="thr_queue", disabled=rows.empty
    ):
        review_queue.start(view, queues.cell_queue(cell, split, rows))
        st.session_state.update(pt_true=None, pt_pred=None)
        st.switch_page("ui/patient.py")
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

if st.button(
    "Save threshold",
    type="primary",
    key="save_threshold",
    disabled=split != "validation",
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
