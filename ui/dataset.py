"""Dataset and splits: who is in the cohort and why others are not, class balance, covariates,
and the selected run's splits (Table 1, balance after sampling, leakage check)."""

from pathlib import Path

import pandas as pd
import streamlit as st

from nsclc_engine.cohort.build import exclusions_by_reason, load_cleaning_report, load_cohort
from nsclc_engine.cohort.clinical import LABELS
from nsclc_engine.dashboard import dataset as page
from nsclc_engine.dashboard.patient import note_table
from nsclc_engine.demo import demo_paths
from nsclc_engine.evaluate import figures
from nsclc_engine.review import store
from ui.common import artifacts, require_page, review_db, selected_run, show_error

st.title("Dataset and splits")
user = require_page("dataset")
view = selected_run()
imported = page.imported_overview(view) if view is not None else {}
if imported:
    st.caption(
        f"Run `{view.run_id}` holds predictions made elsewhere ({imported['score']}), joined to "
        "the clinical table by PatientID. Its patients are an external test set."
    )
    columns = st.columns(3)
    columns[0].metric("Rows in the file", imported["n_rows"])
    columns[1].metric("Used", imported["n_used"])
    columns[2].metric("Left out", imported["n_rows"] - imported["n_used"])
    if imported["excluded"].empty:
        st.success("No row was left out.")
    else:
        st.dataframe(imported["excluded"], hide_index=True, width="stretch")
    st.caption(f"Threshold: {imported['source']}.")
    st.stop()
cohort_dir = (view.config.get("resolved", {}).get("cohort_dir") if view else None) or str(
    demo_paths(artifacts()).cohort
)
if not (Path(cohort_dir) / "cohort.csv").exists():
    st.info(
        "No cohort yet. The demo job builds the synthetic demo cohort (434 patients, DICOM CT + "
        "RTSTRUCT + clinical CSV, 12 deliberately broken) before it trains; headless: "
        "`python -m nsclc_engine.demo`."
    )
    st.stop()

report = load_cleaning_report(cohort_dir)
summary = report["summary"]
cohort = load_cohort(cohort_dir)
exclusions = pd.DataFrame(report["exclusions"], columns=["patient_id", "scope", "reason", "detail"])
st.caption(f"Cohort in `{cohort_dir}`" + (f" (run `{view.run_id}`)" if view else ""))
columns = st.columns(4)
columns[0].metric("Patients with imaging", summary["n_imaging_patients"])
columns[1].metric("Clinical rows", summary["n_clinical_rows"])
columns[2].metric("Included", summary["n_included"])
columns[3].metric("Excluded", summary["n_excluded"])

st.subheader("Class balance of the included patients")
balance = pd.DataFrame(summary["labels"]).T.rename_axis("label").reset_index()
balance["definition"] = balance["label"].map(lambda name: LABELS[name].description)
st.dataframe(balance, hide_index=True, width="stretch")

labels = list(LABELS)
run_label = (view.config.get("label") if view else None) or labels[0]
label = st.selectbox(
    "Covariates by class for",
    labels,
    index=labels.index(run_label) if run_label in labels else 0,
    key="covariate_label",
)
labelled = cohort[cohort[label].notna()]
a, b = st.columns(2)
a.plotly_chart(
    figures.covariate_by_class_figure(labelled.age_years, labelled[label], "Age (years)"), key="age"
)
b.plotly_chart(
    figures.covariate_by_class_figure(labelled.gtv_volume_cm3, labelled[label], "GTV volume (cm³)"),
    key="volume",
)

st.subheader("Exclusions")
if exclusions.empty:
    st.success("No patient was excluded.")
else:
    st.dataframe(exclusions_by_reason(exclusions), hide_index=True)
    st.dataframe(
        page.exclusions_shown(exclusions, user.may_do("add_note")),
        hide_index=True,
        width="stretch",
    )

if view is None or view.kind == "trained":  # notes and exclusions apply to training data
    st.subheader("Review notes on this data")
    source = store.source_of(view.config) if view else "demo"
    try:
        notes = store.notes(review_db(), source=source)
    except ConnectionError as error:
        show_error("Review notes", error)
        notes = None
    if notes is not None and notes.empty:
        st.caption("No review note on this data yet (reviewers add them on the Patient page).")
    elif notes is not None:
        in_force = store.exclusions_in(notes)
        state = page.review_exclusion_state(in_force, exclusions, set(cohort.patient_id))
        for key, text in (
            ("applied", "excluded on review in this cohort build"),
            (
                "pending",
                "flagged for exclusion: the next cohort build (the next training run on "
                "this data) leaves them out",
            ),
            ("lifted", "exclusion withdrawn: the next cohort build takes them back"),
        ):
            if state[key]:
                st.info(f"{len(state[key])} patient(s) {text}: {', '.join(state[key])}.")
        if user.may_do("add_note"):
            st.dataframe(note_table(notes), hide_index=True, width="stretch")
            st.download_button(
                "Download these notes (CSV)",
                store.notes_csv(notes),
                "review_notes.csv",
                "text/csv",
                on_click="ignore",
            )
        else:
            st.caption(f"{len(notes)} review note(s); reviewers read them here.")

if view is not None:
    st.subheader(f"Splits of run {view.run_id}")
    overview = page.split_overview(view)
    if not overview:
        st.caption(
            "An external-validation run has no splits: all its patients are held out."
            if view.kind == "external validation"
            else "The run has no splits or predictions yet."
        )
    else:
        if overview["leaks"]:
            for leak in overview["leaks"]:
                st.error(f"Leakage: {leak}")
        else:
            st.success("Leakage check passed: no patient is in two parts of any split.")
        st.caption(
            f"{view.config.get('label')}: minority = the rarer class in the run's patients; "
            f"{overview['folds']} split(s)."
        )
        st.dataframe(
            overview["table"],
            hide_index=True,
            column_config={"minority_percent": st.column_config.NumberColumn(format="%.1f")},
        )
        st.caption("Expected class shares per training epoch (with the balanced sampler: 50/50):")
        st.dataframe(overview["sampling"], hide_index=True)

mix = page.case_mix(view) if view is not None else pd.DataFrame()
if not mix.empty:
    st.subheader("Case mix: development vs external cohort")
    st.dataframe(mix, hide_index=True, width="stretch")
    st.caption(
        f"Run `{view.run_id}` applies run `{view.config.get('source_run')}` unchanged to this "
        "cohort. A model that does worse here may meet other patients or other scanners."
    )

with st.expander("Included patients"):
    st.dataframe(cohort, hide_index=True, width="stretch")
