"""The two training tasks on four hand-made network outputs: prediction rows, the (class-
weighted) cross-entropy by hand, the validation loss from the rows, and the epoch metrics.
The survival task's Cox loss and risk bank are checked in tests/stats/test_cox_loss.py."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from nsclc_engine.stats.survival import harrell_c_index
from nsclc_engine.task_spec import TASKS
from nsclc_engine.train.tasks import ClassificationTask, SurvivalTask, task_class

IDS = ["a", "b", "c", "d"]
# logits of class 1 over class 0: 0.5, 2, -3, 1
OUTPUTS = torch.tensor([[0.0, 0.5], [1.0, 3.0], [2.0, -1.0], [0.0, 1.0]])
TARGETS = torch.tensor([1, 1, 0, 0])


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def cross_entropy_by_hand(outputs, targets, weights=(1.0, 1.0)) -> float:
    """sum_i w_{y_i} (log sum_k exp o_ik - o_i,y_i) / sum_i w_{y_i}: torch's weighted mean."""
    total = norm = 0.0
    for row, y in zip(outputs.tolist(), targets.tolist(), strict=True):
        total += weights[y] * (math.log(sum(math.exp(o) for o in row)) - row[y])
        norm += weights[y]
    return total / norm


def test_task_class_names_each_task():
    assert [task_class(name) for name in TASKS] == [ClassificationTask, SurvivalTask]
    assert (ClassificationTask.outputs, SurvivalTask.outputs) == (2, 1)
    with pytest.raises(ValueError, match="task 'regression': choose one of"):
        task_class("regression")


def test_classification_rows_hold_the_probability_and_logit_of_class_1():
    task = ClassificationTask([0, 1], use_class_weights=False, device="cpu")
    rows = task.rows(OUTPUTS, TARGETS.tolist(), IDS)
    assert [(r["patient_id"], r["y_true"]) for r in rows] == list(
        zip(IDS, [1, 1, 0, 0], strict=True)
    )
    assert [r["logit"] for r in rows] == pytest.approx([0.5, 2.0, -3.0, 1.0])
    assert [r["y_prob"] for r in rows] == pytest.approx([sigmoid(z) for z in (0.5, 2, -3, 1)])
    assert task.score_column == "y_prob" and set(rows[0]) <= set(task.columns)


def test_class_weights_are_inverse_frequency_of_the_training_labels():
    # three negatives, one positive: n / (2 n_c) = 4/6 and 4/2
    task = ClassificationTask([0, 0, 0, 1], use_class_weights=True, device="cpu")
    assert task.criterion.weight.tolist() == pytest.approx([2 / 3, 2.0])
    weighted = task.batch_loss(OUTPUTS, TARGETS, IDS).item()
    assert weighted == pytest.approx(cross_entropy_by_hand(OUTPUTS, TARGETS, (2 / 3, 2.0)))
    plain = ClassificationTask([0, 0, 0, 1], use_class_weights=False, device="cpu")
    unweighted = plain.batch_loss(OUTPUTS, TARGETS, IDS).item()
    assert unweighted == pytest.approx(cross_entropy_by_hand(OUTPUTS, TARGETS))
    assert weighted != pytest.approx(unweighted, rel=1e-3)  # the weights change the loss


@pytest.mark.parametrize("use_class_weights", [False, True])
def test_validation_loss_from_the_rows_equals_the_loss_on_the_outputs(use_class_weights):
    # cross-entropy depends only on the logit difference, which is all the rows keep
    task = ClassificationTask([0, 0, 0, 1], use_class_weights, device="cpu")
    frame = pd.DataFrame(task.rows(OUTPUTS, TARGETS.tolist(), IDS))
    expected = task.batch_loss(OUTPUTS, TARGETS, IDS).item()
    assert task.validation_loss(frame) == pytest.approx(expected, rel=1e-6)


def test_classification_epoch_metrics_by_hand():
    task = ClassificationTask([0, 1], use_class_weights=False, device="cpu")
    frame = pd.DataFrame(task.rows(OUTPUTS, TARGETS.tolist(), IDS))
    metrics = task.epoch_metrics(frame, loss=0.25)
    # positives at 0.62 and 0.88, negatives at 0.05 and 0.73: 3 of 4 pairs ordered
    assert metrics["auc"] == pytest.approx(0.75) == roc_auc_score(frame.y_true, frame.y_prob)
    # at 0.5, a b d are called positive: TP 2, FP 1, TN 1, FN 0
    assert metrics == pytest.approx(
        {
            "loss": 0.25,
            "auc": 0.75,
            "accuracy": 3 / 4,
            "f1": 4 / 5,
            "sensitivity": 1.0,
            "specificity": 1 / 2,
        }
    )


TIMES = {"a": 100.0, "b": 200.0, "c": 300.0, "d": 400.0}
EVENTS = [1, 1, 0, 1]  # c censored
RISKS = torch.tensor([[4.0], [1.0], [2.0], [3.0]])


def test_survival_rows_hold_risk_time_and_event():
    task = SurvivalTask(TIMES, "cpu")
    rows = task.rows(RISKS, EVENTS, IDS)
    assert rows == [
        {"patient_id": "a", "risk": 4.0, "time_days": 100.0, "event": 1},
        {"patient_id": "b", "risk": 1.0, "time_days": 200.0, "event": 1},
        {"patient_id": "c", "risk": 2.0, "time_days": 300.0, "event": 0},
        {"patient_id": "d", "risk": 3.0, "time_days": 400.0, "event": 1},
    ]
    assert task.score_column == "risk" and set(rows[0]) <= set(task.columns)


def test_survival_epoch_c_index_is_harrells():
    task = SurvivalTask(TIMES, "cpu")
    frame = pd.DataFrame(task.rows(RISKS, EVENTS, IDS))
    metrics = task.epoch_metrics(frame, loss=1.5)
    # comparable pairs: a before b, c, d (risk 4 above all: 3 concordant); b before c, d
    # (risk 1 below both: 0); d has no later patient -> 3 / 5
    assert metrics == {"loss": 1.5, "c_index": pytest.approx(0.6)}
    assert metrics["c_index"] == harrell_c_index(frame.time_days, frame.event, frame.risk)


def test_survival_epoch_c_index_is_nan_without_a_comparable_pair():
    task = SurvivalTask(TIMES, "cpu")
    frame = pd.DataFrame(task.rows(RISKS, [0, 0, 0, 0], IDS))  # everyone censored
    assert np.isnan(task.epoch_metrics(frame, loss=0.0)["c_index"])
