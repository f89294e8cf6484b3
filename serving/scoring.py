"""The protocol-agnostic scoring core: a model and validated rows in, outputs out.

`score(model, rows, method)` is the one way a request's rows become predictions; the
batcher (`serving.batching`) calls it on the rows of several requests at once, the
loader on the input example at warm-up. It knows nothing of HTTP or of any protocol:
parsers (`serving.protocols`) make the rows, routers write the outputs in their shape.

A probabilities request predicts once: the compiled twin computes labels and
probabilities in one run of its graph; a scikit-learn pipeline computes its features
once for both heads. What the model raises is our failure (`ModelFailure`, 5xx),
unless an input is out of its range (`InputError`, 4xx, naming the row).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from serving.errors import InputError, ModelFailure, Problem, problems_of, short
from serving.model import Inputs, LoadedModel
from serving.schema import ColumnBatch

__all__ = [  # the model types and errors are re-exported for the loader and the store
    "LABELS_AND_PROBABILITIES", "METHODS", "PREDICT", "PROBABILITIES", "InputError",
    "LoadedModel", "ModelFailure", "Outputs", "as_frame", "check_method",
    "frame_of", "inputs_from_records", "inputs_of", "rows_of_frame", "rows_of_records", "run",
    "score",
]

PREDICT = "predict"
"""Labels (a classifier) or values (a regressor)."""
PROBABILITIES = "predict_proba"
"""A classifier's class probabilities only (one row each, columns in `model.classes` order)."""
LABELS_AND_PROBABILITIES = "predict+proba"
"""Both, from one call where the runtime allows."""
METHODS = (PREDICT, PROBABILITIES, LABELS_AND_PROBABILITIES)

NOT_FINITE_PREDICTION = "out of the model's range: the prediction is not a finite number"
NOT_FINITE_FEATURE = "out of the model's range: the model's transformed value is not finite"


@dataclass(frozen=True)
class Outputs:
    """What a model answered for some rows: what was asked, None for the rest."""

    predictions: Any = None
    probabilities: Any = None

    def rows(self, start: int, end: int) -> Outputs:
        """The outputs of rows `start` to `end` (one request's share of a batch)."""
        return Outputs(None if self.predictions is None else self.predictions[start:end],
                       None if self.probabilities is None else self.probabilities[start:end])


def check_method(model: LoadedModel, method: str, where: tuple[str | int, ...]) -> None:
    """Probabilities only from a classifier: asking a regressor is the caller's mistake."""
    if method != PREDICT and model.classes is None:
        raise InputError([Problem(where, "this model is a regressor: it has no class "
                                  "probabilities", "not_a_classifier")])


def score(model: LoadedModel, rows: Sequence[Any], method: str = PREDICT) -> Outputs:
    """The outputs `method` asks for, for validated rows (of one request, or several)."""
    try:
        inputs = inputs_of(model, rows)
    except Exception as err:
        raise ModelFailure(f"{type(err).__name__} building the frame") from err
    if method == PREDICT:
        return Outputs(predictions=run(model, inputs))
    labels, probabilities = _call(model, inputs, method)
    return Outputs(predictions=None if labels is None else _checked(model, inputs, labels),
                   probabilities=_checked(model, inputs, probabilities))


def run(model: LoadedModel, inputs: Inputs) -> Any:
    """The model's predictions (labels or values) for inputs it takes, checked.

    A finite input can still overflow inside the model (1e308 through a scaler) and make
    it raise or predict infinity. That is the caller's input, so the rows (and, for a
    pipeline, the columns) whose transformed features or predictions are not finite get
    an `InputError`. The check runs only when something went wrong: the normal path
    costs one `isfinite` over the predictions.
    """
    labels, _ = _call(model, inputs, PREDICT)
    return _checked(model, inputs, labels)


def inputs_of(model: LoadedModel, rows: Sequence[Any]) -> Inputs:
    """Validated rows as the model's predictor takes them.

    The compiled twin (`takes_columns`) takes one array per column; sklearn a frame.
    """
    if model.schema is not None and getattr(model.predictor, "takes_columns", False):
        return model.schema.batch(rows)
    return frame_of(model, rows)


def frame_of(model: LoadedModel, rows: Sequence[Any]) -> pd.DataFrame:
    """One frame from validated rows (of one request, or of several batched together)."""
    if model.schema is None:
        return pd.DataFrame.from_records(rows)
    return model.schema.frame(rows)


def as_frame(inputs: Inputs) -> pd.DataFrame:
    return inputs.frame() if isinstance(inputs, ColumnBatch) else inputs


def rows_of_records(model: LoadedModel, records: Sequence[Mapping[str, Any]]) -> list[Any]:
    """Plain row objects (Python or numpy values, NaN for missing) validated as a request's.

    The path of the input example at warm-up and of the Open Inference Protocol's
    metadata: straight to the validators, no JSON in between.
    """
    plain = [{str(name): _plain(value) for name, value in record.items()} for record in records]
    if model.schema is None:
        return plain
    try:
        rows: list[Any] = model.schema.records.validate_python(plain)
    except ValidationError as err:
        raise InputError(problems_of(err)) from None
    return rows


def rows_of_frame(model: LoadedModel, frame: Any) -> list[Any]:
    """The rows of a frame (the input example), validated as a request's."""
    table = frame if isinstance(frame, pd.DataFrame) else pd.DataFrame(frame)
    return rows_of_records(model, table.to_dict(orient="records"))


def inputs_from_records(records: list[dict[str, Any]], model: LoadedModel) -> Inputs:
    """Plain rows validated the way requests are, as the model's predictor takes them."""
    return inputs_of(model, rows_of_records(model, records))


def _plain(value: Any) -> Any:
    """A cell as JSON would carry it: None for a missing value, numpy scalars as Python's."""
    if value is None or isinstance(value, (str, bytes)):
        return value
    missing = pd.isna(value)
    if isinstance(missing, (bool, np.bool_)) and missing:
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _call(model: LoadedModel, inputs: Inputs, method: str) -> tuple[Any, Any]:
    """(labels, probabilities) as `method` asks, each None when not asked."""
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # judged by `_checked`
            if method == PREDICT:
                return model.predictor.predict(inputs), None
            if method == PROBABILITIES:
                return None, model.predictor.predict_proba(inputs)
            return _labels_and_probabilities(model, inputs)
    except Exception as err:
        problems = _out_of_range(model, inputs)
        if problems:
            raise InputError(problems) from None
        raise ModelFailure(f"{type(err).__name__} in predict") from err


def _labels_and_probabilities(model: LoadedModel, inputs: Inputs) -> tuple[Any, Any]:
    """Both outputs from one call where the runtime allows it.

    The compiled twin: one run of its graph, asking for both of its outputs. A
    scikit-learn pipeline: its transformers once, then both heads of its estimator
    (exactly what `Pipeline.predict` and `predict_proba` each compute). Any other
    predictor: its two methods.
    """
    predictor: Any = model.predictor
    session = getattr(predictor, "session", None)
    if model.runtime == "onnx" and session is not None and hasattr(predictor, "feeds"):
        names = [output.name for output in session.get_outputs()][:2]
        labels, probabilities = session.run(names, predictor.feeds(inputs))
        return np.asarray(labels).ravel(), np.asarray(probabilities, dtype=np.float64)
    estimator = getattr(predictor, "estimator", None)
    steps = getattr(estimator, "steps", None)
    if model.runtime == "sklearn" and isinstance(steps, list) and len(steps) > 1:
        import sklearn

        with sklearn.config_context(skip_parameter_validation=True):
            features: Any = inputs
            for _, step in steps[:-1]:
                if step is not None and step != "passthrough":
                    features = step.transform(features)
            head = steps[-1][1]
            return head.predict(features), head.predict_proba(features)
    return predictor.predict(inputs), predictor.predict_proba(inputs)


def _checked(model: LoadedModel, inputs: Inputs, output: Any) -> Any:
    """One output in a shape orjson writes, one entry per row, finite where numeric."""
    values = _jsonable(output)
    if len(values) != len(inputs):
        raise ModelFailure(f"predict returned {len(values)} rows for {len(inputs)}")
    if isinstance(values, np.ndarray) and values.dtype.kind == "f":
        finite = np.isfinite(values)
        if not finite.all():
            rows = ~finite.reshape(len(inputs), -1).all(axis=1)
            raise InputError(_out_of_range(model, inputs) or [
                Problem((int(row),), NOT_FINITE_PREDICTION, "not_finite")
                for row in np.flatnonzero(rows)])
    return values


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
        problems.extend(Problem((int(row), short(c)), NOT_FINITE_FEATURE, "not_finite")
                        for c in columns)
        if not columns:
            problems.append(Problem((int(row),), NOT_FINITE_FEATURE, "not_finite"))
    return problems


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
