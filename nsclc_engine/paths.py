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
