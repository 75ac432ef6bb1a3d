"""Cohort page: who is in the cohort, who was left out and why, and the class balance."""

import pandas as pd
import streamlit as st

from nsclc_engine.clinical import LABELS
from nsclc_engine.cohort import exclusions_by_reason, load_cleaning_report, load_cohort
from nsclc_engine.demo import build_demo, demo_paths

st.title("Cohort and cleaning report")
paths = demo_paths()

if not paths.is_built():
    st.info(
        "No demo cohort yet. It is a synthetic Lung1-format cohort (240 patients, DICOM CT + "
        "RTSTRUCT + clinical CSV, a few deliberately broken) read through the same code as the "
        "real data. Headless: `python -m nsclc_engine.demo`."
    )
    if st.button("Build the demo cohort (about a minute)", key="build_demo", type="primary"):
        with st.status("Writing DICOM and building the cohort…", expanded=True):
            build_demo(show_progress=False)
        st.rerun()
    st.stop()

report = load_cleaning_report(paths.cohort)
summary = report["summary"]
cohort = load_cohort(paths.cohort)
exclusions = pd.DataFrame(report["exclusions"], columns=["patient_id", "scope", "reason", "detail"])

st.caption(f"Demo cohort in `{paths.root}`")
columns = st.columns(4)
columns[0].metric("Patients with imaging", summary["n_imaging_patients"])
columns[1].metric("Clinical rows", summary["n_clinical_rows"])
columns[2].metric("Included", summary["n_included"])
columns[3].metric("Excluded", summary["n_excluded"])

st.subheader("Class balance of the included patients")
balance = pd.DataFrame(summary["labels"]).T.rename_axis("label").reset_index()
balance["definition"] = balance["label"].map(lambda name: LABELS[name].description)
st.dataframe(balance, hide_index=True, width="stretch")

st.subheader("Exclusions")
if exclusions.empty:
    st.success("No patient was excluded.")
else:
    st.dataframe(exclusions_by_reason(exclusions), hide_index=True)
    st.dataframe(exclusions, hide_index=True, width="stretch")
if report["skipped_files"]:
    st.warning(f"{len(report['skipped_files'])} files were skipped while indexing.")
    st.dataframe(pd.DataFrame(report["skipped_files"]), hide_index=True)

st.subheader("Included patients")
st.dataframe(cohort, hide_index=True, width="stretch")
