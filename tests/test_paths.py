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
