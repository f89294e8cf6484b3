"""A dataset's schema as a YAML file: what `mlops data init` writes and people review.

The file says what a `DatasetSpec` module says (task, target, each feature's kind,
range or categories) without Python, with a comment beside each column saying why
it was inferred so. It is read back through a strict model, so a typo in a kind or a
range upside down fails with the field path, every problem on one line. What YAML
cannot say (a derived column, a custom loader) stays a Python module, or a loader
named by `builtin: package.module:function`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.errors import ConfigError, format_validation_error
from pipeline.files import read_yaml_mapping
from pipeline.stages.datasets import Column, DatasetSpec

_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.\- ]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnEntry(_Strict):
    name: str = Field(min_length=1)
    kind: Literal["numeric", "categorical"]
    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False
    categories: tuple[str, ...] | None = None
    description: str = ""
    outside: Literal["keep", "blank", "drop"] | None = None
    """keep: count and warn, the range is for monitoring; blank: a feature's value is
    imputed; drop: the row goes. Unset: blank for a feature, drop for the target."""

    @field_validator("categories", mode="before")
    @classmethod
    def _categories_are_text(cls, value: Any) -> Any:
        """YAML reads an unquoted yes/no as a boolean: say so rather than store 'True'."""
        if value is None:
            return None
        if not isinstance(value, list | tuple) or not value:
            raise ValueError("must be a non-empty list")
        out = []
        for item in value:
            if isinstance(item, bool):
                raise ValueError(f"{item!r} was read as true/false: quote it (e.g. 'yes')")
            if isinstance(item, float) and item.is_integer():
                item = int(item)
            out.append(str(item))
        if len(set(out)) != len(out):
            raise ValueError("lists a category twice")
        return out

    @model_validator(mode="after")
    def _kind_fits(self) -> ColumnEntry:
        if self.kind == "categorical" and (self.min is not None or self.max is not None):
            raise ValueError(f"{self.name}: a categorical column has categories, not min/max")
        if self.kind == "numeric" and self.categories is not None:
            raise ValueError(f"{self.name}: a numeric column has min/max, not categories")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"{self.name}: min {self.min} is above max {self.max}")
        return self

    def column(self) -> Column:
        return Column(name=self.name, kind=self.kind, min=self.min, max=self.max,
                      min_exclusive=self.min_exclusive, categories=self.categories,
                      description=self.description, outside=self.outside)


class SchemaEntry(_Strict):
    name: str = Field(pattern=_NAME_PATTERN)
    task: Literal["regression", "classification"]
    target: ColumnEntry
    features: tuple[ColumnEntry, ...] = Field(min_length=1)
    builtin: str | None = Field(default=None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    source_note: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> SchemaEntry:
        names = [c.name for c in self.features]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"features: {', '.join(twice)} declared twice")
        if self.target.name in names:
            raise ValueError(f"target {self.target.name!r} is also listed as a feature")
        if self.task == "classification" and self.target.kind != "categorical":
            raise ValueError("a classification target is categorical (its labels as text)")
        if self.task == "regression" and self.target.kind != "numeric":
            raise ValueError("a regression target is numeric")
        if self.target.outside == "blank":
            raise ValueError("target: outside: blank would leave rows without a label; "
                             "choose keep or drop")
        return self


def read_schema(path: Path) -> DatasetSpec:
    """Read and check a schema file; every problem becomes part of one line."""
    raw = read_yaml_mapping(path, label=f"data.dataset: schema file {path}",
                            expected="name, task, target and features")
    try:
        entry = SchemaEntry.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"{path}: {format_validation_error(err)}") from err
    return to_spec(entry)


def to_spec(entry: SchemaEntry) -> DatasetSpec:
    return DatasetSpec(
        name=entry.name, task=entry.task, target=entry.target.column(),
        features=tuple(c.column() for c in entry.features),
        load_builtin=None if entry.builtin is None else _lazy_loader(entry.builtin),
        source_note=entry.source_note,
    )


def _lazy_loader(reference: str) -> Callable[[], pd.DataFrame]:
    """`package.module:function`, imported only when the built-in data is read."""
    module_name, _, function_name = reference.partition(":")

    def load() -> pd.DataFrame:
        try:
            function = getattr(importlib.import_module(module_name), function_name)
        except (ImportError, AttributeError) as err:
            raise ConfigError(f"builtin: cannot import {reference}") from err
        frame: pd.DataFrame = function()
        return frame

    return load


def render_schema(spec: DatasetSpec, *, header: str, reasons: Mapping[str, str],
                  builtin: str | None = None) -> str:
    """The schema as YAML a person can review: a header, then one block per column.

    Written by hand rather than by `yaml.dump` so each column carries its reason as a
    comment; scalars go through `yaml.safe_dump`, so text such as `yes` stays quoted.
    """
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    lines += [f"name: {_scalar(spec.name)}", f"task: {spec.task}"]
    if builtin is not None:
        lines.append(f"builtin: {_scalar(builtin)}")
    if spec.source_note:
        lines.append(f"source_note: {_scalar(spec.source_note)}")
    lines.append("target:" + _comment(reasons.get(spec.target.name)))
    lines += _column_lines(spec.target, indent="  ")
    lines.append("features:")
    for column in spec.features:
        body = _column_lines(column, indent="    ")
        lines.append("  - " + body[0].strip() + _comment(reasons.get(column.name)))
        lines += body[1:]
    text = "\n".join(lines) + "\n"
    entry = SchemaEntry.model_validate(yaml.safe_load(text))  # what we write, we can read
    assert to_spec(entry).columns == spec.columns
    return text


def _column_lines(column: Column, *, indent: str) -> list[str]:
    lines = [f"name: {_scalar(column.name)}", f"kind: {column.kind}"]
    if column.min is not None:
        lines.append(f"min: {_scalar(_number(column.min))}")
        if column.min_exclusive:
            lines.append("min_exclusive: true")
    if column.max is not None:
        lines.append(f"max: {_scalar(_number(column.max))}")
    if column.categories is not None:
        lines.append(f"categories: {_scalar(list(column.categories))}")
    if column.description:
        lines.append(f"description: {_scalar(column.description)}")
    if column.outside is not None:
        lines.append(f"outside: {column.outside}")
    return [indent + line for line in lines]


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else float(value)


def _scalar(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000, allow_unicode=True)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def _comment(reason: str | None) -> str:
    return f"  # {reason}" if reason else ""
