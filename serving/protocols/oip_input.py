"""The Open Inference Protocol v2 (REST), the pure side: metadata, tensors in, tensors out.

The protocol KServe, MLServer and Triton speak. A model's inputs are its signature's
columns, one tensor per column (shape `[rows]` or `[rows, 1]`): BYTES for strings,
FP64/FP32 and INT64/INT32 for numbers, BOOL for booleans. Tensors may come as JSON
`data` or in the binary extension (`Inference-Header-Content-Length`: the JSON header,
then each tensor's raw bytes, little-endian, BYTES as 4-byte length + UTF-8). The rows
they make are validated by the same signature validators as `/predict`, so the same
rules apply. Answers are always JSON, which every client of the protocol reads.

Bounded before anything is built: the JSON header by the value budget
(`serving.limits`), each tensor's rows by its shape (at most the row limit) and binary
data by its declared size, so a 16 MiB body cannot become millions of Python values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from serving.errors import InputError, NotFound, Problem
from serving.limits import check_json, too_many_rows
from serving.model import LoadedModel
from serving.protocols.rows import validated
from serving.scoring import LABELS_AND_PROBABILITIES, PREDICT, Outputs
from serving.scoring import PROBABILITIES as PREDICT_PROBA

PLATFORM = "mlflow_sklearn"
OUTPUT = "predictions"
PROBABILITIES = "probabilities"
METHODS: dict[tuple[str, ...], str] = {(OUTPUT,): PREDICT, (PROBABILITIES,): PREDICT_PROBA}
"""The outputs asked for, and what the scoring core computes for them (both: both)."""
# MLflow column type -> the protocol's datatype, and the datatypes a tensor may carry.
DATATYPES: dict[str, str] = {
    "double": "FP64", "float": "FP32", "long": "INT64", "integer": "INT32",
    "boolean": "BOOL", "string": "BYTES", "datetime": "BYTES", "binary": "BYTES",
}
ACCEPTED: dict[str, frozenset[str]] = {
    "FP64": frozenset({"FP64", "FP32", "INT64", "INT32"}),
    "FP32": frozenset({"FP64", "FP32", "INT64", "INT32"}),
    "INT64": frozenset({"INT64", "INT32"}),
    "INT32": frozenset({"INT64", "INT32"}),
    "BOOL": frozenset({"BOOL"}),
    "BYTES": frozenset({"BYTES"}),
}
_NUMPY = {"FP64": "<f8", "FP32": "<f4", "INT64": "<i8", "INT32": "<i4", "BOOL": "?"}


def check_model(model: LoadedModel, name: str, version: str | None = None) -> None:
    """Only the live model answers: its name, and (when asked) its version."""
    if name != model.info.name:
        raise NotFound(f"no model named {name[:64]!r} is served here")
    if version is not None and version != (model.info.version or ""):
        raise NotFound(f"version {version[:32]!r} of {name[:64]!r} is not the one served")


def metadata(model: LoadedModel, output_datatype: str) -> dict[str, Any]:
    """The model's metadata: inputs from the signature, one output."""
    columns = model.schema.columns if model.schema else ()
    return {
        "name": model.info.name,
        "versions": [model.info.version] if model.info.version else [],
        "platform": PLATFORM,
        "inputs": [{"name": c.name, "datatype": DATATYPES.get(c.type, "BYTES"),
                    "shape": [-1]} for c in columns],
        "outputs": [{"name": OUTPUT, "datatype": output_datatype, "shape": [-1]}]
        + ([{"name": PROBABILITIES, "datatype": "FP64", "shape": [-1, len(model.classes)]}]
           if model.classes is not None else []),
    }


@dataclass(frozen=True)
class InferRequest:
    rows: list[Any]
    id: str | None
    """Echoed in the answer."""
    outputs: tuple[str, ...] = (OUTPUT,)
    """The output tensors asked for (`outputs`); by default the predictions."""

    @property
    def method(self) -> str:
        return METHODS.get(self.outputs, LABELS_AND_PROBABILITIES)


def rows_from_infer_body(body: bytes, header_length: int | None,
                         model: LoadedModel) -> InferRequest:
    """The validated rows of an infer request, its `id` and the outputs it asks for."""
    if header_length is not None and not 0 < header_length <= len(body):
        raise _bad((), "Inference-Header-Content-Length does not fit the body")
    header = body if header_length is None else body[:header_length]
    binary = b"" if header_length is None else body[header_length:]
    check_json(header, model)
    try:
        payload = orjson.loads(header)
    except orjson.JSONDecodeError:
        raise _bad((), "the body is not valid JSON") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list) \
            or not payload["inputs"]:
        raise _bad((), "expected a JSON object with a non-empty inputs list")
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise _bad(("id",), "must be a string")
    outputs = _requested_outputs(payload.get("outputs"), model)
    columns, length = _columns(payload["inputs"], binary, model)
    records = [dict(zip(columns, cells, strict=True))
               for cells in zip(*columns.values(), strict=True)] if length else []
    if model.schema is None:
        if not 1 <= len(records) <= model.max_rows:
            raise _bad(("inputs",), f"1 to {model.max_rows} rows per request")
        return InferRequest(records, request_id, outputs)
    if not records:
        raise _bad(("inputs",), "at least 1 row is required")
    return InferRequest(validated(records, model), request_id, outputs)


def _requested_outputs(outputs: Any, model: LoadedModel) -> tuple[str, ...]:
    """The names in the request's `outputs`: predictions, and a classifier's probabilities."""
    if outputs is None:
        return (OUTPUT,)
    known = (OUTPUT, PROBABILITIES) if model.classes is not None else (OUTPUT,)
    if not isinstance(outputs, list) or not outputs \
            or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs):
        raise _bad(("outputs",), "expected a non-empty list of objects with a name")
    names = tuple(dict.fromkeys(o["name"] for o in outputs))
    for index, name in enumerate(names):
        if name not in known:
            raise _bad(("outputs", index), "unknown output: this model has "
                       + " and ".join(known))
    return names


def infer_response(model: LoadedModel, asked: InferRequest, outputs: Outputs) -> bytes:
    """The output tensors asked for: `predictions` (one element per row) and, for a
    classifier that was asked, `probabilities` (FP64, [rows, classes], in the order of
    the `classes` parameter)."""
    tensors: list[dict[str, Any]] = []
    if OUTPUT in asked.outputs:
        datatype, data = tensor_of(outputs.predictions)
        tensors.append({"name": OUTPUT, "datatype": datatype, "shape": [len(data)],
                        "data": data})
    if PROBABILITIES in asked.outputs:
        matrix = np.asarray(outputs.probabilities, dtype=np.float64)
        tensors.append({"name": PROBABILITIES, "datatype": "FP64", "shape": list(matrix.shape),
                        "data": matrix.ravel(),
                        "parameters": {"classes": ",".join(str(c) for c in model.classes or ())}})
    answer: dict[str, Any] = {"model_name": model.info.name,
                              "model_version": model.info.version or "", "outputs": tensors}
    if asked.id is not None:
        answer["id"] = asked.id
    return orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)


def tensor_of(predictions: Any) -> tuple[str, Any]:
    """The datatype and data of the output tensor for a model's predictions."""
    if isinstance(predictions, np.ndarray) and predictions.ndim == 1:
        if predictions.dtype.kind == "f":
            return "FP64", predictions.astype(np.float64, copy=False)
        if predictions.dtype.kind in "iu":
            return "INT64", predictions.astype(np.int64, copy=False)
        if predictions.dtype.kind == "b":
            return "BOOL", predictions
    values = list(predictions.tolist() if isinstance(predictions, np.ndarray) else predictions)
    if values and all(isinstance(v, bool) for v in values):
        return "BOOL", values
    if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "INT64", values
    if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return "FP64", [float(v) for v in values]
    return "BYTES", [v if isinstance(v, str) else orjson.dumps(v).decode() for v in values]


def _columns(tensors: list[Any], binary: bytes,
             model: LoadedModel) -> tuple[dict[str, list[Any]], int]:
    expected = {c.name: DATATYPES.get(c.type, "BYTES")
                for c in (model.schema.columns if model.schema else ())}
    columns: dict[str, list[Any]] = {}
    offset = 0
    length: int | None = None
    for index, tensor in enumerate(tensors):
        where: tuple[str | int, ...] = ("inputs", index)
        if not isinstance(tensor, dict):
            raise _bad(where, "each input must be an object")
        name, datatype, shape = tensor.get("name"), tensor.get("datatype"), tensor.get("shape")
        if not isinstance(name, str) or not isinstance(datatype, str):
            raise _bad(where, "each input needs a name and a datatype")
        where = (name[:64],)
        if name in columns:
            raise _bad(where, "the same input is given twice")
        if expected and name not in expected:
            raise _bad(where, "unknown input: not in the model signature")
        if expected and datatype not in ACCEPTED[expected[name]]:
            raise _bad(where, f"datatype must be {expected[name]}")
        if datatype not in _NUMPY and datatype != "BYTES":
            raise _bad(where, "unsupported datatype")
        rows = _rows_of_shape(shape, where)
        if rows > model.max_rows:
            raise too_many_rows(model)
        parameters = tensor.get("parameters") or {}
        size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0 \
                    or offset + size > len(binary):
                raise _bad(where, "binary_data_size does not fit the body")
            values = _decode(binary[offset:offset + size], datatype, rows, where)
            offset += size
        else:
            values = _flat(tensor.get("data"), where)
        if len(values) != rows:
            raise _bad(where, f"the shape says {rows} elements, the data has {len(values)}")
        if length is not None and rows != length:
            raise _bad(where, "every input must have the same number of rows")
        length = rows
        target = expected.get(name, datatype)
        columns[name] = [_element(v, datatype, target, where) for v in values]
    if offset != len(binary):
        raise _bad((), "binary data left over after the inputs")
    return columns, length or 0


def _rows_of_shape(shape: Any, where: tuple[str | int, ...]) -> int:
    if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape) \
            or len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
        raise _bad(where, "shape must be [rows] or [rows, 1]: one column per input")
    rows: int = shape[0]
    return rows


def _flat(data: Any, where: tuple[str | int, ...]) -> list[Any]:
    if not isinstance(data, list):
        raise _bad(where, "data must be a list (or use the binary extension)")
    if all(isinstance(v, list) for v in data) and data:
        flat = [v for inner in data for v in inner]
        if any(isinstance(v, list) for v in flat):
            raise _bad(where, "data nests deeper than [rows, 1]")
        return flat
    return data


def _decode(chunk: bytes, datatype: str, rows: int, where: tuple[str | int, ...]) -> list[Any]:
    """The elements of one tensor's binary data; more than the shape's `rows` are refused
    before they are decoded."""
    if datatype != "BYTES":
        dtype = np.dtype(_NUMPY[datatype])
        if len(chunk) % dtype.itemsize:
            raise _bad(where, f"binary data is not a whole number of {datatype} elements")
        if len(chunk) // dtype.itemsize != rows:
            raise _bad(where, f"the shape says {rows} elements, the data has "
                       f"{len(chunk) // dtype.itemsize}")
        values: list[Any] = np.frombuffer(chunk, dtype=dtype).tolist()
        return values
    strings: list[Any] = []
    position = 0
    while position < len(chunk):
        if len(strings) == rows:
            raise _bad(where, f"the shape says {rows} elements, the data has more")
        if position + 4 > len(chunk):
            raise _bad(where, "binary BYTES element is cut short")
        size = int.from_bytes(chunk[position:position + 4], "little")
        position += 4
        if position + size > len(chunk):
            raise _bad(where, "binary BYTES element is cut short")
        try:
            strings.append(chunk[position:position + size].decode("utf-8"))
        except UnicodeDecodeError:
            raise _bad(where, "BYTES elements must be UTF-8 text") from None
        position += size
    return strings


def _element(value: Any, datatype: str, target: str, where: tuple[str | int, ...]) -> Any:
    """A tensor element as the row value the signature validators expect (`target`)."""
    if datatype in ("FP64", "FP32"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _bad(where, "expected numbers")
        if not math.isfinite(value):
            raise _bad(where, "numbers must be finite")
        return float(value)
    if datatype in ("INT64", "INT32"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(where, "expected integers")
        return float(value) if target in ("FP64", "FP32") else value
    if datatype == "BOOL":
        if not isinstance(value, bool):
            raise _bad(where, "expected true or false")
        return value
    if not isinstance(value, str):
        raise _bad(where, "expected strings")
    return value


def _bad(loc: tuple[str | int, ...], message: str) -> InputError:
    return InputError([Problem(loc, message, "oip_format")])
