"""The compiled twin of a fitted model: convert to ONNX, prove it predicts the same, or say why not.

`compile_twin` converts the whole sklearn Pipeline (features and estimator) with
skl2onnx, in double precision, and scores the rows it is given with both. The twin is
kept only when it agrees with the model within the tolerance (`modelio.twin.parity`):
for regression the largest absolute difference is at most `1e-6 * max(1, |y|)` (or the
tolerance the card declares, in target units); for classification the labels are
identical and the probabilities within 1e-6. Anything else is a `TwinRefused` with a
one-line reason: the model still trains and serves through sklearn.

A verified twin carries, in its ONNX metadata, the tolerance it was verified with and
the model's own answers on the input example logged with it (`modelio.twin.Recorded`):
the server checks the twin against those and serves it before scikit-learn is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from modelio.twin import (
    RECORDED_KEY,
    TOLERANCE_KEY,
    OnnxPredictor,
    Parity,
    Recorded,
    compare,
    parity,
    regression_tolerance,
)
from pipeline.stages import onnx_compat
from pipeline.stages.datasets import DatasetSpec

if TYPE_CHECKING:  # scikit-learn costs every command that only reads a twin a second
    from sklearn.pipeline import Pipeline

    from pipeline.stages.data import PreparedData
    from pipeline.stages.evaluate import Predictions

TARGET_OPSET = {"": 18, "ai.onnx.ml": 3}


@dataclass(frozen=True)
class Twin:
    """A verified twin: its serialized graph and how closely it matched."""

    onnx_bytes: bytes
    parity: Parity


@dataclass(frozen=True)
class TwinRefused:
    """No twin: `reason` is one line for the log and the run."""

    reason: str
    parity: Parity | None = None


def convert(model: Pipeline, spec: DatasetSpec) -> bytes:
    """The pipeline as an ONNX graph: one double or string input per raw column."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import DoubleTensorType, StringTensorType

    onnx_compat.install()
    numeric = set(spec.numeric_features())
    inputs = [(name, DoubleTensorType([None, 1]) if name in numeric
               else StringTensorType([None, 1])) for name in spec.feature_names]
    options = {"zipmap": False} if spec.task == "classification" else None
    graph = to_onnx(model, initial_types=inputs, target_opset=TARGET_OPSET,
                    options={id(model.steps[-1][1]): options} if options else None)
    return bytes(graph.SerializeToString())


def compile_twin(model: Pipeline, spec: DatasetSpec, x_rows: pd.DataFrame,
                 y_rows: pd.Series | None = None, *, tolerance: float | None = None,
                 example: pd.DataFrame | None = None,
                 expected: Predictions | None = None) -> Twin | TwinRefused:
    """The twin of `model`, verified on `x_rows` (the rows training evaluates on);
    `example` is the input example logged with the model, whose answers it records;
    `expected`, the model's answers on `x_rows` when the caller has them already."""
    try:
        onnx_bytes = convert(model, spec)
        predictor = OnnxPredictor(onnx_bytes)
    except Exception as err:  # any failure to convert is a reason, not a crash
        return TwinRefused(f"cannot convert to ONNX: {_one_line(err)}")
    return verify(model, predictor, onnx_bytes, spec, x_rows, y_rows, tolerance=tolerance,
                  example=example, expected=expected)


def verify(model: Pipeline, predictor: OnnxPredictor, onnx_bytes: bytes, spec: DatasetSpec,
           x_rows: pd.DataFrame, y_rows: pd.Series | None = None, *,
           tolerance: float | None = None,
           example: pd.DataFrame | None = None,
           expected: Predictions | None = None) -> Twin | TwinRefused:
    """Score `x_rows` with both (the model's answers taken from `expected` when given);
    the twin if they agree."""
    classification = spec.task == "classification"
    limit = 0.0 if classification else regression_tolerance(
        y_rows if y_rows is not None else model.predict(x_rows), tolerance)
    if not classification and tolerance is None and onnx_compat.single_precision(model):
        limit *= onnx_compat.SINGLE_PRECISION_TOLERANCE / 1e-6  # float32 models' own rounding
    try:
        if expected is None:
            measured = parity(model, predictor, x_rows, classification=classification,
                              tolerance=limit)
        else:
            measured = compare(expected.prediction,
                               expected.probabilities if classification else None,
                               predictor, x_rows, tolerance=limit)
    except Exception as err:
        return TwinRefused(f"the twin fails to score: {_one_line(err)}")
    if not measured.ok:
        return TwinRefused(f"the twin disagrees with the model: {measured.line()}", measured)
    recorded = Recorded.of(model, example) if example is not None else None
    return Twin(onnx_bytes=with_metadata(onnx_bytes, measured.tolerance, recorded),
                parity=measured)


def derive(model: Pipeline, data: PreparedData, *, tolerance: float | None,
           example: pd.DataFrame | None) -> bytes | None:
    """The twin promotion records for a verified model, checked on the validation rows;
    None when it cannot be converted or does not agree (then sklearn serves)."""
    twin = compile_twin(model, data.spec, data.x_validation, data.y_validation,
                        tolerance=tolerance, example=example)
    return twin.onnx_bytes if isinstance(twin, Twin) else None


def with_metadata(onnx_bytes: bytes, tolerance: float, recorded: Recorded | None) -> bytes:
    """The graph with the tolerance it was verified with and the model's answers on the
    input example, for the server's own checks."""
    import onnx

    graph = onnx.load_from_string(onnx_bytes)
    props = {TOLERANCE_KEY: repr(float(tolerance))}
    if recorded is not None:
        props[RECORDED_KEY] = recorded.to_json()
    onnx.helper.set_model_props(graph, props)
    return bytes(graph.SerializeToString())


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return f"{type(err).__name__}: {text}"[:300]
