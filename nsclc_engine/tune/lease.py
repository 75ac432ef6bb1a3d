"""A lease in a study's own database: one holder at a time across machines, kept alive by a
heartbeat, taken over once its holder has been silent for the grace period.

The study's workers share nothing but its storage (SQLite or PostgreSQL), so the one action a
study must do exactly once, scoring the best trial's test part, is guarded there: a row of the
table ``nsclc_leases`` per lease name. Taking a lease is an ``INSERT`` (the primary key lets one
worker win) or, when the row is stale, an ``UPDATE`` conditional on the token the taker read
(compare and swap: of two workers taking over together, one updates the row and the other
finds its token gone). Times are the database server's clock, as Optuna's heartbeats are.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

log = logging.getLogger(__name__)

METADATA = sa.MetaData()
LEASES = sa.Table(
    "nsclc_leases",
    METADATA,
    sa.Column("name", sa.String(512), primary_key=True),
    sa.Column("holder", sa.String(512), nullable=False),
    sa.Column("token", sa.String(64), nullable=False),
    sa.Column("beat", sa.DateTime, nullable=False),
)


def _now(connection) -> datetime:
    return connection.execute(sa.select(sa.func.now())).scalar_one().replace(tzinfo=None)


def _create_table(engine: sa.Engine) -> None:
    try:
        METADATA.create_all(engine, checkfirst=True)
    except SQLAlchemyError:  # another worker created it at the same moment
        METADATA.create_all(engine, checkfirst=True)


def try_take(engine: sa.Engine, name: str, holder: str, grace_s: float) -> str | None:
    """The lease's new token when ``holder`` now holds ``name`` (free, or its holder silent
    for over ``grace_s`` seconds), else None."""
    _create_table(engine)
    token = secrets.token_hex(16)
    try:
        with engine.begin() as connection:
            connection.execute(
                LEASES.insert().values(name=name, holder=holder, token=token, beat=_now(connection))
            )
        return token
    except IntegrityError:
        pass
    with engine.begin() as connection:
        row = connection.execute(sa.select(LEASES).where(LEASES.c.name == name)).first()
        if row is None:  # released in between: try again from the start
            return None
        now = _now(connection)
        if now - row.beat <= timedelta(seconds=grace_s):
            return None
        taken = connection.execute(
            LEASES.update()
            .where(LEASES.c.name == name, LEASES.c.token == row.token)
            .values(holder=holder, token=token, beat=now)
        )
        if taken.rowcount != 1:
            return None
    log.warning("lease %s: %s fell silent; %s takes it over", name, row.holder, holder)
    return token


def renew(engine: sa.Engine, name: str, token: str) -> bool:
    """Record a heartbeat; False when the lease is no longer this token's."""
    with engine.begin() as connection:
        beat = _now(connection)
        renewed = connection.execute(
            LEASES.update().where(LEASES.c.name == name, LEASES.c.token == token).values(beat=beat)
        )
        return renewed.rowcount == 1


def release(engine: sa.Engine, name: str, token: str) -> None:
    with engine.begin() as connection:
        connection.execute(LEASES.delete().where(LEASES.c.name == name, LEASES.c.token == token))


def holder_of(engine: sa.Engine, name: str) -> str | None:
    _create_table(engine)
    with engine.connect() as connection:
        row = connection.execute(sa.select(LEASES.c.holder).where(LEASES.c.name == name)).first()
    return None if row is None else row.holder


@contextmanager
def beating(action: Callable[[], bool | None], seconds: float, what: str) -> Iterator[None]:
    """Run ``action`` every ``seconds`` in a thread while the block runs (a heartbeat); a
    database blip is logged and the next beat tries again; ``action`` returning False stops
    the beats."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(seconds):
            try:
                if action() is False:
                    return
            except SQLAlchemyError as error:
                log.warning("%s: heartbeat failed: %s", what, error)

    thread = threading.Thread(target=beat, name=what, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@contextmanager
def lease(engine: sa.Engine, name: str, holder: str, heartbeat_s: float) -> Iterator[bool]:
    """Hold ``name`` while the block runs, renewing it every ``heartbeat_s`` seconds (a holder
    silent for twice that loses it); yields False, holding nothing, when another holds it."""
    token = try_take(engine, name, holder, 2 * heartbeat_s)
    if token is None:
        yield False
        return

    def renewed() -> bool:
        if renew(engine, name, token):
            return True
        log.warning("lease %s: taken over while %s held it", name, holder)
        return False

    try:
        with beating(renewed, heartbeat_s, f"lease {name}"):
            yield True
    finally:
        release(engine, name, token)
