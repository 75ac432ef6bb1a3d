"""The Dataset and splits page."""

import pytest

from nsclc_engine.dashboard import dataset as dataset_view


def test_split_overview_is_table_1_with_a_leakage_check(view):
    overview = dataset_view.split_overview(view)
    table = overview["table"]
    assert table.total.sum() == view.predictions.patient_id.nunique()
    assert overview["leaks"] == []
    train = view.predictions[view.predictions.split == "train"]
    share = overview["sampling"].iloc[0]["class 0 share per epoch"]
    assert share == pytest.approx((train.y_true == 0).mean())  # house default: no sampler
