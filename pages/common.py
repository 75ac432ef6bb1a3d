"""Helpers shared by the pages: the artifacts folder, the selected run, cached engine calls."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from nsclc_engine.dashboard import views as dashboard
from nsclc_engine.paths import artifacts_dir


def through_app(page_file: str) -> None:
    """Send a page opened without ``app.py`` back through it, keeping the page asked for.

    On a fresh server, a deep link (``/patient``) reaches Streamlit before ``app.py`` has ever
    called ``st.navigation``; Streamlit then runs the file from ``pages/`` on its own, without
    the navigation and the run picker (streamlit/streamlit#9624). ``app.py`` marks every
    session it runs, so an unmarked session is that case."""
    if "first_start_checked" not in st.session_state:
        st.session_state.deep_link = f"pages/{Path(page_file).name}"
        st.switch_page("app.py")


def artifacts() -> Path:
    return Path(artifacts_dir())


def _stamp(run_dir: Path) -> tuple:
    """Changes whenever the run writes something the pages show (cache key)."""
    names = ("status.json", "predictions.csv", "metrics.json", "threshold.json", "history.jsonl")
    return tuple((run_dir / n).stat().st_mtime_ns if (run_dir / n).exists() else 0 for n in names)


@st.cache_data(show_spinner=False, max_entries=32)
def _load(run_dir: str, stamp: tuple) -> dashboard.RunView:
    return dashboard.load_run(run_dir)


def load(run_id: str) -> dashboard.RunView:
    run_dir = artifacts() / "runs" / run_id
    return _load(str(run_dir), _stamp(run_dir))


def selected_run() -> dashboard.RunView | None:
    run_id = st.session_state.get("run_id")
    if not run_id or not (artifacts() / "runs" / run_id).is_dir():
        return None
    return load(run_id)


def require_finished_run(allow_survival: bool = False) -> dashboard.RunView:
    """The selected run if it has predictions; otherwise say why and stop the page."""
    view = selected_run()
    if view is None:
        st.info("No run selected. Launch one on the Train page or pick one in the sidebar.")
        st.stop()
    if not view.finished:
        if view.status.get("state") in ("queued", "running"):
            _progress(view.run_id)
        else:
            st.info(f"Run `{view.run_id}` is {view.status.get('state', 'unknown')}.")
            if view.status.get("error"):
                st.error(view.status["error"])
        st.stop()
    if view.config.get("task") == "survival" and not allow_survival:
        st.info(
            f"Run `{view.run_id}` is a survival run (Cox risk, no probabilities): its C-indices, "
            "time-dependent AUC and Kaplan-Meier curves are in its report.html and metrics.json."
        )
        st.stop()
    return view


@st.fragment(run_every=3)
def _progress(run_id: str) -> None:
    """Progress of a queued or running run; the page fills in by itself when it finishes."""
    view = load(run_id)
    if view.finished or view.status.get("state") not in ("queued", "running"):
        st.rerun()
    st.info(
        f"Run `{run_id}` is {view.status.get('state')}: {view.status.get('stage') or 'waiting'} "
        f"({view.status.get('progress', 0):.0%}). This page fills in when it finishes."
    )
    st.progress(float(view.status.get("progress", 0.0)))


@st.cache_data(show_spinner=False, max_entries=64)
def part_predictions(run_id: str, stamp: tuple, split: str, recalibration: str):
    view = load(run_id)
    return dashboard.part_predictions(view.predictions, split, recalibration)


@st.cache_data(show_spinner=False, max_entries=64)
def rule_thresholds(run_id: str, stamp: tuple, recalibration: str) -> dict:
    return dashboard.rule_thresholds(load(run_id).predictions, recalibration)


@st.cache_data(show_spinner=False, max_entries=512)
def threshold_state(run_id: str, stamp: tuple, split: str, recalibration: str, threshold: float):
    frame = part_predictions(run_id, stamp, split, recalibration)
    return dashboard.threshold_state(frame, threshold)


def stamp(view: dashboard.RunView) -> tuple:
    return _stamp(view.run_dir)
