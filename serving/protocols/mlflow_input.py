"""MLflow's scoring protocol, the input side: a body in, validated rows and a method out.

JSON in its four shapes (`dataframe_split`, `dataframe_records`, `instances`, `inputs`)
with `params`, or CSV (a header row, then data), as `mlflow models serve` reads them.
Each body is parsed once. Nothing here knows about HTTP: the router
(`serving.protocols.mlflow_router`) turns the errors into MLflow's answers.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from modelio.files import PROBABILITIES_PARAM
from serving.errors import UnsupportedMediaType, input_error
from serving.limits import check_csv, too_many_rows
from serving.model import LoadedModel
from serving.protocols.rows import loads, records_of, validated
from serving.scoring import PREDICT, PROBABILITIES, check_method

INPUT_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
CSV_TYPES = ("text/csv",)
JSON_TYPES = ("application/json",)


@dataclass(frozen=True)
class Parsed:
    """The validated rows of a body, and what it asks of the model."""

    rows: list[Any]
    method: str = PREDICT


Parse = Callable[[bytes, LoadedModel], Parsed]


def parser_for(content_type: str | None) -> Parse:
    """JSON or CSV by the content type, as `mlflow models serve` reads it (UTF-8 only)."""
    if content_type is None:
        return parse_json
    mime, *parameters = (part.strip() for part in content_type.split(";"))
    options = {key.strip().lower(): value.strip().strip('"').lower()
               for key, _, value in (p.partition("=") for p in parameters if p)}
    if set(options) - {"charset"} or options.get("charset", "utf-8") != "utf-8":
        raise UnsupportedMediaType
    if mime.lower() in JSON_TYPES:
        return parse_json
    if mime.lower() in CSV_TYPES:
        return parse_csv
    raise UnsupportedMediaType


def parse_json(body: bytes, model: LoadedModel) -> Parsed:
    """The rows of a JSON body, whichever of the four shapes, and its `params`' method."""
    payload = loads(body, model)
    if not isinstance(payload, dict):
        raise input_error((), "expected a JSON object with one of " + ", ".join(INPUT_KEYS),
                          "mlflow_format")
    keys = [k for k in INPUT_KEYS if k in payload]
    if len(keys) != 1:
        raise input_error((), "expected exactly one of " + ", ".join(INPUT_KEYS),
                          "mlflow_format")
    key = keys[0]
    rows = validated(records_of(key, payload[key], model), model, prefix=(key,))
    return Parsed(rows, method_of(payload, model))


def method_of(payload: Mapping[str, Any], model: LoadedModel) -> str:
    """`predict_proba` when the body's `params` ask a classifier for probabilities.

    `params` follow MLflow's rules (`mlflow.models.utils._enforce_params_schema`): a
    model whose signature declares none ignores them, as do unknown names; a declared
    one of the wrong type is the caller's mistake (400, INVALID_PARAMETER_VALUE).
    """
    params = payload.get("params")
    if model.params is None or params is None:
        return PREDICT
    if not isinstance(params, dict):
        raise input_error(("params",), "must be an object of parameter values",
                          "invalid_parameter")
    values = enforce_params(params, model.params)
    if values.get(PROBABILITIES_PARAM) is not True:
        return PREDICT
    check_method(model, PROBABILITIES, ("params", PROBABILITIES_PARAM))
    return PROBABILITIES


def enforce_params(params: Mapping[str, Any], schema: Any) -> dict[str, Any]:
    """The declared parameters' values (defaults filled in), each checked by MLflow's rule."""
    from mlflow.exceptions import MlflowException
    from mlflow.types.schema import ParamSpec

    values: dict[str, Any] = {}
    for spec in schema.params:
        if spec.name not in params:
            values[spec.name] = spec.default
            continue
        try:
            values[spec.name] = ParamSpec.validate_param_spec(params[spec.name], spec)
        except MlflowException:
            kind = getattr(spec.dtype, "name", spec.dtype)
            shape = "value" if spec.shape is None else "list"
            raise input_error(("params", spec.name), f"expected a {kind} {shape}",
                              "invalid_parameter") from None
    return values


def parse_csv(body: bytes, model: LoadedModel) -> Parsed:
    """The validated rows of a `text/csv` body (a header row, then data).

    Cells are converted by the signature's column types, then checked by the same
    validators as JSON, so the same rules and limits apply: an empty cell is a missing
    value, `"1.5"` in a `long` column is refused, unknown columns are named. Rows are
    read one at a time and the row limit is checked as they come.
    """
    check_csv(body, model)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise input_error((), "the body is not UTF-8 text", "csv_invalid") from None
    try:
        records = _csv_records(_lines(text), model)
    except csv.Error:
        raise input_error((), "the body is not valid CSV", "csv_invalid") from None
    return Parsed(validated(records, model))


def _lines(text: str) -> Iterator[list[str]]:
    """The CSV's non-blank rows, read as they are asked for."""
    return (line for line in csv.reader(io.StringIO(text, newline=""), strict=True) if line)


def _csv_records(lines: Iterator[list[str]], model: LoadedModel) -> list[dict[str, Any]]:
    header = next(lines, None)
    if header is None:
        raise input_error((), "expected a header row of column names", "csv_invalid")
    if len(set(header)) != len(header):
        raise input_error((), "the header names a column twice", "csv_invalid")
    types = {c.name: c.type for c in model.schema.columns} if model.schema else {}
    kinds = [types.get(name) for name in header]
    records: list[dict[str, Any]] = []
    for index, line in enumerate(lines):
        if index == model.max_rows:
            raise too_many_rows(model)
        if len(line) != len(header):
            raise input_error((index,), f"expected {len(header)} values", "csv_invalid")
        records.append({name: _cell(cell, kind, index, name)
                        for name, kind, cell in zip(header, kinds, line, strict=True)})
    return records


_CSV_TRUE, _CSV_FALSE = frozenset({"true", "True", "1"}), frozenset({"false", "False", "0"})


def _cell(cell: str, kind: str | None, row: int, name: str) -> Any:
    """One CSV cell as the column's type; the caller's mistake names the cell, not its text."""
    if cell == "":
        return None
    try:
        if kind in ("double", "float"):
            return float(cell)
        if kind in ("long", "integer"):
            return int(cell)
    except ValueError:
        expected = "a number" if kind in ("double", "float") else "an integer"
        raise input_error((row, name[:64]), f"expected {expected}", "csv_value") from None
    if kind == "boolean":
        if cell in _CSV_TRUE:
            return True
        if cell in _CSV_FALSE:
            return False
        raise input_error((row, name[:64]), "expected true or false", "csv_value")
    return cell
