"""The runs the dashboard tests read: written by hand, without training (``shown_artifacts``)."""

import pytest

from nsclc_engine.dashboard import run_view


@pytest.fixture()
def view(shown_artifacts):
    return run_view.load_run(shown_artifacts / "runs" / "fixture")


@pytest.fixture()
def survival_view(shown_artifacts):
    return run_view.load_run(shown_artifacts / "runs" / "fixture-survival")
