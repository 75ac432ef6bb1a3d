"""The browser's case viewer: ``case_viewer.html`` drawing :func:`nsclc_engine.explain.viewer.
case_payload`, so slices, windows, the GTV contour and the map opacity change without a
round trip to the server."""

import json
from pathlib import Path

import streamlit as st

TEMPLATE = (Path(__file__).parent / "case_viewer.html").read_text()


def show(payload: dict) -> None:
    """The viewer for ``payload``: a 512 px axial plane with coronal and sagittal beside it,
    or, with two maps, both axial planes side by side and the other planes below."""
    data = json.dumps(payload).replace("</", "<\\/")  # no "</script>" inside the script
    compare = len(payload["maps"]) > 1
    if compare:  # two 512 px planes side by side: narrower page margins make room for them
        st.html(
            "<style>[data-testid='stMainBlockContainer']"
            "{padding-left: 1.5rem; padding-right: 1.5rem}</style>"
        )
    st.iframe(
        TEMPLATE.replace("__PAYLOAD__", data), height=900 if compare else 620, alt="CT case viewer"
    )
