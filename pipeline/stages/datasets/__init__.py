"""Declared schemas of the datasets the pipeline knows.

A dataset is a YAML schema file (written by `mlops data init`, reviewed by a person:
`data.dataset: my_data.schema.yaml` in the card, a path relative to where `mlops`
runs), a YAML file shipped in this package (`data.dataset: rand_health`), or a module
in this package that defines `SPEC` (`data.dataset: diamonds`) for what YAML cannot
say. `data.source` names a CSV/Parquet path or an `s3://` URI.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pipeline.errors import ConfigError

if TYPE_CHECKING:  # the CLI reads specs before (and often without) touching a frame
    import pandas as pd

Task = Literal["regression", "classification"]
ColumnKind = Literal["numeric", "categorical"]
Outside = Literal["keep", "blank", "drop"]
"""What cleansing does with a value outside a column's range or categories: `keep` it
(counted and warned about: the range is recorded for monitoring), `blank` it (a feature:
the model imputes it) or `drop` the row. Every one is counted and logged as a warning."""


@dataclass(frozen=True, kw_only=True)
class Column:
    """One declared column: its kind and the values it may hold.

    What cleansing does with a value outside the range (or categories) is `outside`;
    unset, it blanks it in a feature (the model imputes) and drops the row for the
    target. `mlops data init` writes `keep` for ranges it only observed.
    """

    name: str
    kind: ColumnKind
    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False
    categories: tuple[str, ...] | None = None
    description: str = ""
    outside: Outside | None = None


@dataclass(frozen=True, kw_only=True)
class DatasetSpec:
    """Everything the stages need to know about a dataset, in one place."""

    name: str
    task: Task
    target: Column
    features: tuple[Column, ...]
    load_builtin: Callable[[], pd.DataFrame] | None = None
    source_note: str = ""

    @property
    def feature_names(self) -> list[str]:
        return [c.name for c in self.features]

    @property
    def columns(self) -> tuple[Column, ...]:
        return (*self.features, self.target)

    def numeric_features(self) -> list[str]:
        return [c.name for c in self.features if c.kind == "numeric"]

    def categorical_features(self) -> list[str]:
        return [c.name for c in self.features if c.kind == "categorical"]


_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


_PACKAGE_DIR = Path(__file__).resolve().parent
SCHEMA_SUFFIXES = (".yaml", ".yml")


def load_spec(name: str) -> DatasetSpec:
    """The card's `data.dataset`: a YAML schema path, a packaged YAML schema, or a module."""
    from pipeline.stages.datasets.schema_file import read_schema  # yaml: only when used

    if name.lower().endswith(SCHEMA_SUFFIXES):
        return read_schema(Path(name))
    packaged = _PACKAGE_DIR / f"{name}.yaml"
    if _NAME.match(name) and packaged.is_file():
        return read_schema(packaged)
    return _module_spec(name)


def _module_spec(name: str) -> DatasetSpec:
    """Import `pipeline.stages.datasets.<name>` and return its `SPEC`."""
    if not _NAME.match(name):
        raise ConfigError(f"data.dataset: {name!r} is neither a module name (lowercase, "
                          "digits, _) nor a .yaml schema file")
    try:
        module = importlib.import_module(f"pipeline.stages.datasets.{name}")
    except ModuleNotFoundError as err:
        raise ConfigError(
            f"data.dataset: no dataset module pipeline/stages/datasets/{name}.py "
            f"nor schema {name}.yaml there"
        ) from err
    spec = getattr(module, "SPEC", None)
    if not isinstance(spec, DatasetSpec):
        raise ConfigError(f"data.dataset: pipeline/stages/datasets/{name}.py defines no SPEC")
    return spec
