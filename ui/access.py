"""Access and audit (admins): who is signed in as what, the data roots, the review notes and
the audit log."""

import os
from pathlib import Path

import streamlit as st

from nsclc_engine import access
from nsclc_engine.dashboard.patient import note_table
from nsclc_engine.review import store
from ui.common import authorize, require_page, review_db, secrets_state

st.title("Access and audit")
user = require_page("access")
url = review_db()
st.caption(
    f"You: {user.identity} ({user.role}, {user.how}). Sign-in: "
    + ("OIDC through `[auth]` in .streamlit/secrets.toml" if secrets_state() == "auth" else "off")
    + f". Roles file: `{access.roles_file()}`. Review database: `{store.shown_url(url)}`."
)

st.subheader("Data roots")
st.caption(
    "DICOM folders and clinical tables are read only inside these folders. "
    "`NSCLC_DATA_ROOTS` sets some when the server starts; an admin registers more here."
)
from_env = access.data_roots()
registered = store.registered_roots(url)
listed = [{"root": str(r), "from": "NSCLC_DATA_ROOTS"} for r in from_env]
listed += [{"root": r, "from": "registered here"} for r in registered]
if listed:
    st.dataframe(listed, hide_index=True, width="stretch")
else:
    st.caption(
        "No data root yet: a local user may give any path; a served dashboard reads no DICOM "
        "until an admin registers one."
    )
with st.form("add_root", clear_on_submit=True):
    new_root = st.text_input("Register a folder as a data root")
    added = st.form_submit_button("Register")
if added:
    actor = authorize("register_root")
    folder = Path(new_root.strip()).expanduser()
    if not new_root.strip() or not folder.is_dir():
        st.error(f"{new_root!r} is not a folder on this server.")
    elif folder.resolve() == Path(os.sep):
        st.error("The whole file system cannot be a data root.")
    else:
        store.register_root(url, str(folder.resolve()), actor.identity)
        st.rerun()
if registered:
    left, right = st.columns([3, 1])
    gone = left.selectbox("Remove a registered root", registered)
    if right.button("Remove"):
        actor = authorize("register_root")
        store.remove_root(url, gone, actor.identity)
        st.rerun()

st.subheader("Review notes")
notes = store.notes(url)
if notes.empty:
    st.caption("No review note yet.")
else:
    st.dataframe(note_table(notes), hide_index=True, width="stretch")
    st.download_button(
        "Download all notes (CSV)",
        store.notes_csv(notes),
        "review_notes.csv",
        "text/csv",
        on_click="ignore",
    )

st.subheader("Audit log")
authorize("read_audit")
st.dataframe(store.audit_log(url), hide_index=True, width="stretch")
