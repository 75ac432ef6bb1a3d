"""NSCLC survival dashboard: ``streamlit run app.py``. The pages in ``ui/`` lay out what
``nsclc_engine.dashboard`` computes. Who may open which page and do what:
:mod:`nsclc_engine.access` (sign-in where ``[auth]`` is configured, roles from the roles file)."""

import streamlit as st

from nsclc_engine.access import ADMIN_TOKEN_FILE, SERVER
from nsclc_engine.dashboard.runs import first_start, runs_overview
from ui.common import artifacts, audit, current_user, keep_admin_cookie, secrets_state

st.set_page_config(page_title="NSCLC survival engine", page_icon="🫁", layout="wide")

user = current_user()
secrets = secrets_state()
if secrets == "broken":
    st.error("The server's secrets file cannot be read: nobody gets in until an admin fixes it.")
    st.stop()
if secrets == "auth" and not st.user.is_logged_in:
    st.title("NSCLC survival engine")
    st.write("This dashboard is shared by a team: sign in to continue.")
    providers = [k for k, v in st.secrets["auth"].items() if hasattr(v, "keys")]
    if st.button("Sign in", type="primary"):
        st.login(providers[0] if providers else None)
    st.stop()
if user.role is None:
    st.title("NSCLC survival engine")
    st.error(
        f"You are signed in as {user.identity}, but you have no role here. Ask an admin to add "
        "you to the roles file."
    )
    if st.button("Sign out"):
        st.logout()
    st.stop()

keep_admin_cookie()
if "first_start_checked" not in st.session_state:
    st.session_state.first_start_checked = True
    launched = first_start(artifacts())  # the server's own action, whoever opened the page
    if launched:
        audit(SERVER, "launch_job", launched, how="first start (demo)")
        st.session_state.run_id = launched
        st.toast(
            "First start: building the demo cohort and training a demo model in the background."
        )

PAGES = [
    ("runs", st.Page("ui/runs.py", title="Runs", icon="🗃️", default=True)),
    ("dataset", st.Page("ui/dataset.py", title="Dataset and splits", icon="🗂️")),
    ("train", st.Page("ui/train.py", title="Train", icon="🏋️")),
    ("threshold", st.Page("ui/threshold.py", title="Threshold", icon="🎚️")),
    ("calibration", st.Page("ui/calibration.py", title="Calibration", icon="📐")),
    ("survival", st.Page("ui/survival.py", title="Survival", icon="📉")),
    ("patient", st.Page("ui/patient.py", title="Patient", icon="🩻")),
    ("studies", st.Page("ui/studies.py", title="Studies", icon="🔎")),
    ("access", st.Page("ui/access.py", title="Access and audit", icon="🔐")),
]
navigation = st.navigation([page for name, page in PAGES if user.may_open(name)])

runs = runs_overview(artifacts())
with st.sidebar:
    if runs.empty:
        st.caption("No runs yet.")
    else:
        ids = runs.run_id.tolist()
        if st.session_state.get("pending_run_id") in ids:  # launched on the Train page
            st.session_state.run_id = st.session_state.pop("pending_run_id")
        finished = runs[runs.state == "finished"].run_id.tolist()
        if st.session_state.get("run_id") not in ids:
            st.session_state.run_id = (finished or ids)[0]
        st.selectbox(
            "Run",
            ids,
            key="run_id",
            format_func=lambda r: f"{r} ({runs.set_index('run_id').state[r]})",
        )
    st.caption(
        "Data: NSCLC-Radiomics (Lung1) format. The demo cohort is synthetic; no patient data."
    )
    st.caption(f"{user.identity} · {user.role} ({user.how})")
    if secrets == "none" and not user.may_do("launch_job"):
        st.caption(
            "Whoever started this server is its admin through the link it printed in their "
            f"terminal (the token is in `{ADMIN_TOKEN_FILE}` in the artifacts folder); serve a "
            "team with sign-in (README, Serving a team)."
        )
    if secrets == "auth" and st.button("Sign out", key="sign_out"):
        st.logout()
navigation.run()
