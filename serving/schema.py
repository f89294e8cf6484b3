"""The request schema, generated from the model's MLflow signature.

One pydantic model per signature (`create_model`), so validation runs in pydantic-core
straight from the JSON bytes, and the OpenAPI page shows the real feature names and
types. Validated rows become one array per column with the signature's dtypes
(`ColumnBatch`), which the compiled twin takes as it is, or one pandas frame of them for
sklearn.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model

# MLflow column types → (pydantic type, numpy dtype of the frame column).
_TYPES: dict[str, tuple[Any, Any]] = {
    "double": (float, np.float64),
    "float": (float, np.float32),
    "long": (int, np.int64),
    "integer": (int, np.int32),
    "boolean": (bool, np.bool_),
    "string": (str, object),
    "datetime": (dt.datetime, "datetime64[ns]"),
    "binary": (bytes, object),
}

# Integers must fit the frame's dtype: a larger one is the caller's mistake, not ours.
_INT_BOUNDS = {"long": (-(2**63), 2**63 - 1), "integer": (-(2**31), 2**31 - 1)}


@dataclass(frozen=True)
class ColumnSpec:
    """One input column of the signature: name, MLflow type, and whether it may be missing."""

    name: str
    type: str
    required: bool = True


class ColumnBatch:
    """Validated rows as one numpy array per column, in signature order.

    What the compiled twin takes: it indexes like a frame (`batch[name]`, `len(batch)`
    is the number of rows) but costs tens of microseconds to build, where a pandas frame
    costs about half a millisecond whatever its size. That was most of a one-row
    request through the twin. `frame()` builds the pandas frame when one is needed.
    """

    __slots__ = ("arrays", "rows")

    def __init__(self, arrays: dict[str, Any], rows: int) -> None:
        self.arrays = arrays
        self.rows = rows

    def __getitem__(self, name: str) -> Any:
        return self.arrays[name]

    def __len__(self) -> int:
        return self.rows

    @property
    def columns(self) -> list[str]:
        return list(self.arrays)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.arrays, copy=False)


@dataclass(frozen=True)
class FeatureSchema:
    """The columns a model takes, and the pydantic validators built from them once."""

    columns: tuple[ColumnSpec, ...]
    record: type[BaseModel]
    request: type[BaseModel]  # {"records": [Record, ...]}, 1 to max_rows rows
    records: TypeAdapter[list[BaseModel]]  # the same rows, for the other payload shapes
    id_column: str | None = None
    """A caller's row ID that `/predict` records may carry (the card's
    `monitoring.id_column`): passed through to the answer and the prediction log, never
    to the model; the MLflow and OIP protocols keep their own shapes and refuse it."""

    def ids(self, rows: Sequence[BaseModel]) -> list[Any] | None:
        """Each row's ID as sent (None where it was left out), or None without an ID column."""
        if self.id_column is None:
            return None
        return [row.__dict__.get(ID_FIELD) for row in rows]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def batch(self, rows: Sequence[BaseModel]) -> ColumnBatch:
        """One array per column from validated rows, in signature order with their dtypes."""
        data: dict[str, Any] = {}
        for index, column in enumerate(self.columns):
            field = _field_name(index)
            data[column.name] = _column_array([row.__dict__[field] for row in rows], column)
        return ColumnBatch(data, len(rows))

    def frame(self, rows: Sequence[BaseModel]) -> pd.DataFrame:
        """One frame from validated rows, columns in signature order with their dtypes."""
        return self.batch(rows).frame()


ID_FIELD = "row_id"


def from_columns(columns: Sequence[ColumnSpec], *, max_rows: int,
                 id_column: str | None = None) -> FeatureSchema:
    """Build the validators for these columns (done once per loaded model); `/predict`'s
    records may also carry `id_column` (unless a feature has that name)."""
    fields: dict[str, Any] = {}
    for index, column in enumerate(columns):
        python_type, _ = _TYPES.get(column.type, (Any, object))
        extra: dict[str, Any] = {"alias": column.name, "title": column.name}
        if python_type is float:
            # NaN means "missing" in a frame: only where the signature allows missing.
            extra["allow_inf_nan"] = False
        if column.type in _INT_BOUNDS:
            extra["ge"], extra["le"] = _INT_BOUNDS[column.type]
        if python_type in (dt.datetime, bytes):
            extra["strict"] = False  # from JSON text: ISO dates, base64 strings
        annotated: Any = Annotated[python_type, Field(**extra)]
        if column.required:
            fields[_field_name(index)] = (annotated, ...)
        else:
            fields[_field_name(index)] = (Annotated[python_type | None, Field(**extra)], None)
    record = create_model(  # type: ignore[call-overload]
        "Record",
        __config__=ConfigDict(extra="forbid", strict=True, populate_by_name=False,
                              title="Record"),
        **fields,
    )
    rows = Annotated[list[record], Field(min_length=1, max_length=max_rows)]  # type: ignore[valid-type]
    if id_column in {c.name for c in columns}:
        id_column = None
    predict_rows: Any = rows
    if id_column is not None:
        identified = create_model(  # type: ignore[call-overload]
            "Record", __base__=record,
            **{ID_FIELD: (str | int | None, Field(default=None, alias=id_column,
                                                  title=id_column, description=(
                                                      "your ID of the row: answered back "
                                                      "and logged, not given to the model")))})
        predict_rows = Annotated[list[identified], Field(min_length=1,  # type: ignore[valid-type]
                                                         max_length=max_rows)]
    request = create_model(  # type: ignore[call-overload]
        "PredictRequest",
        __config__=ConfigDict(extra="forbid", strict=True, title="PredictRequest"),
        records=(predict_rows, Field(description=f"rows to score, 1 to {max_rows}")),
    )
    return FeatureSchema(columns=tuple(columns), record=record, request=request,
                         records=TypeAdapter(rows), id_column=id_column)


def from_signature(signature: Any, *, max_rows: int,
                   id_column: str | None = None) -> FeatureSchema | None:
    """The schema of an MLflow `ModelSignature`; None when it has no named columns."""
    inputs = getattr(signature, "inputs", None)
    if inputs is None or not getattr(inputs, "has_input_names", lambda: False)():
        return None
    if getattr(inputs, "is_tensor_spec", lambda: False)():
        return None
    columns = []
    for spec in inputs.inputs:
        type_name = getattr(spec.type, "name", str(spec.type))
        columns.append(ColumnSpec(name=str(spec.name), type=str(type_name),
                                  required=bool(getattr(spec, "required", True))))
    return from_columns(columns, max_rows=max_rows, id_column=id_column)


def _field_name(index: int) -> str:
    # Column names become aliases: any name works, even one that clashes with BaseModel.
    return f"c{index}"


def _column_array(values: list[Any], column: ColumnSpec) -> Any:
    _, dtype = _TYPES.get(column.type, (Any, object))
    if dtype is object:
        return np.array([np.nan if v is None else v for v in values], dtype=object)
    if dtype in (np.int64, np.int32, np.bool_) and any(v is None for v in values):
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    if dtype == "datetime64[ns]":
        return pd.to_datetime(values)
    return np.array(values, dtype=dtype)

