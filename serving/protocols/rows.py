"""What the protocols' parsers share: JSON within the value budget, row shapes, validation.

Every parser ends the same way: a list of row objects, validated by the validators
generated from the model's signature (`serving.schema`), so the same rules and limits
apply whichever protocol the rows came in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import ValidationError

from serving.errors import InputError, Problem, input_error, problems_of
from serving.limits import check_json, too_many_rows
from serving.model import LoadedModel


def loads(body: bytes, model: LoadedModel) -> Any:
    """The JSON value of `body`, refused before it is built when it holds too many values."""
    check_json(body, model)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise input_error((), "the body is not valid JSON", "json_invalid") from None


def records_of(key: str, value: Any, model: LoadedModel) -> list[dict[str, Any]]:
    """MLflow's input shapes (`dataframe_split`, a dict of columns, a list of row objects)
    as a list of row objects, refused before they are built when over the row limit."""
    if key == "dataframe_split":
        return _split_records(key, value, model)
    if isinstance(value, Mapping) and value and all(isinstance(v, list) for v in value.values()):
        lengths = {len(v) for v in value.values()}
        if len(lengths) != 1:
            raise input_error((key,), "columns have different lengths", "mlflow_format")
        if lengths.pop() > model.max_rows:
            raise too_many_rows(model, (key,))
        names = list(value)
        return [dict(zip(names, cells, strict=True))
                for cells in zip(*value.values(), strict=True)]
    if isinstance(value, list) and all(isinstance(r, dict) for r in value):
        if len(value) > model.max_rows:
            raise too_many_rows(model, (key,))
        return value
    raise input_error((key,), "expected a list of row objects", "mlflow_format")


def _split_records(key: str, value: Any, model: LoadedModel) -> list[dict[str, Any]]:
    if not isinstance(value, dict) or not isinstance(value.get("columns"), list) \
            or not isinstance(value.get("data"), list):
        raise input_error((key,), "expected an object with columns and data lists",
                          "mlflow_format")
    columns = value["columns"]
    if not all(isinstance(c, str) for c in columns):
        raise input_error((key, "columns"), "column names must be strings", "mlflow_format")
    if len(value["data"]) > model.max_rows:
        raise too_many_rows(model, (key,))
    rows = []
    for index, row in enumerate(value["data"]):
        if not isinstance(row, list) or len(row) != len(columns):
            raise input_error((key, "data", index), f"expected a list of {len(columns)} values",
                              "mlflow_format")
        rows.append(dict(zip(columns, row, strict=True)))
    return rows


def validated(records: list[Any], model: LoadedModel,
              prefix: tuple[str | int, ...] = ()) -> list[Any]:
    """Row objects checked by the signature's validators (`prefix` leads each location)."""
    schema = model.schema
    if schema is None:
        return schemaless(records, model)
    try:
        rows: list[Any] = schema.records.validate_python(records)
    except ValidationError as err:
        raise InputError(problems_of(err, prefix=prefix)) from None
    return rows


def schemaless(records: list[Any], model: LoadedModel) -> list[dict[str, Any]]:
    """A model logged without a signature: only the shape can be checked here."""
    if not records:
        raise InputError([Problem(("records",), "at least 1 row is required", "too_short")])
    if len(records) > model.max_rows:
        raise too_many_rows(model, ("records",))
    if not all(isinstance(r, dict) for r in records):
        raise InputError([Problem(("records",), "each row must be an object", "dict_type")])
    return records
