"""Where the engine keeps its outputs; the dashboard reads the same places."""

from __future__ import annotations

import os
import re
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def artifacts_dir() -> Path:
    """Runs, caches and the demo: ``$NSCLC_ARTIFACTS_DIR`` or ``<project>/artifacts``."""
    return Path(os.environ.get("NSCLC_ARTIFACTS_DIR") or PROJECT_ROOT / "artifacts")


def default_cache_dir() -> Path:
    """Preprocessed volumes: ``$NSCLC_CACHE_DIR`` or ``<artifacts>/cache``."""
    return Path(os.environ.get("NSCLC_CACHE_DIR") or artifacts_dir() / "cache")


# query parameters that carry a secret (libpq's password and sslpassword, and the usual others)
SECRET_QUERY_KEYS = frozenset(
    {"password", "passwd", "pwd", "pass", "sslpassword", "secret", "token", "apikey", "api_key"}
)


def shown_url(url: str) -> str:
    """A database URL without its secrets, for pages, reports and logs: the password of
    ``user:password@host`` and the value of every secret query parameter (``?password=``)
    become ``***``; a string that is no URL keeps only what precedes its first ``@`` or ``?``
    hidden."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return re.sub(r"(?i)(://[^:/@]*:)[^@]*@", r"\1***@", re.sub(r"\?.*", "?***", url))
    query = {
        key: "***" if key.lower() in SECRET_QUERY_KEYS else value
        for key, value in parsed.query.items()
    }
    return parsed.set(query=query).render_as_string(hide_password=True).replace("%2A", "*")


def database_url(url: str) -> str:
    """``url`` with the PostgreSQL driver this project installs (psycopg2) where it names
    none: SQLAlchemy 2.1 takes a bare ``postgresql://`` (or ``postgres://``) for psycopg 3,
    which is not installed."""
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare):
            return "postgresql+psycopg2://" + url[len(bare) :]
    return url


REVIEW_DB_FILE = "review.db"  # the review database when $NSCLC_REVIEW_DB names none


def review_database_exists(artifacts: str | os.PathLike) -> bool:
    """Whether there is a review database to read: ``$NSCLC_REVIEW_DB`` is set, or the SQLite
    file of ``artifacts`` exists (without either, nothing was ever flagged)."""
    return (
        bool(os.environ.get("NSCLC_REVIEW_DB", "").strip())
        or (Path(artifacts) / REVIEW_DB_FILE).is_file()
    )
