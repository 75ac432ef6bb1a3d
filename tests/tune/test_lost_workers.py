"""A search that survives a lost machine: heartbeats, stale trials failed and retried once,
the scoring of the best trial's test part leased in the study's storage."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import optuna
import pandas as pd
import pytest
import sqlalchemy as sa
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from nsclc_engine.dashboard.studies import lost_worker_lines, trials_shown
from nsclc_engine.tune.heartbeat import (
    ask_and_tell_heartbeats,
    recover_lost_trials,
    stale_trials,
    waiting_retries,
)
from nsclc_engine.tune.lease import LEASES, holder_of, lease, try_take
from nsclc_engine.tune.study import TuneConfig, load_study, open_study, study_table
from tests.tune.test_tune import SPACE


def silence(engine: sa.Engine, table: str, column: str) -> None:
    """Move every heartbeat in ``table`` an hour into the past: its holder fell silent."""
    with engine.begin() as connection:
        rows = connection.execute(sa.text(f"SELECT rowid, {column} FROM {table}")).all()
        for rowid, beat in rows:
            past = pd.Timestamp(beat) - pd.Timedelta(hours=1)
            connection.execute(
                sa.text(f"UPDATE {table} SET {column} = :past WHERE rowid = :rowid"),
                {"past": past.to_pydatetime(), "rowid": rowid},
            )


def test_a_lease_has_one_holder_and_is_taken_over_once_its_holder_is_silent(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path}/leases.db")
    with lease(engine, "score", "a", heartbeat_s=60) as held:
        assert held and holder_of(engine, "score") == "a"
        with lease(engine, "score", "b", heartbeat_s=60) as also:
            assert not also  # a holder that beats keeps it
    assert holder_of(engine, "score") is None  # released at the end of the block
    assert try_take(engine, "score", "a", grace_s=120) is not None  # then a is lost
    assert try_take(engine, "score", "b", grace_s=120) is None
    silence(engine, "nsclc_leases", "beat")
    first = try_take(engine, "score", "b", grace_s=120)
    second = try_take(engine, "score", "c", grace_s=120)  # takers at once: one wins
    assert first is not None and second is None and holder_of(engine, "score") == "b"
    with engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(LEASES)).scalar() == 1


def test_a_silent_trial_is_shown_stale_then_failed_and_retried_once(tmp_path):
    config = TuneConfig(trials=0, study="lost", preset="tiny", heartbeat=1)
    study = open_study(config, tmp_path)
    with ask_and_tell_heartbeats():
        trial = study.ask({"lr": FloatDistribution(1e-5, 1e-2, log=True)})
    trial.set_user_attr("worker", "gone:123")
    study._storage.record_heartbeat(trial._trial_id)
    url = f"sqlite:///{tmp_path.resolve()}/studies/optuna.db"
    assert stale_trials(load_study(url, "lost")) == set()  # beating: running
    silence(sa.create_engine(url), "trial_heartbeats", "heartbeat")
    shown = load_study(url, "lost")
    assert stale_trials(shown) == {0}
    table = study_table(shown)
    assert table.state.tolist() == ["stale"]
    assert "silent for over 2 s" in lost_worker_lines(table, 1)[0]
    assert recover_lost_trials(study) == [0]
    assert recover_lost_trials(study) == []  # failed and retried once, by one worker
    (retry,) = study.get_trials(states=(TrialState.WAITING,))
    assert waiting_retries(study) == [retry.number] == [1]
    assert retry.params == trial.params and retry.system_attrs["failed_trial"] == 0
    table = study_table(load_study(url, "lost"))
    assert table.state.tolist() == ["fail", "waiting"]
    assert table["retried as"].tolist()[0] == 1 and table["retry of"].tolist()[1] == 0
    shown = trials_shown(table)  # as the page shows it: no "None" in an empty cell
    assert shown["retried as"].tolist() == ["1", ""] and shown["retry of"].tolist() == ["", "0"]
    assert "(gone:123) fell silent; retried once as trial 1 (waiting)" in " ".join(
        lost_worker_lines(table, 1)
    )


@pytest.mark.slow
def test_a_worker_killed_mid_trial_on_postgresql_is_retried_and_the_study_finishes(
    postgres_url, tiny_source, tmp_path
):
    """Two single-thread workers on one study in PostgreSQL, given the plain URL users type;
    one is killed (SIGKILL) while its trial runs. The other, or a worker started after the
    grace period, finishes: the killed trial failed and retried once, no trial left running,
    every trial counted once, the best trial's test part scored once."""
    plain = postgres_url.replace("postgresql+psycopg2://", "postgresql://")
    space = tmp_path / "space.json"
    space.write_text(json.dumps(SPACE))
    artifacts = tmp_path / "artifacts"
    command = [sys.executable, "-m", "nsclc_engine.tune", "--study", "chaos", "--storage", plain]
    command += ["--preset", "tiny", "--space", str(space), "--pruner", "none", "--no-queue"]
    command += ["--dicom", str(tiny_source / "dicom"), "--clinical"]
    command += [str(tiny_source / "clinical.csv"), "--artifacts", str(artifacts)]
    command += ["--heartbeat", "1", "--threads", "1"]

    def worker(trials: int) -> subprocess.Popen:
        return subprocess.Popen(
            [*command, "--trials", str(trials)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    doomed, survivor = worker(1), worker(1)
    name = f"{socket.gethostname()}:{doomed.pid}"
    deadline = time.monotonic() + 300
    lost = None
    while lost is None:  # the doomed worker's trial, running and beating
        assert time.monotonic() < deadline and doomed.poll() is None, "no trial started"
        try:
            running = optuna.load_study(study_name="chaos", storage=postgres_url).get_trials(
                states=(TrialState.RUNNING,)
            )
            lost = next((t.number for t in running if t.user_attrs.get("worker") == name), None)
        except KeyError:  # the study is not created yet
            pass
        time.sleep(0.2)
    os.killpg(doomed.pid, signal.SIGKILL)
    doomed.wait()
    output = survivor.communicate(timeout=600)[0].decode()
    assert survivor.returncode == 0, output[-3000:]
    study = load_study(postgres_url, "chaos")
    deadline = time.monotonic() + 60
    while study.trials[lost].state == TrialState.RUNNING and lost not in stale_trials(study):
        assert time.monotonic() < deadline, "the killed worker's trial never went stale"
        time.sleep(0.5)  # the survivor ended within the grace period: wait for it to pass
    late = worker(0)  # runs a retry still waiting, if any, and scores the best if not done
    output += late.communicate(timeout=600)[0].decode()
    assert late.returncode == 0, output[-3000:]

    trials = optuna.load_study(study_name="chaos", storage=postgres_url).get_trials()
    states = {t.number: t.state for t in trials}
    retries = [t for t in trials if t.system_attrs.get("failed_trial") is not None]
    assert states[lost] == TrialState.FAIL
    assert [t.system_attrs["failed_trial"] for t in retries] == [lost]  # retried once
    assert sorted(states.values()) == sorted([TrialState.FAIL] + [TrialState.COMPLETE] * 2)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len({t.user_attrs["run_id"] for t in complete}) == 2
    for trial in complete:  # each worker pinned to one thread (--threads 1)
        config = json.loads(
            (artifacts / "runs" / trial.user_attrs["run_id"] / "config.json").read_text()
        )
        assert config["resolved"]["threads"] == 1
    report = json.loads((artifacts / "studies" / "chaos.json").read_text())
    assert (report["trials"]["complete"], report["trials"]["fail"]) == (2, 1)
    assert report["trials"]["running"] == report["trials"]["waiting"] == 0
    best = max(complete, key=lambda t: t.value).user_attrs["run_id"]
    scored = [
        t.user_attrs["run_id"]
        for t in complete
        if "test"
        in set(pd.read_csv(artifacts / "runs" / t.user_attrs["run_id"] / "predictions.csv").split)
    ]
    assert scored == [best] and report["test"]["run_id"] == best
    assert "postgres@127.0.0.1" in output and "password" not in output
