"""The Survival page: C-index tables and risk groups from the run."""

import numpy as np
import pytest

from nsclc_engine.dashboard import runs as runs_view
from nsclc_engine.dashboard import survival as survival_logic


def test_survival_tables_come_from_the_run_metrics(survival_view, dashboard_artifacts):
    table = survival_logic.c_index_table(survival_view)
    assert set(table.model) == {"image", "clinical", "volume", "fusion"}
    assert set(table.split) == {"train", "validation", "test"}
    image_test = table[(table.model == "image") & (table.split == "test")]["C-index"].item()
    assert image_test == pytest.approx(
        survival_view.metrics["splits"]["test"]["c_index"]["c_index"]
    )
    timed = survival_logic.time_dependent_table(survival_view)
    assert {"Uno C", "AUC 365d", "AUC 730d", "IBS"} <= set(timed.columns)
    overview = runs_view.runs_overview(dashboard_artifacts).set_index("run_id")
    assert overview.loc["fixture-survival", "test C-index"] == pytest.approx(image_test)


def test_risk_cut_follows_the_validation_quantile(survival_view):
    from nsclc_engine.stats.survival import groups_at

    models = survival_logic.survival_models(survival_view)
    validation = models[models.split == "validation"].fusion
    test = models[models.split == "test"]
    low = survival_logic.risk_group_state(models, "fusion", "test", 0.2)
    high = survival_logic.risk_group_state(models, "fusion", "test", 0.8)
    assert low["cuts"] == [pytest.approx(float(np.quantile(validation, 0.2)))]
    assert low["n_high"] >= high["n_high"] and low["n_high"] + low["n_low"] == len(test)
    expected = groups_at(test.time_days, test.event, test.fusion > high["cuts"][0])
    assert high["logrank"] == expected["logrank"]
    with pytest.raises(ValueError, match="strictly between"):
        survival_logic.risk_group_state(models, "fusion", "test", 1.0)
