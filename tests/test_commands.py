"""Every command the README gives runs as written (``python -m nsclc_engine.<stage>``), and
each console script in pyproject.toml names a callable ``main``."""

import importlib
import subprocess
import sys
import tomllib

import pytest

from tests.helpers import PROJECT

COMMANDS = ("train", "evaluate", "cohort", "preprocess", "synth", "demo", "honesty", "validate")
COMMANDS += ("features", "tune", "review")


def test_console_scripts_name_the_commands_mains():
    scripts = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == {f"nsclc-{command}" for command in COMMANDS}
    for name, target in scripts.items():
        module, _, function = target.partition(":")
        assert callable(getattr(importlib.import_module(module), function)), name


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_answers_help(command):
    result = subprocess.run(
        [sys.executable, "-m", f"nsclc_engine.{command}", "--help"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert f"nsclc_engine.{command}" in result.stdout
