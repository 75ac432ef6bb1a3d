"""NSCLC survival dashboard: ``streamlit run app.py``. The pages in ``ui/`` lay out what
``nsclc_engine.dashboard`` computes."""

import streamlit as st

from nsclc_engine.dashboard.runs import first_start, runs_overview
from ui.common import artifacts

st.set_page_config(page_title="NSCLC survival engine", page_icon="🫁", layout="wide")

if "first_start_checked" not in st.session_state:
    st.session_state.first_start_checked = True
    launched = first_start(artifacts())
    if launched:
        st.session_state.run_id = launched
        st.toast(
            "First start: building the demo cohort and training a demo model in the background."
        )

navigation = st.navigation(
    [
        st.Page("ui/runs.py", title="Runs", icon="🗃️", default=True),
        st.Page("ui/dataset.py", title="Dataset and splits", icon="🗂️"),
        st.Page("ui/train.py", title="Train", icon="🏋️"),
        st.Page("ui/threshold.py", title="Threshold", icon="🎚️"),
        st.Page("ui/calibration.py", title="Calibration", icon="📐"),
        st.Page("ui/survival.py", title="Survival", icon="📉"),
        st.Page("ui/patient.py", title="Patient", icon="🩻"),
        st.Page("ui/studies.py", title="Studies", icon="🔎"),
    ]
)

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
navigation.run()
