"""Stage configs: frozen dataclasses, built from defaults -> a JSON file -> ``key=value`` overrides.

Every stage saves its config as JSON beside its outputs, so a result can be rebuilt from its
folder alone. Unknown keys are errors that list the valid ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from nsclc_engine.atomic import write_text_atomic

ConfigT = TypeVar("ConfigT")


def config_to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def save_config(config: Any, path: str | os.PathLike) -> None:
    """Write the config as JSON (with its class name) atomically."""
    payload = {"config_class": type(config).__name__, **config_to_dict(config)}
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def load_config(
    config_class: type[ConfigT],
    path: str | os.PathLike | None = None,
    overrides: typing.Sequence[str] = (),
    base: ConfigT | None = None,
) -> ConfigT:
    """Defaults (or ``base``, e.g. a preset), then the JSON file at ``path``, then overrides."""
    values: dict[str, Any] = dataclasses.asdict(base) if base is not None else {}
    if path is not None:
        loaded = read_config_file(path)
        loaded.pop("config_class", None)
        types_by_key = _field_types(config_class)
        for key, value in _checked(config_class, loaded, source=str(path)).items():
            values[key] = _typed(value, types_by_key[key], f"{path}: {key}")
    for override in overrides:
        key, separator, raw = override.partition("=")
        if not separator:
            raise ValueError(f"override {override!r} is not key=value")
        key = key.strip()
        _checked(config_class, {key: None}, source="--set")
        values[key] = _parse(raw.strip(), _field_types(config_class)[key], key)
    return config_class(**values)


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON object in a config file; ValueError naming the file where it is not one."""
    try:
        loaded = json.loads(Path(path).read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: expected a JSON object of config keys")
    return loaded


def _field_types(config_class: type) -> dict[str, Any]:
    hints = typing.get_type_hints(config_class)
    return {field.name: hints[field.name] for field in dataclasses.fields(config_class)}


def _checked(config_class: type, values: dict[str, Any], source: str) -> dict[str, Any]:
    valid = _field_types(config_class)
    unknown = sorted(set(values) - set(valid))
    if unknown:
        raise ValueError(
            f"{source}: unknown {config_class.__name__} key(s) {unknown}; "
            f"valid keys: {sorted(valid)}"
        )
    return values


def _typed(value: Any, annotation: Any, where: str) -> Any:
    """Check a JSON value against the field's type (ints are accepted for floats)."""
    options = [annotation]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        options = list(typing.get_args(annotation))
    for option in options:
        if option is type(None) and value is None:
            return value
        if option is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option in (bool, str) and isinstance(value, option):
            return value
        if typing.get_origin(option) in (list, tuple, dict) and isinstance(value, list | dict):
            return value
    raise ValueError(f"{where}: {value!r} is not a {annotation}")


def _parse(raw: str, annotation: Any, key: str) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if raw.lower() in ("none", "null"):
            return None
        annotation = options[0]
    if annotation is bool:
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{key}={raw!r}: expected true or false")
    if annotation in (int, float):
        try:
            return annotation(raw)
        except ValueError:
            raise ValueError(f"{key}={raw!r}: expected a {annotation.__name__}") from None
    if annotation is str:
        return raw
    return json.loads(raw)


def check_rules(config: Any, rules: typing.Sequence[tuple[str, bool, str]]) -> None:
    """ValueError naming the first field of ``config`` whose rule does not hold; ``rules`` are
    ``(field, holds, what it must be)``."""
    for key, holds, rule in rules:
        if not holds:
            raise ValueError(f"{key}={getattr(config, key)!r}: must be {rule}")


def add_config_arguments(parser: argparse.ArgumentParser, config_class: type) -> None:
    """``--config FILE`` and repeatable ``--set KEY=VALUE`` for a stage's config class."""
    parser.add_argument("--config", help=f"{config_class.__name__} JSON file")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a config key ({', '.join(config_class.__dataclass_fields__)})",
    )


def one_line(error: BaseException) -> str:
    """An error as a command line prints it: one line, and an OS error names its file
    (``missing.json: No such file or directory``)."""
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror}"
    return " ".join(str(error).split())


def cli_error(error: BaseException) -> int:
    """A command line's end on bad input: ``error: <one line>`` on standard error, and the
    exit status 2 to return."""
    print(f"error: {one_line(error)}", file=sys.stderr)
    return 2


def shown_error(error: BaseException) -> str:
    """A failed run's error as pages show it: the engine's own messages (ValueError, OSError:
    they name the file or patient and never quote contents) in full, any other exception by
    its type only, its message being in the run's log and the server's."""
    if isinstance(error, ValueError | OSError):
        return f"{type(error).__name__}: {one_line(error)}"
    return f"{type(error).__name__} (details in train.log)"
