"""Where the engine keeps its outputs; the dashboard reads the same places."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def artifacts_dir() -> Path:
    """Runs, caches and the demo: ``$NSCLC_ARTIFACTS_DIR`` or ``<project>/artifacts``."""
    return Path(os.environ.get("NSCLC_ARTIFACTS_DIR") or PROJECT_ROOT / "artifacts")


def default_cache_dir() -> Path:
    """Preprocessed volumes: ``$NSCLC_CACHE_DIR`` or ``<artifacts>/cache``."""
    return Path(os.environ.get("NSCLC_CACHE_DIR") or artifacts_dir() / "cache")


def shown_url(url: str) -> str:
    """A database URL without its password, for pages, reports and logs."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


REVIEW_DB_FILE = "review.db"  # the review database when $NSCLC_REVIEW_DB names none


def review_database_exists(artifacts: str | os.PathLike) -> bool:
    """Whether there is a review database to read: ``$NSCLC_REVIEW_DB`` is set, or the SQLite
    file of ``artifacts`` exists (without either, nothing was ever flagged)."""
    return (
        bool(os.environ.get("NSCLC_REVIEW_DB", "").strip())
        or (Path(artifacts) / REVIEW_DB_FILE).is_file()
    )
