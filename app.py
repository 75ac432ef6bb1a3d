"""NSCLC survival dashboard: ``streamlit run app.py``. The pages in ``ui/`` lay out what
``nsclc_engine.dashboard`` computes. Who may open which page and do what:
:mod:`nsclc_engine.access` (sign-in where ``[auth]`` is configured, roles from the roles file)."""

import streamlit as st

from nsclc_engine.access import ADMIN_TOKEN_FILE, SERVER
from nsclc_engine.dashboard.runs import first_start, runs_overview
from ui.common import (
    artifacts,
    audit,
    current_user,
    from_link,
    keep_admin_cookie,
    secrets_state,
    to_link,
)

st.set_page_config(
    page_title="NSCLC survival engine", page_icon=":material/pulmonology:", layout="wide"
)

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

# (name, file, title, Material icon): names are the roles' page names and the links' keys
PAGE_LIST = [
    ("runs", "ui/runs.py", "Runs", "table_rows"),
    ("dataset", "ui/dataset.py", "Dataset and splits", "folder_open"),
    ("train", "ui/train.py", "Train", "model_training"),
    ("threshold", "ui/threshold.py", "Threshold", "tune"),
    ("calibration", "ui/calibration.py", "Calibration", "straighten"),
    ("survival", "ui/survival.py", "Survival", "monitoring"),
    ("patient", "ui/patient.py", "Patient", "radiology"),
    ("studies", "ui/studies.py", "Studies", "search"),
    ("access", "ui/access.py", "Access and audit", "admin_panel_settings"),
]
PAGES = [
    (name, st.Page(path, title=title, icon=f":material/{icon}:", default=name == "runs"))
    for name, path, title, icon in PAGE_LIST
]
# what each page keeps in the address bar besides ?run= (a link opens exactly that view)
LINKS = {"patient": ("patient", "split"), "threshold": ("threshold", "split")}
navigation = st.navigation([page for name, page in PAGES if user.may_open(name)])
shown = next((name for name, page in PAGES if page.url_path == navigation.url_path), "")
for stale in set(st.query_params) - {"run", *LINKS.get(shown, ())}:  # another page's
    del st.query_params[stale]

runs = runs_overview(artifacts())
if not runs.empty:
    ids = runs.run_id.tolist()
    from_link("run", "run_id", ids)
    if st.session_state.get("pending_run_id") in ids:  # launched on the Train page
        st.session_state.run_id = st.session_state.pop("pending_run_id")
    finished = runs[runs.state == "finished"].run_id.tolist()
    if st.session_state.get("run_id") not in ids:
        st.session_state.run_id = (finished or ids)[0]
with st.sidebar:
    if runs.empty:
        st.caption("No runs yet.")
    else:
        st.selectbox(
            "Run",
            ids,
            key="run_id",
            format_func=lambda r: f"{r} ({runs.set_index('run_id').state[r]})",
        )
        to_link(run=st.session_state.run_id)
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
