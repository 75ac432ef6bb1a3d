"""What the network predicts and how it is scored while training: a binary label
(``classification``, two logits, cross-entropy) or survival time (``survival``, one log-risk,
the Cox partial likelihood). The training loop is the same for both."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from nsclc_engine.task_spec import TASKS


class ClassificationTask:
    name = "classification"
    outputs = 2
    score_column = TASKS[name].score_column
    columns = TASKS[name].columns

    def __init__(self, train_labels: Sequence[int], use_class_weights: bool, device):
        import torch

        from nsclc_engine.preprocess.dataset import class_weights

        weights = class_weights(train_labels).to(device) if use_class_weights else None
        self.criterion = torch.nn.CrossEntropyLoss(weight=weights)
        self.device = device

    def batch_loss(self, outputs, targets, patient_ids: Sequence[str]):
        return self.criterion(outputs, targets)

    def state_dict(self) -> dict:
        """What the task carries from batch to batch (nothing: the loss is per batch)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    @staticmethod
    def scores(outputs):
        """The score of each row of the network's outputs: the probability of class 1."""
        import torch

        return torch.softmax(outputs, dim=1)[:, 1]

    def rows(self, outputs, labels: Sequence[int], patient_ids: Sequence[str]) -> list[dict]:
        probabilities = self.scores(outputs).tolist()
        logits = (outputs[:, 1] - outputs[:, 0]).tolist()
        return [
            {"patient_id": p, "y_true": int(y), "y_prob": float(q), "logit": float(z)}
            for p, y, q, z in zip(patient_ids, labels, probabilities, logits, strict=True)
        ]

    def validation_loss(self, frame: pd.DataFrame) -> float:
        import torch

        # cross-entropy depends only on the logit difference, which the rows keep
        logits = torch.tensor(np.stack([-frame.logit / 2, frame.logit / 2], axis=1))
        targets = torch.tensor(frame.y_true.to_numpy())
        with torch.no_grad():
            return float(self.criterion(logits.to(self.device).float(), targets.to(self.device)))

    def epoch_metrics(self, frame: pd.DataFrame, loss: float) -> dict:
        from nsclc_engine.stats.metrics import auc_score, metrics_at_threshold

        at_half = metrics_at_threshold(frame.y_true, frame.y_prob, 0.5)
        return {
            "loss": loss,
            "auc": auc_score(frame.y_true, frame.y_prob),
            **{k: at_half[k] for k in ("accuracy", "f1", "sensitivity", "specificity")},
        }


class SurvivalTask:
    """One output, the log hazard ratio (higher = earlier death); labels are the events.

    The Cox loss (Efron ties) of a batch takes its risk sets from the batch and, with
    ``bank_size`` > 0, from the detached risks of the last ``bank_size`` training patients
    (:class:`~nsclc_engine.survival.RiskBank`): a mini-batch of 4 alone leaves deaths without
    a comparator. Without a bank, batches without an event add nothing (zero loss and
    gradient). The validation loss uses the whole validation split as one risk set.
    """

    name = "survival"
    outputs = 1
    score_column = TASKS[name].score_column
    columns = TASKS[name].columns

    def __init__(self, times: Mapping[str, float], device, bank_size: int = 0):
        from nsclc_engine.stats.survival import RiskBank

        self.times = dict(times)
        self.device = device
        self.bank = RiskBank(bank_size)

    def batch_loss(self, outputs, targets, patient_ids: Sequence[str]):
        import torch

        times = torch.tensor([self.times[p] for p in patient_ids], device=outputs.device)
        return self.bank.loss(outputs[:, 0], times, targets, patient_ids)

    def state_dict(self) -> dict:
        """The Cox risk bank, which carries training risks across batches and epochs."""
        return self.bank.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.bank.load_state_dict(state)

    @staticmethod
    def scores(outputs):
        """The score of each row of the network's outputs: the risk (log hazard ratio)."""
        return outputs[:, 0]

    def rows(self, outputs, labels: Sequence[int], patient_ids: Sequence[str]) -> list[dict]:
        return [
            {"patient_id": p, "risk": float(r), "time_days": self.times[p], "event": int(e)}
            for p, r, e in zip(patient_ids, self.scores(outputs).tolist(), labels, strict=True)
        ]

    def validation_loss(self, frame: pd.DataFrame) -> float:
        import torch

        from nsclc_engine.stats.survival import cox_loss

        return float(
            cox_loss(
                torch.tensor(frame.risk.to_numpy(), dtype=torch.float64),
                torch.tensor(frame.time_days.to_numpy(), dtype=torch.float64),
                torch.tensor(frame.event.to_numpy()),
            )
        )

    def epoch_metrics(self, frame: pd.DataFrame, loss: float) -> dict:
        from nsclc_engine.stats.survival import harrell_c_index

        try:
            c_index = harrell_c_index(frame.time_days, frame.event, frame.risk)
        except ValueError:
            c_index = float("nan")
        return {"loss": loss, "c_index": c_index}


def task_class(name: str) -> type[ClassificationTask] | type[SurvivalTask]:
    """The task called ``name``: its outputs, prediction columns, scores and losses."""
    classes = {"classification": ClassificationTask, "survival": SurvivalTask}
    if name not in classes:
        raise ValueError(f"task {name!r}: choose one of {', '.join(classes)}")
    return classes[name]
