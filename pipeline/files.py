"""Files people edit and workflows read: written all or nothing, read with one-line errors."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import ConfigError


def atomic_write(path: Path, text: str) -> None:
    """Write beside `path`, then rename: a reader never sees half a file, a failure none."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_yaml_mapping(path: Path, *, label: str, expected: str) -> dict[str, Any]:
    """A YAML file that must hold a mapping (a card, a schema); each problem is one line
    starting with `label`, and a syntax error names its line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise ConfigError(f"{label}: no such file") from err
    except OSError as err:
        raise ConfigError(f"{label}: cannot read ({err.strerror})") from err
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{label}: not valid YAML{where}") from err
    if not isinstance(raw, dict):
        raise ConfigError(f"{label}: expected a mapping with {expected}")
    return raw
