"""One table of what a task is: every switch on the task reads it, and it agrees with the
labels the cohort defines and the configs training resolves."""

import pytest

from nsclc_engine.cohort.clinical import LABELS
from nsclc_engine.evaluate.figures import training_curves_figure
from nsclc_engine.evaluate.yardstick import metric_key
from nsclc_engine.task_spec import LABEL_CHOICES, TASKS, metric_of, spec_of, task_spec
from nsclc_engine.train.config import TrainConfig


def test_each_task_names_its_metric_columns_and_labels():
    assert (task_spec("survival").metric_key, task_spec("survival").metric_name) == (
        "c_index",
        "C-index",
    )
    assert task_spec("") == task_spec(None) == spec_of({}) == TASKS["classification"]
    assert metric_key({"task": "survival"}) == "c_index" and metric_key({}) == "auc"
    assert metric_of({"c_index": {"c_index": 0.6}}).name == "survival"
    with pytest.raises(ValueError, match="task 'regression': choose one of classification, "):
        task_spec("regression")
    assert set(LABEL_CHOICES) == set(LABELS)
    for spec in TASKS.values():  # what a config of the task resolves to
        config = TrainConfig(task=spec.name)
        assert config.label == spec.default_label and config.label in spec.labels
        assert spec.score_column in spec.columns


def test_the_training_curves_name_the_runs_metric():
    survival = [{"fold": 0, "epoch": 1, "train_loss": 1, "val_loss": 1, "val_c_index": 0.6}]
    classification = [{"fold": 0, "epoch": 1, "train_loss": 1, "val_loss": 1, "val_auc": 0.7}]
    assert "Validation C-index" in str(training_curves_figure(survival).layout.annotations)
    assert "Validation AUC" in str(training_curves_figure(classification).layout.annotations)
