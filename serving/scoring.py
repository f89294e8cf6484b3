"""The pure scoring core: a request body and a loaded model in, rows, predictions, bytes out.

The app composes these steps (`rows_from_*_body` → the batcher's `inputs_of` + `run` →
`*_response`) so that concurrent requests can share one `predict`. Nothing here knows
about FastAPI: the routes only translate `InputError` (the caller's
mistake, 4xx) and `ModelFailure` (ours, 5xx). Messages name the column and the rule
and never repeat the values that were sent.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias

import numpy as np
import orjson
import pandas as pd
from pydantic import BaseModel, ValidationError

from modelio.files import PROBABILITIES_PARAM
from serving.schema import ColumnBatch, FeatureSchema

MAX_PROBLEMS = 20
MLFLOW_INPUT_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")


Inputs: TypeAlias = pd.DataFrame | ColumnBatch
"""Rows as a predictor takes them: a frame, or column arrays where it `takes_columns`."""


class Predictor(Protocol):
    def predict(self, frame: Inputs) -> Any: ...

    def predict_proba(self, frame: Inputs) -> Any: ...


@dataclass(frozen=True)
class ModelRef:
    """A version as the registry names it, and where its files are.

    What the store asks to load, and what answered: batch clients record `ref()` next
    to each score.
    """

    name: str
    version: str | None
    run_id: str | None
    uri: str
    manifest: str | None = field(default=None, compare=False, repr=False)
    """The manifest tag promotion wrote on the version (JSON), checked before loading."""
    verify: bool = field(default=False, compare=False)
    """True for registry versions: without a manifest they are refused."""

    def ref(self) -> dict[str, str | None]:
        return {"name": self.name, "version": self.version, "run_id": self.run_id}

    @property
    def label(self) -> str:
        return f"{self.name} version {self.version}" if self.version else self.uri


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to score: swapped in as one reference, never changed afterwards."""

    info: ModelRef
    loaded_at: dt.datetime
    predictor: Predictor
    schema: FeatureSchema | None
    max_rows: int
    example: list[dict[str, Any]] | None = None  # from the input example, for OpenAPI
    runtime: str = "sklearn"
    """`onnx` (the verified compiled twin) or `sklearn` (the skops model)."""
    twin: str | None = None
    """Why the twin does not serve (no twin, turned off, refused), or None when it does."""
    classes: tuple[Any, ...] | None = None
    """A classifier's labels, in the order of its probability columns; None: a regressor."""
    params: Any = None
    """The signature's `ParamSchema` (MLflow), or None: `params` sent are ignored."""
    pending: Callable[[], LoadedModel] | None = field(default=None, compare=False, repr=False)
    """Served from its twin before its sklearn model was loaded: what is left to do (load
    and check the sklearn model, `serving.loader`), returning the model to serve from
    then on. None: nothing is left."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input: where (`loc`), which rule (`type`), and why."""

    loc: tuple[str | int, ...]
    msg: str
    type: str

    def as_dict(self) -> dict[str, Any]:
        return {"loc": list(self.loc), "msg": self.msg, "type": self.type}

    def line(self) -> str:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in self.loc)
        return f"{where.lstrip('.') or 'body'}: {self.msg}"


class InputError(Exception):
    """The caller's mistake (4xx)."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)[:MAX_PROBLEMS]
        super().__init__(self.problems[0].line() if self.problems else "invalid input")


class ModelFailure(Exception):
    """The model raised or returned nonsense on valid input: our fault (5xx)."""


PREDICT = "predict"
PROBABILITIES = "predict_proba"


def predict_response(predictions: Any, model: LoadedModel,
                     probabilities: Any = None) -> bytes:
    answer: dict[str, Any] = {"predictions": predictions}
    if probabilities is not None:
        answer["probabilities"] = probabilities
        answer["classes"] = list(model.classes or ())
    answer["model"] = model.info.ref()
    return orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)


def invocations_response(predictions: Any) -> bytes:
    return orjson.dumps({"predictions": predictions}, option=orjson.OPT_SERIALIZE_NUMPY)


def check_method(model: LoadedModel, method: str, where: tuple[str | int, ...]) -> None:
    """Probabilities only from a classifier: asking a regressor is the caller's mistake."""
    if method == PROBABILITIES and model.classes is None:
        raise InputError([Problem(where, "this model is a regressor: it has no class "
                                  "probabilities", "not_a_classifier")])


def frame_of(model: LoadedModel, rows: list[Any]) -> pd.DataFrame:
    """One frame from validated rows (of one request, or of several batched together)."""
    if model.schema is None:
        return pd.DataFrame.from_records(rows)
    return model.schema.frame(rows)


def inputs_of(model: LoadedModel, rows: list[Any]) -> Inputs:
    """Validated rows as the model's predictor takes them.

    The compiled twin (`takes_columns`) takes one array per column; sklearn a frame.
    """
    if model.schema is not None and getattr(model.predictor, "takes_columns", False):
        return model.schema.batch(rows)
    return frame_of(model, rows)


def as_frame(inputs: Inputs) -> pd.DataFrame:
    return inputs.frame() if isinstance(inputs, ColumnBatch) else inputs


def rows_from_predict_body(body: bytes, model: LoadedModel) -> list[Any]:
    """The validated rows of a `/predict` body (`InputError` naming column and rule)."""
    schema = model.schema
    if schema is None:
        return _schemaless_rows(_records_of(_loads(body), "records"), model.max_rows)
    try:
        request = schema.request.model_validate_json(body)
    except ValidationError as err:
        raise InputError(problems_of(err)) from None
    rows: list[Any] = request.__dict__["records"]
    return rows


def method_of_mlflow_body(body: bytes, model: LoadedModel) -> str:
    """`predict_proba` when the body's `params` ask a classifier for probabilities.

    `params` follow MLflow's rules (`mlflow.models.utils._enforce_params_schema`): a
    model whose signature declares none ignores them, as do unknown names; a declared
    one of the wrong type is the caller's mistake (400, INVALID_PARAMETER_VALUE).
    """
    if model.params is None or b'"params"' not in body:
        return PREDICT
    payload = _loads(body)
    params = payload.get("params") if isinstance(payload, dict) else None
    if params is None:
        return PREDICT
    if not isinstance(params, dict):
        raise InputError([Problem(("params",), "must be an object of parameter values",
                                  "invalid_parameter")])
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
            raise InputError([Problem(("params", spec.name), f"expected a {kind} {shape}",
                                      "invalid_parameter")]) from None
    return values


def rows_from_mlflow_body(body: bytes, model: LoadedModel) -> list[Any]:
    """The validated rows of an `/invocations` body, whichever of the four shapes."""
    payload = _loads(body)
    if not isinstance(payload, dict):
        raise InputError([Problem((), "expected a JSON object with one of "
                                  + ", ".join(MLFLOW_INPUT_KEYS), "mlflow_format")])
    keys = [k for k in MLFLOW_INPUT_KEYS if k in payload]
    if len(keys) != 1:
        raise InputError([Problem((), "expected exactly one of " + ", ".join(MLFLOW_INPUT_KEYS),
                                  "mlflow_format")])
    key = keys[0]
    records = _mlflow_records(key, payload[key])
    schema = model.schema
    if schema is None:
        return _schemaless_rows(records, model.max_rows)
    try:
        rows: list[BaseModel] = schema.records.validate_python(records)
    except ValidationError as err:
        raise InputError(problems_of(err, prefix=(key,))) from None
    return rows


def rows_from_csv_body(body: bytes, model: LoadedModel) -> list[Any]:
    """The validated rows of a `text/csv` `/invocations` body (a header row, then data).

    Cells are converted by the signature's column types, then checked by the same
    validators as JSON, so the same rules and limits apply: an empty cell is a missing
    value, `"1.5"` in a `long` column is refused, unknown columns are named.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError([Problem((), "the body is not UTF-8 text", "csv_invalid")]) from None
    try:
        table = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error:
        raise InputError([Problem((), "the body is not valid CSV", "csv_invalid")]) from None
    table = [line for line in table if line]
    if not table:
        raise InputError([Problem((), "expected a header row of column names", "csv_invalid")])
    header, data = table[0], table[1:]
    if len(set(header)) != len(header):
        raise InputError([Problem((), "the header names a column twice", "csv_invalid")])
    types = {c.name: c.type for c in model.schema.columns} if model.schema else {}
    records: list[dict[str, Any]] = []
    for index, line in enumerate(data):
        if len(line) != len(header):
            raise InputError([Problem((index,), f"expected {len(header)} values",
                                      "csv_invalid")])
        records.append({name: _cell(cell, types.get(name), (index, _short(name)))
                        for name, cell in zip(header, line, strict=True)})
    schema = model.schema
    if schema is None:
        return _schemaless_rows(records, model.max_rows)
    try:
        rows: list[BaseModel] = schema.records.validate_python(records)
    except ValidationError as err:
        raise InputError(problems_of(err)) from None
    return rows


_CSV_TRUE, _CSV_FALSE = frozenset({"true", "True", "1"}), frozenset({"false", "False", "0"})


def _cell(cell: str, kind: str | None, loc: tuple[str | int, ...]) -> Any:
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
        raise InputError([Problem(loc, f"expected {expected}", "csv_value")]) from None
    if kind == "boolean":
        if cell in _CSV_TRUE:
            return True
        if cell in _CSV_FALSE:
            return False
        raise InputError([Problem(loc, "expected true or false", "csv_value")])
    return cell


def inputs_from_records(records: list[dict[str, Any]], model: LoadedModel) -> Inputs:
    """Validate plain rows (the input example at warm-up) the way requests are validated."""
    body = orjson.dumps({"records": records}, option=orjson.OPT_SERIALIZE_NUMPY)
    return inputs_of(model, rows_from_predict_body(body, model))


def run(model: LoadedModel, frame: Inputs, method: str = PREDICT) -> Any:
    """Call the model; what it raises is our failure, unless an input is out of its range.

    `method` is `predict` (labels or values) or `predict_proba` (a classifier's class
    probabilities, one row each, columns in `model.classes` order).

    A finite input can still overflow inside the model (1e308 through a scaler) and make
    it raise or predict infinity. That is the caller's input, so the rows (and, for a
    pipeline, the columns) whose transformed features or predictions are not finite get
    an `InputError`. The check runs only when something went wrong: the normal path
    costs one `isfinite` over the predictions.
    """
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # judged below, not warned about
            output = model.predictor.predict_proba(frame) if method == PROBABILITIES \
                else model.predictor.predict(frame)
    except Exception as err:
        problems = _out_of_range(model, frame)
        if problems:
            raise InputError(problems) from None
        raise ModelFailure(f"{type(err).__name__} in predict") from err
    predictions = _jsonable(output)
    if len(predictions) != len(frame):
        raise ModelFailure(f"predict returned {len(predictions)} rows for {len(frame)}")
    if isinstance(predictions, np.ndarray) and predictions.dtype.kind == "f":
        finite = np.isfinite(predictions)
        if not finite.all():
            rows = ~finite.reshape(len(frame), -1).all(axis=1)
            raise InputError(_out_of_range(model, frame) or [
                Problem((int(row),), NOT_FINITE_PREDICTION, "not_finite")
                for row in np.flatnonzero(rows)])
    return predictions


NOT_FINITE_PREDICTION = "out of the model's range: the prediction is not a finite number"
NOT_FINITE_FEATURE = "out of the model's range: the model's transformed value is not finite"


def _out_of_range(model: LoadedModel, inputs: Inputs) -> list[Problem]:
    """Rows (and input columns) a pipeline's transformers turn into non-finite numbers."""
    estimator: Any = getattr(model.predictor, "estimator", model.predictor)
    if len(getattr(estimator, "steps", ())) < 2:
        return []
    try:
        frame = as_frame(inputs)
        transformers = estimator[:-1]
        with np.errstate(all="ignore"):
            transformed = transformers.transform(frame)
        if hasattr(transformed, "toarray"):  # sparse
            transformed = transformed.toarray()
        finite = np.isfinite(np.asarray(transformed, dtype=np.float64))
        try:
            features = [str(f) for f in transformers.get_feature_names_out()]
        except Exception:  # not every transformer names its outputs
            features = []
    except Exception:
        return []
    problems: list[Problem] = []
    for row in np.flatnonzero(~finite.all(axis=1)):
        bad = {features[i] for i in np.flatnonzero(~finite[row])} if features else set()
        columns = [str(c) for c in frame.columns
                   if any(f == c or f.endswith(f"__{c}") for f in bad)]
        problems.extend(Problem((int(row), _short(c)), NOT_FINITE_FEATURE, "not_finite")
                        for c in columns)
        if not columns:
            problems.append(Problem((int(row),), NOT_FINITE_FEATURE, "not_finite"))
    return problems


def problems_of(err: ValidationError, prefix: tuple[str | int, ...] = ()) -> list[Problem]:
    """pydantic's errors without the input values (`include_input=False`)."""
    problems = []
    for item in err.errors(include_input=False, include_url=False, include_context=False):
        loc = tuple(_short(p) for p in item["loc"])
        problems.append(Problem(loc=prefix + loc, msg=_rule(item["type"], item["msg"]),
                                type=item["type"]))
    return problems


def _rule(kind: str, msg: str) -> str:
    if kind == "extra_forbidden":
        return "unknown column: not in the model signature"
    if kind == "missing":
        return "missing: required by the model signature"
    if kind == "json_invalid":
        return "the body is not valid JSON"
    return msg


def _short(part: str | int) -> str | int:
    # A key from the payload names the column; a long one is cut, never echoed whole.
    return part if isinstance(part, int) else part[:64]


def _loads(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InputError([Problem((), "the body is not valid JSON", "json_invalid")]) from None


def _records_of(payload: Any, key: str) -> list[dict[str, Any]]:
    if not isinstance(payload, dict) or set(payload) != {key}:
        raise InputError([Problem((), f"expected a JSON object with one key, {key}",
                                  "model_type")])
    return _mlflow_records(key, payload[key])


def _mlflow_records(key: str, value: Any) -> list[dict[str, Any]]:
    """The four input shapes of MLflow's protocol, as a list of row objects."""
    if key == "dataframe_split":
        if not isinstance(value, dict) or not isinstance(value.get("columns"), list) \
                or not isinstance(value.get("data"), list):
            raise InputError([Problem((key,), "expected an object with columns and data lists",
                                      "mlflow_format")])
        columns = value["columns"]
        if not all(isinstance(c, str) for c in columns):
            raise InputError([Problem((key, "columns"), "column names must be strings",
                                      "mlflow_format")])
        rows = []
        for index, row in enumerate(value["data"]):
            if not isinstance(row, list) or len(row) != len(columns):
                raise InputError([Problem((key, "data", index),
                                          f"expected a list of {len(columns)} values",
                                          "mlflow_format")])
            rows.append(dict(zip(columns, row, strict=True)))
        return rows
    if isinstance(value, Mapping) and value and all(isinstance(v, list) for v in value.values()):
        lengths = {len(v) for v in value.values()}
        if len(lengths) != 1:
            raise InputError([Problem((key,), "columns have different lengths", "mlflow_format")])
        names = list(value)
        return [dict(zip(names, cells, strict=True))
                for cells in zip(*value.values(), strict=True)]
    if isinstance(value, list) and all(isinstance(r, dict) for r in value):
        return value
    raise InputError([Problem((key,), "expected a list of row objects", "mlflow_format")])


def _schemaless_rows(records: list[dict[str, Any]], max_rows: int) -> list[dict[str, Any]]:
    """A model logged without a signature: only the shape can be checked here."""
    if not records:
        raise InputError([Problem(("records",), "at least 1 row is required", "too_short")])
    if len(records) > max_rows:
        raise InputError([Problem(("records",), f"at most {max_rows} rows per request",
                                  "too_long")])
    if not all(isinstance(r, dict) for r in records):
        raise InputError([Problem(("records",), "each row must be an object", "dict_type")])
    return records


def _jsonable(output: Any) -> Any:
    """Predictions in a shape orjson writes fast: numeric arrays as they are."""
    if isinstance(output, pd.DataFrame):
        return output.to_dict(orient="records")
    if isinstance(output, pd.Series):
        output = output.to_numpy()
    if isinstance(output, np.ndarray):
        if output.dtype.kind in "fiub" and output.flags.c_contiguous:
            return output
        return output.tolist()
    return list(output)
