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
    height = 600 if len(payload["maps"]) < 2 else 880
    st.iframe(TEMPLATE.replace("__PAYLOAD__", data), height=height, alt="CT case viewer")
