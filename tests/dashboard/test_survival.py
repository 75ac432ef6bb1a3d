"""The Survival page: C-index tables and risk groups from the run."""

import numpy as np
import pytest

from nsclc_engine.dashboard import runs as runs_view
from nsclc_engine.dashboard import survival as survival_logic


def test_survival_tables_come_from_the_run_metrics(survival_view, shown_artifacts):
    table = survival_logic.c_index_table(survival_view)
    assert set(table.model) == {"image", "clinical", "volume", "fusion"}
    assert set(table.split) == {"train", "validation", "test"}
    image_test = table[(table.model == "image") & (table.split == "test")]["C-index"].item()
    assert image_test == pytest.approx(
        survival_view.metrics["splits"]["test"]["c_index"]["c_index"]
    )
    timed = survival_logic.time_dependent_table(survival_view)
    assert {"Uno C", "AUC 365d", "AUC 730d", "IBS"} <= set(timed.columns)
    overview = runs_view.runs_overview(shown_artifacts).set_index("run_id")
    assert overview.loc["fixture-survival", runs_view.TEST_C] == pytest.approx(image_test)
    validation = survival_view.metrics["splits"]["validation"]["c_index"]["c_index"]
    assert overview.loc["fixture-survival", "validation C-index"] == pytest.approx(validation)


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


def test_the_cut_is_explored_on_validation_and_test_only_at_the_frozen_median(survival_view):
    from nsclc_engine.stats.survival import groups_at, risk_groups

    models = survival_logic.survival_models(survival_view)
    validation = models[models.split == "validation"]
    test = models[models.split == "test"]
    low = survival_logic.risk_cut_views(models, "image", 0.2)
    high = survival_logic.risk_cut_views(models, "image", 0.8)
    # choosing: validation patients at their own quantile
    cut = float(np.quantile(validation.image, 0.8))
    expected = groups_at(validation.time_days, validation.event, validation.image > cut)
    assert high["choosing"]["logrank"] == expected["logrank"]
    assert low["choosing"]["n_high"] > high["choosing"]["n_high"]
    # test: the frozen median of validation whatever the slider says, as metrics.json's groups
    assert high["frozen_quantile"] == 0.5
    assert low["frozen"]["cuts"] == high["frozen"]["cuts"]
    assert low["frozen"]["logrank"] == high["frozen"]["logrank"]
    frozen = risk_groups(validation.image, test.time_days, test.event, test.image)
    assert high["frozen"]["cuts"] == [pytest.approx(frozen["cut_off"])]
    assert high["frozen"]["logrank"] == frozen["logrank"]
    assert high["frozen"]["n_high"] + high["frozen"]["n_low"] == len(test)


def test_fusion_weights_and_comparisons_as_text():
    weights = [{"fold": 0, "image": 0.5, "clinical": -0.25}, {"fold": 1, "image": 1.0}]
    assert survival_logic.fusion_weights_text(weights) == "image +0.50, clinical -0.25; image +1.00"
    metrics = {
        "models": {
            "comparisons": [
                {
                    "a": "image",
                    "b": "clinical",
                    "difference": 0.05,
                    "ci_low": -0.01,
                    "ci_high": 0.11,
                    "p_value": 0.2,
                }
            ]
        }
    }
    assert survival_logic.comparison_lines(metrics) == [
        "**image − clinical** on test: C difference +0.050 (95% CI -0.010 to +0.110), "
        "bootstrap p = 0.200, Holm-adjusted p = 0.200",
        "1 paired comparison shown: no adjustment needed.",
    ]
    second = dict(metrics["models"]["comparisons"][0], b="volume", p_value=0.01)
    metrics["models"]["comparisons"].append(second)
    lines = survival_logic.comparison_lines(metrics)
    assert lines[0].endswith("bootstrap p = 0.200, Holm-adjusted p = 0.200")
    assert lines[1].endswith("bootstrap p = 0.010, Holm-adjusted p = 0.020")  # 2 x 0.01
    assert lines[2].startswith("2 paired comparisons shown together")
    assert survival_logic.comparison_lines({}) == []
