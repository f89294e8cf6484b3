"""A model's compiled twin: its ONNX graph, scored with onnxruntime from a pandas frame.

Training writes the twin (`pipeline.stages.twin`) next to the skops file, inside the
model's folder, so the manifest promotion records covers its bytes and the server
verifies it like every other file. ONNX is data (a protobuf graph of standard
operators): loading it runs no code of the model's author.

The twin takes one input per raw column, in double for numbers and strings for
categories, where a missing category is the empty string (`MISSING_CATEGORY`, as the
sklearn pipeline marks it too). This module imports nothing of the project but the
serving package: the serving image ships it, training and the gate import it so all
three score a twin the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from serving.modelfiles import TWIN_FILE

__all__ = ["TWIN_FILE", "OnnxPredictor", "Parity", "checked_twin", "example_parity", "parity",
           "regression_tolerance"]

TOLERANCE_KEY = "mlops.parity_tolerance"
"""ONNX metadata: the tolerance the twin was verified with at training (target units)."""

MISSING_CATEGORY = ""
DEFAULT_THREADS = 1


@dataclass(frozen=True)
class Parity:
    """How far a twin's predictions are from its sklearn model's, on `rows` rows."""

    rows: int
    max_abs: float
    """Regression: the largest absolute difference; classification: of probabilities."""
    tolerance: float
    labels_differ: int = 0
    """Classification: rows where the predicted labels differ (must be 0)."""

    @property
    def ok(self) -> bool:
        return self.labels_differ == 0 and bool(self.max_abs <= self.tolerance)

    def line(self) -> str:
        labels = f", {self.labels_differ} labels differ" if self.labels_differ else ""
        return (f"max abs difference {self.max_abs:.3g} (tolerance {self.tolerance:.3g}) "
                f"over {self.rows} rows{labels}")


class OnnxPredictor:
    """`predict` (and `predict_proba`) of a twin, with the frame fed as its inputs."""

    runtime = "onnx"
    takes_columns = True
    """The server hands it `schema.ColumnBatch` arrays, not a pandas frame (faster)."""

    def __init__(self, model_bytes: bytes, *, threads: int = DEFAULT_THREADS) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(model_bytes, sess_options=options,
                                            providers=["CPUExecutionProvider"])
        self._inputs = [(i.name, i.type == "tensor(string)") for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        self._label = outputs[0]
        self._proba = outputs[1] if len(outputs) > 1 else None
        self.estimator: Any = None
        """The sklearn model it twins, when the server has it: only to explain bad input."""

    @property
    def classifier(self) -> bool:
        return self._proba is not None

    @property
    def tolerance(self) -> float | None:
        """The regression tolerance recorded at training, if any."""
        value = self.session.get_modelmeta().custom_metadata_map.get(TOLERANCE_KEY)
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None

    @classmethod
    def from_file(cls, path: Path, *, threads: int = DEFAULT_THREADS) -> OnnxPredictor:
        return cls(path.read_bytes(), threads=threads)

    def feeds(self, frame: Any) -> dict[str, np.ndarray]:
        """One (rows, 1) array per input: doubles with NaN for gaps, or marked strings.

        `frame` is a pandas frame or the server's `ColumnBatch` (anything indexed by
        column name). Plain numpy on each column, no pandas conversions: on one row
        this was the larger part of the twin's cost.
        """
        feeds: dict[str, np.ndarray] = {}
        for name, is_text in self._inputs:
            values = np.asarray(frame[name])
            if is_text:
                values = np.array([v if isinstance(v, str) else MISSING_CATEGORY
                                   for v in values], dtype=object)
            elif values.dtype != np.float64:
                values = np.array([np.nan if v is None else v for v in values],
                                  dtype=np.float64) if values.dtype == object \
                    else values.astype(np.float64)
            feeds[name] = values.reshape(-1, 1)
        return feeds

    def predict(self, frame: Any) -> np.ndarray:
        out = self.session.run([self._label], self.feeds(frame))[0]
        if out.dtype.kind == "f":
            return np.asarray(out, dtype=np.float64).reshape(len(frame), -1)[:, 0] \
                if out.ndim == 2 and out.shape[1] == 1 else np.asarray(out, dtype=np.float64)
        return np.asarray(out).ravel()

    def predict_proba(self, frame: Any) -> np.ndarray:
        if self._proba is None:
            raise AttributeError("this twin is a regressor: it has no probabilities")
        return np.asarray(self.session.run([self._proba], self.feeds(frame))[0],
                          dtype=np.float64)


def regression_tolerance(truth: Any, declared: float | None = None) -> float:
    """1e-6 of the largest target (at least 1e-6), or the card's tolerance in target units."""
    if declared is not None:
        return float(declared)
    values = np.abs(np.asarray(truth, dtype=np.float64))
    return 1e-6 * max(1.0, float(values.max()) if values.size else 1.0)


PROBABILITY_TOLERANCE = 1e-6


def parity(model: Any, twin: Any, frame: pd.DataFrame, *, classification: bool,
           tolerance: float) -> Parity:
    """Score `frame` with both and measure how far apart they are."""
    import sklearn

    with sklearn.config_context(skip_parameter_validation=True):
        expected = model.predict(frame)
        expected_proba = model.predict_proba(frame) if classification else None
    found = twin.predict(frame)
    if not classification:
        diff = np.abs(np.asarray(expected, dtype=np.float64).ravel()
                      - np.asarray(found, dtype=np.float64).ravel())
        worst = float(np.nanmax(diff)) if diff.size else 0.0
        if not np.isfinite(diff).all():
            worst = float("inf")
        return Parity(rows=len(frame), max_abs=worst, tolerance=tolerance)
    labels_differ = int(np.sum(np.asarray(expected).astype(str)
                               != np.asarray(found).astype(str)))
    diff = np.abs(np.asarray(expected_proba, dtype=np.float64) - twin.predict_proba(frame))
    return Parity(rows=len(frame), max_abs=float(diff.max()) if diff.size else 0.0,
                  tolerance=PROBABILITY_TOLERANCE, labels_differ=labels_differ)


def example_parity(estimator: Any, twin: OnnxPredictor, frame: pd.DataFrame) -> Parity:
    """The twin against the sklearn model, with the tolerance it was verified with."""
    classification = twin.classifier
    tolerance = 0.0
    if not classification:
        import sklearn

        with sklearn.config_context(skip_parameter_validation=True):
            tolerance = regression_tolerance(estimator.predict(frame), twin.tolerance)
    return parity(estimator, twin, frame, classification=classification, tolerance=tolerance)


def checked_twin(twin_file: Path | None, estimator: Any, example: Any, *,
                 threads: int = DEFAULT_THREADS) -> tuple[OnnxPredictor | None, str | None]:
    """The twin, when the model has one and it agrees with sklearn on the input example;
    else None and why not, in one line.

    Wherever a model is loaded (the server, batch scoring, a Spark executor) its twin is
    taken only through here: its file was verified by the manifest with every other
    file (`modelfiles.check_model`), and this re-checks it against the model it twins.
    """
    if twin_file is None:
        return None, "this version has no compiled twin"
    try:
        twin = OnnxPredictor.from_file(twin_file, threads=threads)
        twin.estimator = estimator
    except Exception as err:
        return None, f"refused: cannot load {TWIN_FILE}: {_one_line(err)}"
    if example is not None:
        frame = example if isinstance(example, pd.DataFrame) else pd.DataFrame(example)
        try:
            measured = example_parity(estimator, twin, frame)
        except Exception as err:
            return None, f"refused: the twin fails on the input example: {_one_line(err)}"
        if not measured.ok:
            return None, f"refused: the twin disagrees with the model on the input " \
                         f"example: {measured.line()}"
    return twin, None


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return f"{type(err).__name__}: {text}"[:300]
