import os
import shutil
from pathlib import Path

import pytest


@pytest.fixture()
def own_artifacts(dashboard_artifacts, tmp_path) -> Path:
    """A copy of the finished runs for this test alone: what it saves (a threshold, the
    explain cache, a launched job) stays out of every other test's runs."""
    return copy_runs(dashboard_artifacts, tmp_path)


def copy_runs(artifacts: Path, into: Path) -> Path:
    """``artifacts``' runs copied into ``into / "artifacts"`` (checkpoints hard-linked)."""
    copy = into / "artifacts"
    shutil.copytree(artifacts / "runs", copy / "runs", copy_function=_link_checkpoints)
    return copy


def _link_checkpoints(source: str, target: str) -> None:
    """Checkpoints (hundreds of MB, only ever replaced whole) are hard-linked, the rest copied."""
    if source.endswith(".pt"):
        os.link(source, target)
    else:
        shutil.copy2(source, target)
