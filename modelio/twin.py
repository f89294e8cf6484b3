"""A model's compiled twin: its ONNX graph, checked as data, scored with onnxruntime.

Promotion compiles the twin (`pipeline.stages.twin`) from the verified model and writes
it next to the model file, inside the model's folder, recorded in the manifest, so every
reader verifies it like every other file. ONNX is a protobuf graph of operators: before
onnxruntime reads it, `check_graph` admits only allowlisted standard operators, so a
served graph has a bounded cost and reads nothing outside its bytes.

The twin takes one input per raw column, in double for numbers and strings for
categories, where a missing category is the empty string (`MISSING_CATEGORY`, as the
sklearn pipeline marks it too). Training, the gate, promote, batch scoring and the
server score and compare twins with this module alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelio.files import TWIN_FILE, ModelRefused

__all__ = ["ALLOWED_OPERATORS", "TWIN_FILE", "OnnxPredictor", "Parity", "Recorded",
           "check_graph", "checked_twin", "disagreement", "example_parity", "parity",
           "recorded_twin", "regression_tolerance"]

TOLERANCE_KEY = "mlops.parity_tolerance"
"""ONNX metadata: the tolerance the twin was verified with at training (target units)."""
RECORDED_KEY = "mlops.example_answers"
"""ONNX metadata: the sklearn model's own answers on the version's input example (JSON)."""

MISSING_CATEGORY = ""
DEFAULT_THREADS = 1

ALLOWED_OPERATORS: dict[str, frozenset[str]] = {
    "": frozenset({
        # arithmetic and comparisons, one output element per input element (broadcast)
        "Abs", "Add", "And", "Div", "Equal", "Exp", "Greater", "IsNaN", "Less", "Log",
        "Max", "Min", "Mul", "Neg", "Not", "Or", "Sigmoid", "Sqrt", "Sub", "Where",
        # linear algebra and reductions over the row's features
        "ArgMax", "Gemm", "MatMul", "ReduceSum", "Softmax",
        # moving data, never growing it beyond its inputs and initializers
        "Cast", "Concat", "Flatten", "Gather", "Identity", "Reshape", "Squeeze",
        "Transpose", "Unsqueeze",
    }),
    "ai.onnx.ml": frozenset({
        "ArrayFeatureExtractor", "Binarizer", "LabelEncoder", "LinearClassifier",
        "LinearRegressor", "Normalizer", "OneHotEncoder", "Scaler", "TreeEnsembleClassifier",
        "TreeEnsembleRegressor",
    }),
}
"""The operators a served twin may use: what our converters emit, each of which costs a
bounded amount per row for a graph of a given size. Left out on purpose: control flow
(`Loop`, `Scan`, `If`: a trip count read from the input can run for ever), operators
whose output size is a value read at run time (`ConstantOfShape`, `Expand`, `Tile`,
`Range`, `Pad`, `Resize`), custom domains (code in a library) and sequences and maps.
Add one only after reading what it can cost when its inputs are hostile."""
_SUBGRAPH_ATTRIBUTES = (5, 10)  # AttributeProto.GRAPH, GRAPHS
_TENSOR_ATTRIBUTES = (4, 9, 11, 12)  # TENSOR, TENSORS, SPARSE_TENSOR, SPARSE_TENSORS
_EXTERNAL = 1  # TensorProto.EXTERNAL


def check_graph(model_bytes: bytes) -> None:
    """Refuse a graph whose cost is not bounded, or that would read outside its own bytes.

    A twin is data only if every node is a known operator of the standard domains: no
    control flow or subgraphs, no local functions, no custom domain, and no tensor whose
    bytes live in an external file (onnxruntime would resolve its path against the
    server's working directory). Parsing the protobuf builds no session and runs nothing.
    """
    import onnx

    try:
        model = onnx.load_from_string(model_bytes)
    except Exception:  # anything that is not a ModelProto
        raise ModelRefused("graph", f"{TWIN_FILE} is not an ONNX model") from None
    for opset in model.opset_import:
        if opset.domain not in ("", "ai.onnx", "ai.onnx.ml"):
            raise ModelRefused("graph", f"{TWIN_FILE} imports operator domain "
                               f"{opset.domain[:64]!r}: only the standard ONNX domains load")
    if len(model.functions):
        raise ModelRefused("graph", f"{TWIN_FILE} defines local functions: refused")
    tensors = [*model.graph.initializer,
               *(sparse.values for sparse in model.graph.sparse_initializer)]
    for node in model.graph.node:
        domain = "" if node.domain in ("", "ai.onnx") else node.domain
        if node.op_type not in ALLOWED_OPERATORS.get(domain, frozenset()):
            name = f"{domain}.{node.op_type}" if domain else node.op_type
            raise ModelRefused("graph", f"{TWIN_FILE} uses operator {name[:80]}, which is not "
                               "on the served graphs' allowlist (modelio/twin.py)")
        for attribute in node.attribute:
            if attribute.type in _SUBGRAPH_ATTRIBUTES or attribute.HasField("g") \
                    or len(attribute.graphs):
                raise ModelRefused("graph", f"{TWIN_FILE} holds a subgraph: refused")
            if attribute.type in _TENSOR_ATTRIBUTES:
                tensors += [*([attribute.t] if attribute.HasField("t") else []),
                            *attribute.tensors,
                            *([attribute.sparse_tensor.values]
                              if attribute.HasField("sparse_tensor") else []),
                            *(sparse.values for sparse in attribute.sparse_tensors)]
    if any(t.data_location == _EXTERNAL or len(t.external_data) for t in tensors):
        raise ModelRefused("graph", f"{TWIN_FILE} keeps tensor data in an external file: "
                           "refused (a served graph reads nothing outside its model folder)")


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


@dataclass(frozen=True)
class Recorded:
    """What the sklearn model answered on the input example at training, kept in the twin.

    The server checks the twin against these instead of against the skops model, so it
    can serve the twin before scikit-learn is even imported (`recorded_twin`); the file
    is covered by the manifest, so the answers are the ones training computed.
    """

    predictions: list[Any]
    probabilities: list[list[float]] | None = None
    classes: list[Any] | None = None
    """A classifier's labels, in the order of its probability columns."""

    def to_json(self) -> str:
        return json.dumps({"predictions": self.predictions, "probabilities": self.probabilities,
                           "classes": self.classes}, separators=(",", ":"))

    @classmethod
    def of(cls, model: Any, frame: pd.DataFrame) -> Recorded:
        """The model's answers on `frame` (its input example)."""
        import sklearn

        with sklearn.config_context(skip_parameter_validation=True):
            predictions = np.asarray(model.predict(frame)).tolist()
            if not hasattr(model, "predict_proba"):
                return cls(predictions=predictions)
            probabilities = np.asarray(model.predict_proba(frame), dtype=np.float64).tolist()
        return cls(predictions=predictions, probabilities=probabilities,
                   classes=np.asarray(model.classes_).tolist())

    @classmethod
    def from_json(cls, text: str | None) -> Recorded | None:
        """None when absent or not what training writes (then the twin is not served first)."""
        try:
            value = json.loads(text) if text else None
        except ValueError:
            return None
        if not isinstance(value, dict) or not isinstance(value.get("predictions"), list):
            return None
        probabilities, classes = value.get("probabilities"), value.get("classes")
        if (probabilities is None) != (classes is None):
            return None
        return cls(predictions=value["predictions"], probabilities=probabilities,
                   classes=classes)


class OnnxPredictor:
    """`predict` (and `predict_proba`) of a twin, with the frame fed as its inputs."""

    runtime = "onnx"
    takes_columns = True
    """The server hands it `schema.ColumnBatch` arrays, not a pandas frame (faster)."""

    def __init__(self, model_bytes: bytes, *, threads: int = DEFAULT_THREADS) -> None:
        import onnxruntime as ort

        check_graph(model_bytes)  # before onnxruntime reads a byte of it
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

    @property
    def recorded(self) -> Recorded | None:
        """The model's answers on the input example, when training recorded them."""
        meta = self.session.get_modelmeta().custom_metadata_map
        recorded = Recorded.from_json(meta.get(RECORDED_KEY))
        if recorded is not None and (recorded.classes is not None) != self.classifier:
            return None
        return recorded

    @property
    def classes(self) -> tuple[Any, ...] | None:
        """A classifier's labels as training recorded them (None: a regressor, or none)."""
        recorded = self.recorded
        return tuple(recorded.classes) if recorded and recorded.classes is not None else None

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
            values = _marked_text(frame[name]) if is_text else _doubles(frame[name])
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


def _marked_text(values: Any) -> np.ndarray:
    """A text input as onnxruntime takes it: strings, with gaps (and non-text) marked.

    A pandas column is converted through its few distinct values (batch scoring: one
    Python step per category, not per row); anything else (the server's column lists)
    value by value.
    """
    if isinstance(values, pd.Series):
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        labels = np.array([v if isinstance(v, str) else MISSING_CATEGORY for v in uniques]
                          + [MISSING_CATEGORY], dtype=object)
        marked: np.ndarray = labels[codes]
        return marked  # a gap's code, -1, is the last label: the marker
    return np.array([v if isinstance(v, str) else MISSING_CATEGORY for v in values],
                    dtype=object)


def _doubles(column: Any) -> np.ndarray:
    """A number input as onnxruntime takes it: doubles, NaN for a gap (None)."""
    values = np.asarray(column)
    if values.dtype == np.float64:
        return values
    if values.dtype == object:
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    return values.astype(np.float64)


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
    return compare(expected, expected_proba, twin, frame, tolerance=tolerance)


def compare(expected: Any, expected_proba: Any, twin: Any, frame: Any, *,
            tolerance: float) -> Parity:
    """The twin's answers on `frame` against `expected` (and, for a classifier, the
    expected probabilities): the one measure of agreement, wherever the expected answers
    come from (the sklearn model, or what training recorded)."""
    found = twin.predict(frame)
    if len(np.asarray(expected)) != len(found):
        return Parity(rows=len(frame), max_abs=float("inf"), tolerance=tolerance)
    if expected_proba is None:
        diff = np.abs(np.asarray(expected, dtype=np.float64).ravel()
                      - np.asarray(found, dtype=np.float64).ravel())
        worst = float(np.nanmax(diff)) if diff.size else 0.0
        if not np.isfinite(diff).all():
            worst = float("inf")
        return Parity(rows=len(frame), max_abs=worst, tolerance=tolerance)
    labels_differ = int(np.sum(np.asarray(expected).astype(str)
                               != np.asarray(found).astype(str)))
    expected_proba = np.asarray(expected_proba, dtype=np.float64)
    found_proba = twin.predict_proba(frame)
    if expected_proba.shape != found_proba.shape:
        return Parity(rows=len(frame), max_abs=float("inf"), tolerance=PROBABILITY_TOLERANCE)
    diff = np.abs(expected_proba - found_proba)
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
    taken only through here or `recorded_twin`: its file was verified by the manifest
    with every other file (`modelio.files.check_files`), and this re-checks it against the
    model it twins.
    """
    twin, why_not = _load(twin_file, threads)
    if twin is None:
        return None, why_not
    why_not = disagreement(twin, estimator, example)
    return (twin, None) if why_not is None else (None, why_not)


def disagreement(twin: OnnxPredictor, estimator: Any, example: Any) -> str | None:
    """None when the twin agrees with `estimator` on the input example, else why not in
    one line. The twin keeps the estimator, to explain bad input (`serving.scoring`)."""
    twin.estimator = estimator
    if example is None:
        return None
    try:
        measured = example_parity(estimator, twin, _frame(example))
    except Exception as err:
        return f"refused: the twin fails on the input example: {_one_line(err)}"
    if not measured.ok:
        return f"refused: the twin disagrees with the model on the input example: " \
               f"{measured.line()}"
    return None


def recorded_twin(twin_file: Path | None, example: Any, *,
                  threads: int = DEFAULT_THREADS) -> tuple[OnnxPredictor | None, str | None]:
    """The twin, when it gives the answers training recorded for its model on the input
    example (`Recorded`); else None and why not, in one line.

    This is `checked_twin` without the sklearn model: the expected answers were computed
    by that model at training and travel inside the twin's file, which the manifest
    covers. It lets the server answer before loading scikit-learn (`serving.loader`);
    the server still loads the sklearn model afterwards and re-checks the twin against
    it (`disagreement`).
    """
    twin, why_not = _load(twin_file, threads)
    if twin is None:
        return None, why_not
    recorded = twin.recorded
    if recorded is None or example is None:
        return None, "the twin records no answers on the input example"
    frame = _frame(example)
    tolerance = 0.0 if twin.classifier else regression_tolerance(recorded.predictions,
                                                                 twin.tolerance)
    try:
        measured = compare(recorded.predictions, recorded.probabilities, twin, frame,
                           tolerance=tolerance)
    except Exception as err:
        return None, f"refused: the twin fails on the input example: {_one_line(err)}"
    if not measured.ok:
        return None, f"refused: the twin disagrees with the answers recorded at training " \
                     f"on the input example: {measured.line()}"
    return twin, None


def _load(twin_file: Path | None, threads: int) -> tuple[OnnxPredictor | None, str | None]:
    if twin_file is None:
        return None, "this version has no compiled twin"
    try:
        return OnnxPredictor.from_file(twin_file, threads=threads), None
    except Exception as err:
        return None, f"refused: cannot load {TWIN_FILE}: {_one_line(err)}"


def _frame(example: Any) -> pd.DataFrame:
    return example if isinstance(example, pd.DataFrame) else pd.DataFrame(example)


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return f"{type(err).__name__}: {text}"[:300]
