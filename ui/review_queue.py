"""The review queue on the Patient page: start one (a split, or the held-out patients by
confidence; a confusion cell's starts on the Threshold page), walk it with the keyboard
(N next, P previous, also from inside the case viewer) and record a verdict per case (1-4),
with an optional note. An image or contour problem is an exclusion proposal that a reviewer
confirms here."""

import streamlit as st

from nsclc_engine.access import User
from nsclc_engine.dashboard import review_queue as queues
from nsclc_engine.dashboard.run_view import RunView
from nsclc_engine.review import store
from ui.common import authorize, review_db, role_help, show_error

QUEUE = "review_queue"  # (run id, queues.Queue) of this browser session
NEXT = "review_queue_next"  # the case a verdict moves on to
VERDICT_KEYS = dict(zip(store.VERDICTS, ("1", "2", "3", "4"), strict=True))


def start(view: RunView, queue: queues.Queue) -> None:
    """Begin ``queue`` at its first case (on the next run of the Patient page)."""
    st.session_state[QUEUE] = (view.run_id, queue)
    if queue.patients:
        st.session_state.update(pt_open=queue.patients[0], pt_split=queue.split)


def _go(queue: queues.Queue, patient_id: str, by: int) -> None:
    st.session_state.update(pt_open=queue.step(patient_id, by), pt_split=queue.split)


def _record(view: RunView, queue: queues.Queue, patient_id: str, verdict: str) -> None:
    """Save the verdict (a reviewer's, checked right here) and open the next case."""
    actor = authorize("add_note")
    note = st.session_state.get(f"verdict_note_{patient_id}", "")
    try:
        store.add_verdict(
            review_db(),
            view.run_id,
            patient_id,
            store.source_of(view.config),
            verdict,
            note,
            actor.identity,
        )
    except (ValueError, ConnectionError) as error:
        show_error(f"{patient_id}: the verdict was not saved", error)
        return
    st.session_state.verdict_saved = f"{patient_id}: {store.VERDICTS[verdict]}."
    st.session_state[NEXT] = queue.step(patient_id, 1)  # opened before the page's widgets
    st.rerun()


def follow() -> None:
    """At the top of the Patient page: open the case a verdict moved the queue on to."""
    following = st.session_state.pop(NEXT, None)
    held = st.session_state.get(QUEUE)
    if following and held:
        st.session_state.update(pt_open=following, pt_split=held[1].split)


def panel(view: RunView, patient_id: str, user: User) -> None:
    """The queue's controls for ``patient_id``, or the buttons that start one."""
    held = st.session_state.get(QUEUE)
    queue = held[1] if held and held[0] == view.run_id else None
    with st.container(border=True):
        if queue is None:
            left, middle, right = st.columns([2, 2, 3])
            left.markdown("**Review queue**")
            split = st.session_state.get("pt_split") or view.held_out
            middle.button(
                f"All {split} patients",
                on_click=start,
                args=(view, queues.split_queue(view, split)),
                key="queue_split",
            )
            right.button(
                f"All {view.held_out} patients by confidence",
                on_click=start,
                args=(view, queues.confidence_queue(view)),
                key="queue_confidence",
            )
            return
        url = review_db()
        try:
            every = store.verdicts(url, run_id=view.run_id)
        except ConnectionError as error:
            show_error("Verdicts", error)
            return
        current = store.current_verdicts(every)
        done = set(current.patient_id) & set(queue.patients)
        at = queue.position(patient_id)
        place = f"case {at + 1} of {len(queue.patients)}" if at is not None else "not in it"
        head, end = st.columns([5, 1])
        head.markdown(
            f"**Review queue: {queue.name}** · {place} · {len(done)} with a verdict · "
            "keys: N next, P previous, 1-4 a verdict (also inside the case viewer)"
        )
        end.button("End queue", on_click=st.session_state.pop, args=(QUEUE, None), key="q_end")
        if "verdict_saved" in st.session_state:  # said on the case it moved on to
            st.success(st.session_state.pop("verdict_saved"))
        mine = current[current.patient_id == patient_id]
        if not mine.empty:
            last = mine.iloc[-1]
            st.caption(
                f"Verdict on {patient_id}: {last.verdict_name} ({last.author}, "
                f"{last.created_at[:16]}){': ' + last.text if last.text else ''}."
            )
        steps = st.columns(2 + len(store.VERDICTS))
        steps[0].button(
            "Previous",
            shortcut="P",
            on_click=_go,
            args=(queue, patient_id, -1),
            key="q_previous",
            icon=":material/arrow_back:",
        )
        steps[1].button(
            "Next",
            shortcut="N",
            on_click=_go,
            args=(queue, patient_id, 1),
            key="q_next",
            icon=":material/arrow_forward:",
        )
        chosen = None
        for column, (verdict, name) in zip(steps[2:], store.VERDICTS.items(), strict=True):
            if column.button(
                name.removesuffix(" with the model").capitalize(),
                shortcut=VERDICT_KEYS[verdict],
                key=f"q_verdict_{verdict}",
                help=role_help(user, "add_note") or f"Verdict: {name}; then the next case.",
            ):
                chosen = verdict
        st.text_input(
            "Note with the verdict (optional)",
            key=f"verdict_note_{patient_id}",
            max_chars=store.MAX_TEXT,
        )
        if chosen:
            _record(view, queue, patient_id, chosen)
        proposals = store.exclusion_proposals(every)
        proposal = proposals[proposals.patient_id == patient_id]
        if not proposal.empty:
            entry = proposal.iloc[0]
            st.warning(
                f"{entry.verdict_name} ({entry.author}) proposes leaving {patient_id} out of the "
                "next cohort built from this data; a reviewer confirms it."
            )
            if st.button(
                "Confirm the exclusion",
                key=f"q_confirm_{entry.verdict_id}",
                help=role_help(user, "add_note"),
            ):
                actor = authorize("add_note")
                try:
                    note = store.confirm_exclusion(url, int(entry.verdict_id), actor.identity)
                except (ValueError, ConnectionError) as error:
                    show_error("The exclusion was not confirmed", error)
                else:
                    st.success(f"Note {note}: {patient_id} is left out of the next cohort build.")
