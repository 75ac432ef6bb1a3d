"""The finished tiny runs the dashboard tests read (trained once per session)."""

import pytest

from nsclc_engine.dashboard import run_view


@pytest.fixture()
def view(dashboard_artifacts):
    return run_view.load_run(dashboard_artifacts / "runs" / "fixture")


@pytest.fixture()
def survival_view(dashboard_artifacts):
    return run_view.load_run(dashboard_artifacts / "runs" / "fixture-survival")
