"""The dashboard opens, says what to do with no demo, and shows the engine's cohort summary."""

from dataclasses import replace
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from nsclc_engine.cohort import load_cleaning_report
from nsclc_engine.demo import build_demo, demo_paths

from .conftest import TINY

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def test_without_a_demo_the_app_offers_to_build_it(tmp_path, monkeypatch):
    monkeypatch.setenv("NSCLC_ARTIFACTS_DIR", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=30).run()
    assert not at.exception
    assert "No demo cohort yet" in at.info[0].value
    assert at.button(key="build_demo").label.startswith("Build the demo cohort")


@pytest.mark.slow
def test_with_a_demo_the_app_shows_the_cleaning_summary(tmp_path, monkeypatch):
    monkeypatch.setenv("NSCLC_ARTIFACTS_DIR", str(tmp_path))
    config = replace(TINY, n_patients=4, defects="2:no_rtstruct,4:missing_label")
    build_demo(tmp_path, synth_config=config, show_progress=False)
    assert build_demo(tmp_path, synth_config=config, show_progress=False) is None  # built once
    at = AppTest.from_file(APP, default_timeout=30).run()
    assert not at.exception
    summary = load_cleaning_report(demo_paths(tmp_path).cohort)["summary"]
    metrics = {metric.label: metric.value for metric in at.metric}
    assert metrics["Included"] == str(summary["n_included"]) == "2"
    assert metrics["Excluded"] == "2"
    exclusions = at.dataframe[2].value
    assert sorted(exclusions.reason) == ["missing_label", "no_rtstruct"]
