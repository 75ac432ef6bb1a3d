"""Review notes, exclusions and the audit log round trip on SQLite and on a real PostgreSQL."""

import io
import subprocess
import sys

import pandas as pd
import pytest
import sqlalchemy as sa

from nsclc_engine.review import store


def test_a_note_round_trips_with_its_author_time_and_audit_entry(review_db):
    note = store.add_note(
        review_db, "run-a", "LUNG1-007", "demo", "contour_problem", " GTV misses the apex ", "ana"
    )
    found = store.notes(review_db, run_id="run-a", patient_id="LUNG1-007")
    assert found.note_id.tolist() == [note]
    row = found.iloc[0]
    assert (row.flag, row.flag_name, row.text, row.author) == (
        "contour_problem",
        "contour problem",
        "GTV misses the apex",
        "ana",
    )
    assert row.created_at.endswith("+00:00") and pd.isna(row.withdrawn_at)
    assert store.notes(review_db, run_id="run-b").empty
    log = store.audit_log(review_db)
    assert log[["actor", "action", "target"]].to_numpy().tolist() == [
        ["ana", "add_note", "run-a/LUNG1-007"]
    ]


def test_bad_notes_are_refused_with_what_to_fix(review_db):
    with pytest.raises(ValueError, match="flag 'wrong': choose one of contour_problem"):
        store.add_note(review_db, "r", "p", "demo", "wrong", "", "ana")
    with pytest.raises(ValueError, match="needs its author"):
        store.add_note(review_db, "r", "p", "demo", "label_doubt", "", " ")
    with pytest.raises(ValueError, match="keep it under 4000"):
        store.add_note(review_db, "r", "p", "demo", "label_doubt", "x" * 4001, "ana")
    assert store.notes(review_db).empty and store.audit_log(review_db).empty


def test_exclusions_are_per_source_in_force_until_withdrawn(review_db):
    first = store.add_note(review_db, "r1", "P1", "demo", "exclude", "metal artefact", "ana")
    store.add_note(review_db, "r1", "P2", "demo", "teaching_case", "", "ana")
    store.add_note(review_db, "r2", "P3", "/data/lung1", "exclude", "", "ben")
    excluded = store.exclusions(review_db, "demo")
    assert list(excluded) == ["P1"]
    assert "by ana" in excluded["P1"] and "metal artefact" in excluded["P1"]
    assert "note " + str(first) in excluded["P1"]
    assert list(store.exclusions(review_db, "/data/lung1")) == ["P3"]

    store.withdraw_note(review_db, first, "ben")
    assert store.exclusions(review_db, "demo") == {}
    with pytest.raises(ValueError, match="already withdrawn by ben"):
        store.withdraw_note(review_db, first, "ben")
    kept = store.notes(review_db, patient_id="P1").iloc[0]
    assert kept.withdrawn_by == "ben" and kept.text == "metal artefact"  # on record still
    actions = store.audit_log(review_db).action.tolist()
    assert actions == ["withdraw_exclusion", "exclude_patient", "add_note", "exclude_patient"]


def test_the_audit_log_refuses_updates_and_deletes(review_db):
    store.record(review_db, "ana", "launch_job", "run-1", preset="demo")
    engine = store.engine(review_db)
    for statement in ("UPDATE audit_log SET actor = 'eve'", "DELETE FROM audit_log"):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            with engine.begin() as connection:
                connection.exec_driver_sql(statement)
    entry = store.audit_log(review_db).iloc[0]
    assert (entry.actor, entry.action, entry.target) == ("ana", "launch_job", "run-1")
    assert entry.detail == '{"preset": "demo"}'


def test_notes_survive_another_process(review_db):
    """What one process wrote, a fresh process (a restarted server) reads back."""
    store.add_note(review_db, "r", "P9", "demo", "label_doubt", "alive at 2 years?", "ana")
    code = (
        "from nsclc_engine.review import store; import sys; "
        "print(store.notes(sys.argv[1]).text.tolist())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, review_db], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "['alive at 2 years?']"


def test_csv_export_neutralises_spreadsheet_formulas(tmp_path):
    url = f"sqlite:///{tmp_path / 'review.db'}"
    store.add_note(url, "r", "P1", "demo", "label_doubt", "=HYPERLINK(1)", "ana")
    frame = pd.read_csv(io.BytesIO(store.notes_csv(store.notes(url))))
    assert frame.text.tolist() == ["'=HYPERLINK(1)"]
    assert list(frame.columns) == list(store.NOTE_COLUMNS)
    store.dispose(url)


def test_an_unreachable_server_is_one_clear_error():
    url = "postgresql+psycopg2://nobody:secret@127.0.0.1:9/none"
    with pytest.raises(ConnectionError, match="cannot open it") as raised:
        store.engine(url)
    assert "secret" not in str(raised.value)


def test_truncating_the_audit_log_is_refused_on_postgresql(postgres_url, tmp_path):
    import uuid

    name = f"review_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE {name}")
    url = postgres_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        store.record(url, "ana", "launch_job", "run-1")
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            with store.engine(url).begin() as connection:
                connection.exec_driver_sql("TRUNCATE audit_log")
        assert len(store.audit_log(url)) == 1
    finally:
        store.dispose(url)
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE {name}")
        admin.dispose()


def test_concurrent_withdrawals_withdraw_once(review_db):
    from concurrent.futures import ThreadPoolExecutor

    note = store.add_note(review_db, "r", "P1", "demo", "exclude", "", "ana")

    def withdraw(who: str) -> str:
        try:
            store.withdraw_note(review_db, note, who)
        except ValueError:
            return "refused"
        return "withdrew"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(withdraw, [f"user{k}" for k in range(8)]))
    assert outcomes.count("withdrew") == 1
    assert store.audit_log(review_db).action.tolist().count("withdraw_exclusion") == 1


def test_a_database_gone_after_opening_is_one_clear_error(postgres_url):
    import uuid

    name = f"review_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE {name}")
    url = postgres_url.rsplit("/", 1)[0] + f"/{name}"
    store.record(url, "ana", "launch_job")
    with admin.connect() as connection:
        connection.exec_driver_sql(f"DROP DATABASE {name} WITH (FORCE)")
    admin.dispose()
    try:
        with pytest.raises(ConnectionError, match=r"review database .*: notes failed"):
            store.notes(url)
    finally:
        store.dispose(url)


def test_an_unreachable_or_driverless_review_database_is_one_line_without_its_password(
    tmp_path, monkeypatch
):
    """Issue 28 (9): a bare postgresql:// URL raised ModuleNotFoundError (psycopg 3); now it
    takes psycopg2, and a server that is down or a driver that is missing is one line."""
    monkeypatch.setenv("NSCLC_REVIEW_DB", "postgresql://reader:pw1@127.0.0.1:1/review")
    with pytest.raises(ConnectionError) as down:
        store.engine(store.review_url(tmp_path))
    assert "127.0.0.1:1" in str(down.value) and "pw1" not in str(down.value)
    with pytest.raises(ConnectionError, match="no driver") as driverless:
        store.engine("postgresql+nodriver://reader:pw2@127.0.0.1:1/review")
    assert "pw2" not in str(driverless.value)


def test_replace_cannot_rewrite_the_audit_log_and_a_dropped_trigger_returns(review_db):
    """Issue 28 (3): SQLite fires no DELETE trigger on INSERT OR REPLACE unless recursive
    triggers are on, so REPLACE rewrote entry 1; a dropped trigger stayed dropped until the
    next process start."""
    store.record(review_db, "ana", "launch_job", "run-1")
    engine = store.engine(review_db)
    sqlite = engine.dialect.name == "sqlite"
    columns = "audit_log (entry_id, at, actor, action, target, detail)"
    values = "VALUES (1, 'then', 'eve', 'nothing', '', '{}')"
    replace = (  # PostgreSQL's upsert is an UPDATE, which its trigger refuses
        f"INSERT OR REPLACE INTO {columns} {values}"
        if sqlite
        else f"INSERT INTO {columns} {values} ON CONFLICT (entry_id) DO UPDATE SET actor = 'eve'"
    )
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        with engine.begin() as connection:
            connection.exec_driver_sql(replace)
    assert store.audit_log(review_db).iloc[-1].actor == "ana"
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "DROP TRIGGER audit_no_update"
            if sqlite
            else "DROP TRIGGER audit_append_only ON audit_log"
        )
    store.record(review_db, "ana", "cancel_job", "run-1")  # the next entry restores it
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        with engine.begin() as connection:
            connection.exec_driver_sql("UPDATE audit_log SET actor = 'eve'")
    assert set(store.audit_log(review_db).actor) == {"ana"}


def test_a_verdict_supersedes_the_last_and_a_problem_becomes_an_exclusion_once_confirmed(
    review_db,
):
    first = store.add_verdict(review_db, "run-a", "P1", "demo", "agree", "", "rui")
    store.add_verdict(review_db, "run-a", "P2", "demo", "disagree", "calls it too early", "rui")
    problem = store.add_verdict(review_db, "run-a", "P1", "demo", "contour_problem", "apex", "ana")
    every = store.verdicts(review_db, run_id="run-a")
    assert every.verdict_id.tolist()[0] == first and len(every) == 3
    current = store.current_verdicts(every)
    assert dict(zip(current.patient_id, current.verdict, strict=True)) == {
        "P2": "disagree",
        "P1": "contour_problem",
    }
    proposals = store.exclusion_proposals(every)
    assert proposals.verdict_id.tolist() == [problem]
    assert store.exclusions(review_db, "demo") == {}  # a proposal excludes nobody yet
    note = store.confirm_exclusion(review_db, problem, "cai")
    assert "contour problem (verdict 3 by ana): apex" in store.exclusions(review_db, "demo")["P1"]
    assert store.exclusion_proposals(store.verdicts(review_db)).empty
    with pytest.raises(ValueError, match="confirmed already"):
        store.confirm_exclusion(review_db, problem, "cai")
    with pytest.raises(ValueError, match="proposes no exclusion"):
        store.confirm_exclusion(review_db, first, "cai")
    with pytest.raises(ValueError, match="verdict 'maybe': choose one of agree"):
        store.add_verdict(review_db, "run-a", "P1", "demo", "maybe", "", "rui")
    assert store.notes(review_db).note_id.tolist() == [note]  # the refused ones left nothing
    actions = store.audit_log(review_db).action.tolist()
    assert actions == ["exclude_patient", "add_verdict", "add_verdict", "add_verdict"]
