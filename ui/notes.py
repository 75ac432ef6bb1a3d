"""Review notes of one patient: the list, a form to add one, withdrawing one (reviewers)."""

import streamlit as st

from nsclc_engine.access import User
from nsclc_engine.dashboard.patient import note_table
from nsclc_engine.dashboard.run_view import RunView
from nsclc_engine.review import store
from ui.common import authorize, review_db, role_help, show_error


def review_notes(view: RunView, patient_id: str, user: User) -> None:
    st.markdown("**Review notes**")
    if "note_saved" in st.session_state:  # said after the rerun that lists the new note
        st.success(st.session_state.pop("note_saved"))
    url = review_db()
    source = store.source_of(view.config)
    try:
        found = store.notes(url, patient_id=patient_id, source=source)
    except ConnectionError as error:
        show_error("Review notes", error)
        return
    if found.empty:
        st.caption("No note on this patient yet.")
    else:
        shown = note_table(found)[["flag", "text", "author", "created_at", "state", "run_id"]]
        st.dataframe(
            shown,
            hide_index=True,
            width="stretch",
            column_config={"text": st.column_config.TextColumn("note", width="large")},
        )
    with st.form(f"note_{patient_id}", clear_on_submit=True):
        flag = st.selectbox("Flag", list(store.FLAGS), format_func=store.FLAGS.get)
        text = st.text_area("Note", max_chars=store.MAX_TEXT, height=80)
        saved = st.form_submit_button("Save note", help=role_help(user, "add_note"))
    if saved:
        actor = authorize("add_note")
        try:
            note = store.add_note(url, view.run_id, patient_id, source, flag, text, actor.identity)
        except (ValueError, ConnectionError) as error:
            show_error("The note was not saved", error)
        else:
            if flag == store.EXCLUDE:
                st.session_state.note_saved = (
                    f"Note {note} saved: {patient_id} is left out of the next cohort built from "
                    "this data (reason review_excluded); withdraw the note to take it back."
                )
            else:
                st.session_state.note_saved = f"Note {note} saved."
            st.rerun()
    active = found[found.withdrawn_at.isna()] if not found.empty else found
    if not active.empty and user.may_do("withdraw_note"):
        left, right = st.columns([3, 1])
        flags = dict(zip(active.note_id, active.flag, strict=True))
        chosen = left.selectbox(
            "Withdraw a note",
            list(flags),
            format_func=lambda n: f"note {n}: {store.FLAGS[flags[n]]}",
            key=f"withdraw_{patient_id}",
        )
        if right.button("Withdraw", key=f"withdraw_go_{patient_id}"):
            actor = authorize("withdraw_note")
            try:
                store.withdraw_note(url, int(chosen), actor.identity)
            except (ValueError, ConnectionError) as error:
                show_error("The note was not withdrawn", error)
            else:
                st.rerun()
