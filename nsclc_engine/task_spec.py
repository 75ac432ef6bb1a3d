"""What a task is, for every stage that switches on it: its headline metric (key and name),
the columns of its predictions, its score column, the labels it takes and the network a run
uses when its config names none. A shared module (no torch): training's loss and outputs
(``train.tasks``), evaluation, the search, the pages and the command lines all read this one
table instead of spelling ``"c_index" if survival else "auc"`` where they need it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DEFAULT_NETWORK = "resnet18"  # a run's network where its config names none (old runs)
LABEL_CHOICES = ("os_2y", "deadstatus_event")  # cohort.clinical.LABELS, in the forms' order


@dataclass(frozen=True)
class TaskSpec:
    name: str
    metric_key: str  # the headline metric's key in metrics.json, summaries and reports
    metric_name: str  # as a page or a command line writes it
    score_column: str  # the model's score in predictions.csv (higher = the event)
    columns: tuple[str, ...]  # predictions.csv, in order
    labels: tuple[str, ...]  # the labels a run of this task may take
    default_label: str

    @property
    def validation_metric(self) -> str:
        """The headline metric's column in ``history.jsonl``."""
        return f"val_{self.metric_key}"


TASKS: dict[str, TaskSpec] = {
    "classification": TaskSpec(
        name="classification",
        metric_key="auc",
        metric_name="AUC",
        score_column="y_prob",
        columns=("patient_id", "split", "fold", "y_true", "y_prob", "logit"),
        labels=LABEL_CHOICES,
        default_label="os_2y",
    ),
    "survival": TaskSpec(
        name="survival",
        metric_key="c_index",
        metric_name="C-index",
        score_column="risk",
        columns=("patient_id", "split", "fold", "risk", "time_days", "event"),
        labels=("deadstatus_event",),  # the event; the time is survival_time_days
        default_label="deadstatus_event",
    ),
}


def task_spec(task: str | None) -> TaskSpec:
    """The spec of ``task`` (empty or None: classification, as runs written before survival
    existed); an unknown task is a one-line error naming the choices."""
    if not task:
        return TASKS["classification"]
    if task not in TASKS:
        raise ValueError(f"task {task!r}: choose one of {', '.join(TASKS)}")
    return TASKS[task]


def spec_of(record: dict[str, Any] | None) -> TaskSpec:
    """The spec of a run's config, ``metrics.json``, experiment summary or report: whatever
    carries a ``task`` field (absent: classification)."""
    return task_spec(record.get("task") if record else None)


def metric_of(block: dict[str, Any]) -> TaskSpec:
    """The spec whose headline metric ``block`` holds (a test score saved as ``{"auc": ...}``
    or ``{"c_index": ...}``, without a task field)."""
    found = (spec for spec in TASKS.values() if spec.metric_key in block)
    return next(found, TASKS["classification"])
