import json

import numpy as np
import pytest

from nsclc_engine.cohort.splits import (
    SplitConfig,
    check_disjoint,
    kfold_splits,
    save_splits,
    split_table,
    splits_for,
    stratified_split,
)


def lung1_like(n=421, n_alive=49, seed=0):
    """Patient ids and deadstatus labels with Lung1's balance (49 alive = minority class 0)."""
    rng = np.random.default_rng(seed)
    labels = np.ones(n, dtype=int)
    labels[rng.choice(n, n_alive, replace=False)] = 0
    return [f"LUNG1-{i:03d}" for i in range(1, n + 1)], labels


def test_report_sized_split_is_disjoint_complete_and_keeps_the_minority():
    ids, labels = lung1_like()
    split = stratified_split(ids, labels, SplitConfig())
    assert sorted(p for part in split.values() for p in part) == sorted(ids)
    assert {part: len(p) for part, p in split.items()} == {
        "train": 253,
        "validation": 84,
        "test": 84,
    }
    table = split_table(split, dict(zip(ids, labels, strict=True))).set_index("split")
    assert (table.loc[["validation", "test"], "minority_percent"] >= 10.0).all()
    assert table.minority_count.sum() == 49


def test_minimum_minority_share_is_enforced_when_stratification_alone_falls_short():
    ids, labels = lung1_like(n=200, n_alive=12)  # 6 % minority: 20 % of 12 = 2 < 10 % of 40
    split = stratified_split(ids, labels, SplitConfig())
    table = split_table(split, dict(zip(ids, labels, strict=True))).set_index("split")
    assert table.loc["validation", "minority_count"] == table.loc["test", "minority_count"] == 4


def test_too_few_minority_patients_is_an_error():
    ids, labels = lung1_like(n=100, n_alive=3)  # 2 needed in validation and 2 in test
    with pytest.raises(ValueError, match="only 3 minority patients"):
        stratified_split(ids, labels, SplitConfig())


def test_same_seed_same_file_other_seed_other_split(tmp_path):
    ids, labels = lung1_like()
    for name in ("a", "b"):
        splits = splits_for(tmp_path / f"{name}.json", ids, labels, SplitConfig(seed=3), "x")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    other = stratified_split(ids, labels, SplitConfig(seed=4))
    assert other["test"] != splits[0]["test"]


def test_splits_are_reloaded_never_redrawn(tmp_path):
    ids, labels = lung1_like()
    path = tmp_path / "splits.json"
    first = splits_for(path, ids, labels, SplitConfig(), "deadstatus_event")
    assert splits_for(path, ids, labels, SplitConfig(), "deadstatus_event") == first
    with pytest.raises(ValueError, match="made for another cohort"):
        splits_for(path, ids[:-1], labels[:-1], SplitConfig(), "deadstatus_event")
    with pytest.raises(ValueError, match="made for another cohort"):
        splits_for(path, ids, labels, SplitConfig(seed=1), "deadstatus_event")


def test_overlap_raises_naming_the_patient(tmp_path):
    with pytest.raises(ValueError, match="LUNG1-007 is in both 'train' and 'test'"):
        check_disjoint({"train": ["LUNG1-007", "LUNG1-008"], "test": ["LUNG1-007"]})
    path = tmp_path / "splits.json"
    save_splits(path, [{"train": ["A"], "validation": ["B"], "test": ["C"]}], SplitConfig(), "x")
    payload = json.loads(path.read_text())
    payload["splits"][0]["test"].append("A")
    path.write_text(json.dumps(payload))
    with pytest.raises(ValueError, match="A is in both"):
        splits_for(path, ["A", "B", "C"], [0, 1, 1], SplitConfig(), "x")


def test_k_folds_partition_the_cohort():
    ids, labels = lung1_like()
    folds = kfold_splits(ids, labels, SplitConfig(folds=5))
    assert len(folds) == 5
    tested = [p for fold in folds for p in fold["test"]]
    assert sorted(tested) == sorted(ids)  # each patient tested exactly once
    for fold in folds:
        check_disjoint(fold)
        assert sorted(p for part in fold.values() for p in part) == sorted(ids)


def test_table_one_by_hand():
    split = {"train": ["a", "b", "c", "d"], "validation": ["e", "f"], "test": ["g", "h"]}
    labels = {"a": 0, "b": 1, "c": 1, "d": 1, "e": 0, "f": 1, "g": 1, "h": 1}
    table = split_table(split, labels)
    assert table.to_dict(orient="list") == {
        "split": ["train", "validation", "test"],
        "total": [4, 2, 2],
        "minority_count": [1, 1, 0],
        "minority_percent": [25.0, 50.0, 0.0],
    }


def test_k_folds_do_not_depend_on_input_order():
    ids, labels = lung1_like(n=60, n_alive=10)
    order = np.random.default_rng(0).permutation(len(ids))
    shuffled = kfold_splits([ids[i] for i in order], labels[order], SplitConfig(folds=3))
    assert shuffled == kfold_splits(ids, labels, SplitConfig(folds=3))


def test_changed_label_values_under_the_same_name_are_refused(tmp_path):
    ids, labels = lung1_like()
    path = tmp_path / "splits.json"
    splits_for(path, ids, labels, SplitConfig(), "deadstatus_event")
    relabelled = labels.copy()
    relabelled[:5] = 1 - relabelled[:5]
    with pytest.raises(ValueError, match="label values"):
        splits_for(path, ids, relabelled, SplitConfig(), "deadstatus_event")


def test_labels_must_be_zero_or_one():
    with pytest.raises(ValueError, match="0 and 1"):
        stratified_split(["a", "b", "c"], [1, 2, 2], SplitConfig())
