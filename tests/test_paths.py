"""Where the engine keeps its outputs: the environment overrides the defaults."""

from pathlib import Path

from nsclc_engine.paths import PROJECT_ROOT, artifacts_dir, default_cache_dir
from tests.helpers import PROJECT


def test_project_root_is_the_checkout():
    assert PROJECT_ROOT == PROJECT
    assert (PROJECT_ROOT / "nsclc_engine" / "paths.py").is_file()


def test_artifacts_default_to_the_project_folder(monkeypatch):
    monkeypatch.delenv("NSCLC_ARTIFACTS_DIR", raising=False)
    assert artifacts_dir() == PROJECT_ROOT / "artifacts"
    monkeypatch.setenv("NSCLC_ARTIFACTS_DIR", "")  # empty counts as unset
    assert artifacts_dir() == PROJECT_ROOT / "artifacts"


def test_artifacts_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("NSCLC_ARTIFACTS_DIR", str(tmp_path / "elsewhere"))
    assert artifacts_dir() == tmp_path / "elsewhere"
    assert isinstance(artifacts_dir(), Path)


def test_cache_sits_in_the_artifacts_unless_set(monkeypatch, tmp_path):
    monkeypatch.setenv("NSCLC_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    monkeypatch.delenv("NSCLC_CACHE_DIR", raising=False)
    assert default_cache_dir() == tmp_path / "artifacts" / "cache"
    monkeypatch.setenv("NSCLC_CACHE_DIR", str(tmp_path / "fast-disk"))
    assert default_cache_dir() == tmp_path / "fast-disk"


def test_shown_url_hides_every_secret_of_a_url():
    """Issue 28 (4): the password in ``?password=`` (libpq reads it there too) was shown."""
    from nsclc_engine.paths import shown_url

    url = "postgresql+psycopg2://reader:pw1@db.example:5432/studies"
    url += "?password=pw2&sslpassword=pw3&sslmode=require"
    shown = shown_url(url)
    assert not any(secret in shown for secret in ("pw1", "pw2", "pw3"))
    assert "db.example:5432/studies" in shown and "sslmode=require" in shown
    assert shown_url("sqlite:////tmp/optuna.db") == "sqlite:////tmp/optuna.db"
    assert "pw" not in shown_url("not a url://u:pw@host?password=pw")


def test_a_bare_postgresql_url_takes_the_installed_driver():
    """Issue 28 (9): SQLAlchemy 2.1 reads ``postgresql://`` as psycopg 3, not installed."""
    from nsclc_engine.paths import database_url

    assert database_url("postgresql://u:p@h/db") == "postgresql+psycopg2://u:p@h/db"
    assert database_url("postgres://u:p@h/db") == "postgresql+psycopg2://u:p@h/db"
    assert database_url("postgresql+psycopg2://h/db") == "postgresql+psycopg2://h/db"
    assert database_url("sqlite:///x.db") == "sqlite:///x.db"
