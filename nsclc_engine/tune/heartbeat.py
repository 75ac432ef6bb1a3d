"""Lost workers: a search's trials beat in the study's storage, and any worker fails the
trials whose worker fell silent and runs their settings again once.

Optuna's heartbeat (``RDBStorage(heartbeat_interval=..., grace_period=...,
heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1))``) runs only
inside ``study.optimize``; a worker here asks and tells, so it records each trial's heartbeat
itself, from ask to tell (:func:`trial_heartbeat`), and calls Optuna's ``fail_stale_trials``
when it starts, between trials and before it reports (:func:`recover_lost_trials`).
"""

from __future__ import annotations

import logging
import os
import socket
import warnings
from contextlib import contextmanager

from nsclc_engine.tune.lease import beating

log = logging.getLogger(__name__)


@contextmanager
def ask_and_tell_heartbeats():
    """Optuna warns that heartbeats are experimental and meant for ``optimize``; this module
    drives them by hand for its ask-and-tell trials (:func:`trial_heartbeat`)."""
    from optuna.exceptions import ExperimentalWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        warnings.filterwarnings("ignore", "Heartbeat of storage is supposed to be used")
        yield


def worker_name() -> str:
    """This worker, as trials and leases name it: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


def recover_lost_trials(study) -> list[int]:
    """Fail the running trials whose worker fell silent (no heartbeat for the grace period)
    and queue each one's parameters again once; returns the numbers of the trials failed now
    by this worker (another worker failing one at the same moment wins it alone)."""
    import optuna
    from optuna.trial import TrialState

    before = {t.number for t in study.get_trials(states=(TrialState.RUNNING,), deepcopy=False)}
    with ask_and_tell_heartbeats():
        optuna.storages.fail_stale_trials(study)
    retried = {
        t.system_attrs.get("retry_history", [None])[-1]: t.number
        for t in study.get_trials(deepcopy=False)
        if t.system_attrs.get("failed_trial") is not None
    }
    lost = sorted(
        t.number
        for t in study.get_trials(states=(TrialState.FAIL,), deepcopy=False)
        if t.number in before and t.number in retried
    )
    for number in lost:
        log.warning(
            "trial %d's worker fell silent: failed, its parameters queued again as trial %d",
            number,
            retried[number],
        )
    return lost


def waiting_retries(study) -> list[int]:
    """The retries of lost trials still waiting for a worker."""
    from optuna.trial import TrialState

    return [
        t.number
        for t in study.get_trials(states=(TrialState.WAITING,), deepcopy=False)
        if t.system_attrs.get("failed_trial") is not None
    ]


@contextmanager
def trial_heartbeat(study, trial, seconds: int):
    """Record ``trial``'s heartbeat in the storage now and every ``seconds`` while the block
    runs (from ask to tell: waiting for the device, training, scoring its validation part)."""
    storage = study._storage  # Optuna's heartbeat API is the storage's (optimize() uses it so)
    storage.record_heartbeat(trial._trial_id)
    with beating(lambda: storage.record_heartbeat(trial._trial_id), seconds, "trial heartbeat"):
        yield


def stale_trials(study) -> set[int]:
    """The numbers of the running trials silent for the grace period: their worker is lost
    (the next worker to start or to finish a trial fails and retries them)."""
    from optuna.storages._heartbeat import is_heartbeat_enabled
    from optuna.trial import TrialState

    storage = study._storage
    if not is_heartbeat_enabled(storage):
        return set()
    ids = set(storage._get_stale_trial_ids(study._study_id))
    running = study.get_trials(states=(TrialState.RUNNING,), deepcopy=False)
    return {t.number for t in running if t._trial_id in ids}


def beat_every(storage, heartbeat: int) -> None:
    """Judge ``storage``'s trials by the study's heartbeat (stale after twice it), whatever
    the storage was opened with: every worker and page must judge staleness alike."""
    storage.heartbeat_interval, storage.grace_period = heartbeat, 2 * heartbeat
