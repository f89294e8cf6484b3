"""Declared schemas of the datasets the pipeline knows.

A dataset is one module in this package that defines `SPEC`. Switching to your own
data is one module (copy `diamonds.py`) plus one line in `model_card.yaml`
(`data.dataset`, and `data.source` for a CSV/Parquet path or an `s3://` URI).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import pandas as pd

from pipeline.errors import ConfigError

Task = Literal["regression", "classification"]
ColumnKind = Literal["numeric", "categorical"]


@dataclass(frozen=True, kw_only=True)
class Column:
    """One declared column: its kind and the values it may hold.

    Values outside the range (or categories) are treated as invalid: the cleansing
    stage blanks them in features (the model imputes) and drops the row for the target.
    """

    name: str
    kind: ColumnKind
    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False
    categories: tuple[str, ...] | None = None
    description: str = ""


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


def load_spec(name: str) -> DatasetSpec:
    """Import `pipeline.stages.datasets.<name>` and return its `SPEC`."""
    if not _NAME.match(name):
        raise ConfigError(f"data.dataset: {name!r} is not a module name (lowercase, digits, _)")
    try:
        module = importlib.import_module(f"pipeline.stages.datasets.{name}")
    except ModuleNotFoundError as err:
        raise ConfigError(
            f"data.dataset: no dataset module pipeline/stages/datasets/{name}.py"
        ) from err
    spec = getattr(module, "SPEC", None)
    if not isinstance(spec, DatasetSpec):
        raise ConfigError(f"data.dataset: pipeline/stages/datasets/{name}.py defines no SPEC")
    return spec
