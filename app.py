"""NSCLC survival dashboard: ``streamlit run app.py``. Pages lay out what the engine computes."""

import streamlit as st

st.set_page_config(page_title="NSCLC survival engine", page_icon="🫁", layout="wide")

navigation = st.navigation([st.Page("pages/cohort.py", title="Cohort", icon="🗂️", default=True)])
st.sidebar.caption(
    "Data: NSCLC-Radiomics (Lung1) format. The demo cohort is synthetic; no patient data. "
    "Training, threshold, calibration and case-review pages come next."
)
navigation.run()
