"""The review record of a team: notes and verdicts on a run's patients, the data roots an
admin registered, and an append-only audit log, in one SQL database through SQLAlchemy.

The database is an SQLite file, ``<artifacts>/review.db``, unless ``$NSCLC_REVIEW_DB`` names
another SQLAlchemy URL (``postgresql://user@host/db`` for a server shared by a team). Tables
are created on first use. The audit table refuses UPDATE and DELETE (a trigger on either
database; TRUNCATE too on PostgreSQL), so the log only grows through this module. (Whoever owns
the database can drop a trigger: where that matters, the dashboard's PostgreSQL role may only
INSERT and SELECT on ``audit_log``.)

A note belongs to a run and a patient, and carries the run's data source (``demo`` or the
resolved DICOM folder): an "exclude from cohort" note excludes that patient from the next
cohort built from the same source, until it is withdrawn. A verdict (agree or disagree with
the model, an image or a contour problem) is a reviewer's call on one case of a run; an image
or contour problem proposes an exclusion, which becomes an "exclude" note when a reviewer
confirms it.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from nsclc_engine.config import one_line
from nsclc_engine.paths import REVIEW_DB_FILE, database_url, shown_url

FLAGS = {
    "contour_problem": "contour problem",
    "image_artefact": "image artefact",
    "label_doubt": "label doubt",
    "exclude": "exclude from cohort",
    "teaching_case": "teaching case",
}
EXCLUDE = "exclude"
MAX_TEXT = 4000
VERDICTS = {
    "agree": "agree with the model",
    "disagree": "disagree with the model",
    "image_problem": "image problem",
    "contour_problem": "contour problem",
}
PROPOSES_EXCLUSION = ("image_problem", "contour_problem")  # a reviewer confirms each
VERDICT_COLUMNS = (
    "verdict_id",
    "run_id",
    "patient_id",
    "source",
    "verdict",
    "text",
    "author",
    "created_at",
    "exclusion_note",
)
NOTE_COLUMNS = (
    "note_id",
    "run_id",
    "patient_id",
    "source",
    "flag",
    "text",
    "author",
    "created_at",
    "withdrawn_by",
    "withdrawn_at",
)

metadata = sa.MetaData()
notes_table = sa.Table(
    "review_notes",
    metadata,
    sa.Column("note_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(200), nullable=False, index=True),
    sa.Column("patient_id", sa.String(200), nullable=False, index=True),
    sa.Column("source", sa.String(1000), nullable=False),
    sa.Column("flag", sa.String(40), nullable=False),
    sa.Column("text", sa.Text, nullable=False, default=""),
    sa.Column("author", sa.String(320), nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("withdrawn_by", sa.String(320)),
    sa.Column("withdrawn_at", sa.String(40)),
)
verdicts_table = sa.Table(
    "review_verdicts",
    metadata,
    sa.Column("verdict_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(200), nullable=False, index=True),
    sa.Column("patient_id", sa.String(200), nullable=False, index=True),
    sa.Column("source", sa.String(1000), nullable=False),
    sa.Column("verdict", sa.String(40), nullable=False),
    sa.Column("text", sa.Text, nullable=False, default=""),
    sa.Column("author", sa.String(320), nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("exclusion_note", sa.Integer),  # the "exclude" note that confirmed a proposal
)
audit_table = sa.Table(
    "audit_log",
    metadata,
    sa.Column("entry_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.String(40), nullable=False),
    sa.Column("actor", sa.String(320), nullable=False),
    sa.Column("action", sa.String(60), nullable=False),
    sa.Column("target", sa.String(1000), nullable=False, default=""),
    sa.Column("detail", sa.Text, nullable=False, default="{}"),
)
roots_table = sa.Table(
    "data_roots",
    metadata,
    sa.Column("path", sa.String(1000), primary_key=True),
    sa.Column("added_by", sa.String(320), nullable=False),
    sa.Column("added_at", sa.String(40), nullable=False),
)

_APPEND_ONLY = {
    "sqlite": [
        f"CREATE TRIGGER IF NOT EXISTS audit_no_{verb.lower()} BEFORE {verb} ON audit_log "
        "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"
        for verb in ("UPDATE", "DELETE")
    ],
    "postgresql": [
        "CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger AS $$ BEGIN "
        "RAISE EXCEPTION 'the audit log is append-only'; END $$ LANGUAGE plpgsql",
        "CREATE OR REPLACE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION audit_append_only()",
        "CREATE OR REPLACE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit_log "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()",
    ],
}
_TRIGGERS = {  # the triggers _APPEND_ONLY makes, and how to count those present
    "sqlite": (
        ("audit_no_update", "audit_no_delete"),
        "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_log' "
        "AND name IN ({names})",
    ),
    "postgresql": (
        ("audit_append_only", "audit_no_truncate"),
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'audit_log'::regclass "
        "AND tgname IN ({names})",
    ),
}
_engines: dict[str, sa.Engine] = {}
_lock = threading.Lock()


def review_url(artifacts: str | os.PathLike) -> str:
    """``$NSCLC_REVIEW_DB``, else the SQLite file ``<artifacts>/review.db``."""
    url = os.environ.get("NSCLC_REVIEW_DB", "").strip()
    if url:
        return database_url(url)
    Path(artifacts).mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(artifacts).resolve() / REVIEW_DB_FILE}"


def engine(url: str) -> sa.Engine:
    """One engine per URL and process, its tables created on first use."""
    with _lock:
        if url not in _engines:
            sqlite = url.startswith("sqlite")
            try:
                created = sa.create_engine(
                    url,
                    connect_args={"timeout": 30} if sqlite else {"connect_timeout": 10},
                    pool_pre_ping=not sqlite,
                )
            except (sa.exc.ArgumentError, ImportError) as error:
                raise ConnectionError(
                    f"review database {shown_url(url)}: no driver for it ({one_line(error)}); "
                    "use postgresql+psycopg2://... or sqlite:///..."
                ) from None
            if sqlite:
                # REPLACE deletes the row it replaces: with recursive triggers on, that delete
                # fires the audit log's DELETE trigger (off, SQLite fires none and REPLACE
                # rewrote an entry)
                sa.event.listen(created, "connect", _recursive_triggers)
            try:
                metadata.create_all(created)
                _append_only(created)
            except sa.exc.SQLAlchemyError as error:
                created.dispose()
                raise ConnectionError(
                    f"review database {shown_url(url)}: cannot open it ({type(error).__name__}); "
                    "check $NSCLC_REVIEW_DB and that the server is up"
                ) from None
            _engines[url] = created
        return _engines[url]


def _trigger_count(dialect: str) -> tuple[tuple[str, ...], str]:
    """The append-only triggers of ``dialect`` and the query that counts those present."""
    names, count = _TRIGGERS[dialect]
    return names, count.format(names=", ".join(f"'{name}'" for name in names))


def _append_only(created: sa.Engine) -> None:
    """The audit log's triggers, created once (a worker that loses a race to create them
    finds them made by the other)."""
    dialect = created.dialect.name
    if dialect not in _APPEND_ONLY:
        return
    names, count = _trigger_count(dialect)

    def all_present() -> bool:
        with created.connect() as connection:
            return connection.exec_driver_sql(count).scalar() == len(names)

    if all_present():
        return
    try:
        with created.begin() as connection:
            for statement in _APPEND_ONLY[dialect]:
                connection.exec_driver_sql(statement)
    except sa.exc.DBAPIError:
        if not all_present():
            raise


def _database(function):
    """Database errors after the first connection (a server gone, a locked file) become one
    ``ConnectionError`` naming the database, as opening it does."""

    @functools.wraps(function)
    def wrapped(url: str, *args, **kwargs):
        try:
            return function(url, *args, **kwargs)
        except sa.exc.SQLAlchemyError as error:
            unreachable = isinstance(error, sa.exc.OperationalError | sa.exc.InterfaceError)
            hint = "; check that the server is up and try again" if unreachable else ""
            raise ConnectionError(
                f"review database {shown_url(url)}: {function.__name__} failed "
                f"({type(error).__name__}){hint}"
            ) from None

    return wrapped


def dispose(url: str) -> None:
    """Forget the engine of ``url`` (tests that stop a server)."""
    with _lock:
        found = _engines.pop(url, None)
    if found is not None:
        found.dispose()


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def source_of(run_config: dict) -> str:
    """The data source a run's cohort came from: ``demo`` or the resolved DICOM folder."""
    dicom = run_config.get("dicom") or ""
    return str(Path(dicom).resolve()) if dicom else "demo"


@_database
def record(url: str, actor: str, action: str, target: str = "", **detail) -> None:
    """Append one entry to the audit log: who, when, what."""
    with engine(url).begin() as connection:
        _record(connection, actor, action, target, detail)


def _recursive_triggers(dbapi_connection, _record) -> None:
    dbapi_connection.execute("PRAGMA recursive_triggers = ON")


def _record(connection, actor: str, action: str, target: str, detail: dict) -> None:
    """Append one audit entry on ``connection``, first making the append-only triggers again
    if one was dropped since (in the same transaction: the entry is never written without)."""
    dialect = connection.dialect.name
    if dialect in _APPEND_ONLY:
        names, count = _trigger_count(dialect)
        if connection.exec_driver_sql(count).scalar() != len(names):
            for statement in _APPEND_ONLY[dialect]:
                connection.exec_driver_sql(statement)
    connection.execute(
        audit_table.insert().values(
            at=now(),
            actor=actor,
            action=action,
            target=target,
            detail=json.dumps(detail, sort_keys=True, default=str),
        )
    )


@_database
def audit_log(url: str, limit: int = 500) -> pd.DataFrame:
    """The newest ``limit`` audit entries, newest first."""
    query = sa.select(audit_table).order_by(audit_table.c.entry_id.desc()).limit(limit)
    with engine(url).connect() as connection:
        rows = connection.execute(query).mappings().all()
    return pd.DataFrame(rows, columns=[c.name for c in audit_table.columns])


def _checked_text(text: str, author: str, what: str = "note") -> str:
    if not author.strip():
        raise ValueError(f"a {what} needs its author")
    text = text.strip()
    if len(text) > MAX_TEXT:
        raise ValueError(f"the {what} has {len(text)} characters; keep it under {MAX_TEXT}")
    return text


@_database
def add_note(
    url: str,
    run_id: str,
    patient_id: str,
    source: str,
    flag: str,
    text: str,
    author: str,
) -> int:
    """Save a note and its audit entry in one transaction; returns the note's id."""
    if flag not in FLAGS:
        raise ValueError(f"flag {flag!r}: choose one of {', '.join(FLAGS)}")
    text = _checked_text(text, author)
    with engine(url).begin() as connection:
        return _insert_note(connection, run_id, patient_id, source, flag, text, author)


def _insert_note(connection, run_id, patient_id, source, flag, text, author) -> int:
    note_id = connection.execute(
        notes_table.insert().values(
            run_id=run_id,
            patient_id=patient_id,
            source=source,
            flag=flag,
            text=text,
            author=author,
            created_at=now(),
        )
    ).inserted_primary_key[0]
    action = "exclude_patient" if flag == EXCLUDE else "add_note"
    _record(connection, author, action, f"{run_id}/{patient_id}", {"note": note_id})
    return int(note_id)


@_database
def add_verdict(
    url: str,
    run_id: str,
    patient_id: str,
    source: str,
    verdict: str,
    text: str,
    author: str,
) -> int:
    """Record a reviewer's verdict on a case of a run (with an optional note) and its audit
    entry in one transaction; returns its id. A later verdict on the same case by anyone
    supersedes it (:func:`current_verdicts`); each stays on record."""
    if verdict not in VERDICTS:
        raise ValueError(f"verdict {verdict!r}: choose one of {', '.join(VERDICTS)}")
    text = _checked_text(text, author, "verdict")
    with engine(url).begin() as connection:
        verdict_id = connection.execute(
            verdicts_table.insert().values(
                run_id=run_id,
                patient_id=patient_id,
                source=source,
                verdict=verdict,
                text=text,
                author=author,
                created_at=now(),
            )
        ).inserted_primary_key[0]
        target = f"{run_id}/{patient_id}"
        _record(connection, author, "add_verdict", target, {"verdict": verdict, "id": verdict_id})
    return int(verdict_id)


@_database
def verdicts(url: str, run_id: str | None = None, patient_id: str | None = None) -> pd.DataFrame:
    """Every verdict, oldest first, optionally of one run and patient."""
    query = sa.select(verdicts_table).order_by(verdicts_table.c.verdict_id)
    for column, value in (("run_id", run_id), ("patient_id", patient_id)):
        if value is not None:
            query = query.where(verdicts_table.c[column] == value)
    with engine(url).connect() as connection:
        rows = connection.execute(query).mappings().all()
    frame = pd.DataFrame(rows, columns=list(VERDICT_COLUMNS))
    frame["verdict_name"] = frame.verdict.map(VERDICTS)
    return frame


def current_verdicts(frame: pd.DataFrame) -> pd.DataFrame:
    """The newest verdict on each case (run and patient) of ``frame`` (:func:`verdicts`)."""
    return frame.drop_duplicates(["run_id", "patient_id"], keep="last").reset_index(drop=True)


def exclusion_proposals(frame: pd.DataFrame) -> pd.DataFrame:
    """The current verdicts (of ``frame``) that propose an exclusion and await a reviewer's
    confirmation."""
    current = current_verdicts(frame)
    waiting = current.verdict.isin(PROPOSES_EXCLUSION) & current.exclusion_note.isna()
    return current[waiting].reset_index(drop=True)


@_database
def confirm_exclusion(url: str, verdict_id: int, by: str) -> int:
    """A reviewer confirms the exclusion a verdict proposed: an "exclude from cohort" note on
    the case (the verdict's words, with its author), linked to the verdict, in one
    transaction; returns the note's id. Confirmed once only."""
    with engine(url).begin() as connection:
        row = (
            connection.execute(
                sa.select(verdicts_table).where(verdicts_table.c.verdict_id == verdict_id)
            )
            .mappings()
            .first()
        )
        if row is None:
            raise ValueError(f"verdict {verdict_id}: no such verdict")
        if row["verdict"] not in PROPOSES_EXCLUSION:
            raise ValueError(f"verdict {verdict_id} ({row['verdict']}) proposes no exclusion")
        said = f": {row['text']}" if row["text"] else ""
        text = _checked_text(
            f"{VERDICTS[row['verdict']]} (verdict {verdict_id} by {row['author']}){said}", by
        )
        note_id = _insert_note(
            connection, row["run_id"], row["patient_id"], row["source"], EXCLUDE, text, by
        )
        changed = connection.execute(
            verdicts_table.update()
            .where(
                verdicts_table.c.verdict_id == verdict_id,
                verdicts_table.c.exclusion_note.is_(None),
            )
            .values(exclusion_note=note_id)
        ).rowcount
        if not changed:  # confirmed a moment ago by someone else: this transaction rolls back
            raise ValueError(f"verdict {verdict_id}: its exclusion is confirmed already")
    return note_id


@_database
def withdraw_note(url: str, note_id: int, by: str) -> None:
    """Withdraw a note (an exclusion stops applying); the note itself stays on record."""
    with engine(url).begin() as connection:
        changed = connection.execute(
            notes_table.update()
            .where(notes_table.c.note_id == note_id, notes_table.c.withdrawn_at.is_(None))
            .values(withdrawn_by=by, withdrawn_at=now())
        ).rowcount
        row = (
            connection.execute(sa.select(notes_table).where(notes_table.c.note_id == note_id))
            .mappings()
            .first()
        )
        if row is None:
            raise ValueError(f"note {note_id}: no such note")
        if not changed:  # withdrawn already, perhaps a moment ago by someone else
            raise ValueError(f"note {note_id}: already withdrawn by {row['withdrawn_by']}")
        action = "withdraw_exclusion" if row["flag"] == EXCLUDE else "withdraw_note"
        target = f"{row['run_id']}/{row['patient_id']}"
        _record(connection, by, action, target, {"note": note_id})


@_database
def notes(
    url: str,
    run_id: str | None = None,
    patient_id: str | None = None,
    source: str | None = None,
) -> pd.DataFrame:
    """Notes, oldest first, optionally of one run, patient and source."""
    query = sa.select(notes_table).order_by(notes_table.c.note_id)
    for column, value in (("run_id", run_id), ("patient_id", patient_id), ("source", source)):
        if value is not None:
            query = query.where(notes_table.c[column] == value)
    with engine(url).connect() as connection:
        rows = connection.execute(query).mappings().all()
    frame = pd.DataFrame(rows, columns=list(NOTE_COLUMNS))
    frame["flag_name"] = frame.flag.map(FLAGS)
    return frame


def exclusions(url: str, source: str) -> dict[str, str]:
    """Patient -> why, for the source's "exclude from cohort" notes in force
    (:func:`exclusions_in` of its notes)."""
    return exclusions_in(notes(url, source=source))


def exclusions_in(frame: pd.DataFrame) -> dict[str, str]:
    """Patient -> why, for the "exclude from cohort" notes in force among ``frame`` (one line
    each: the reviewer, the date and the note; several notes on a patient are joined)."""
    frame = frame[(frame.flag == EXCLUDE) & frame.withdrawn_at.isna()]
    found: dict[str, list[str]] = {}
    for row in frame.itertuples():
        said = f": {' '.join(row.text.split())}" if row.text else ""
        found.setdefault(row.patient_id, []).append(
            f"excluded on review by {row.author} on {row.created_at[:10]} "
            f"(note {row.note_id}, run {row.run_id}){said}"
        )
    return {patient: "; ".join(lines) for patient, lines in sorted(found.items())}


def notes_csv(frame: pd.DataFrame) -> bytes:
    """Notes as CSV for download (cells that a spreadsheet would run as a formula are
    prefixed with a quote)."""
    safe = frame[list(NOTE_COLUMNS)].astype(object).where(frame[list(NOTE_COLUMNS)].notna(), "")
    safe = safe.map(lambda v: f"'{v}" if isinstance(v, str) and v and v[0] in "=+-@\t\r" else v)
    buffer = io.StringIO()
    safe.to_csv(buffer, index=False, quoting=csv.QUOTE_MINIMAL)
    return buffer.getvalue().encode()


@_database
def registered_roots(url: str) -> list[str]:
    with engine(url).connect() as connection:
        return list(connection.execute(sa.select(roots_table.c.path)).scalars())


@_database
def register_root(url: str, path: str, by: str) -> None:
    """Register a data root (admin); audited."""
    try:
        with engine(url).begin() as connection:
            connection.execute(roots_table.insert().values(path=path, added_by=by, added_at=now()))
            _record(connection, by, "register_root", path, {})
    except sa.exc.IntegrityError:
        pass  # registered already


@_database
def remove_root(url: str, path: str, by: str) -> None:
    with engine(url).begin() as connection:
        connection.execute(roots_table.delete().where(roots_table.c.path == path))
        _record(connection, by, "remove_root", path, {})
