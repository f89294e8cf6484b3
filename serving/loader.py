"""Making a registry version ready to serve: resolve, download, verify, load, warm up.

`registry_resolver` asks the registry which version an alias points at, and the
manifest promotion recorded on it; `mlflow_loader` downloads that version's files,
verifies them (`modelio`: the manifest, data-only format, allowed types)
before anything is deserialized, loads the model with skops, builds the request schema
from its signature and scores its input example through the request path. A failure
raises `LoadError` (a refusal: `Refused`) with one line, and the store keeps serving
what it has.

Twin first: a version verified by its manifest whose compiled twin gives the answers
training recorded on the input example (`modelio.twin.recorded_twin`) is returned
before its sklearn model is loaded, with the rest (the skops types check, loading,
`checked_twin` against the model) as `LoadedModel.pending`. Importing scikit-learn and
skops is most of a cold start; the store serves such a model at once when it has
nothing else to serve, and finishes `pending` before a swap otherwise (`serving.store`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import modelio
from modelio import source as modelio_source
from modelio.files import CheckedModel, ModelRefused
from modelio.source import Source
from modelio.twin import OnnxPredictor, checked_twin, disagreement, recorded_twin
from serving import scoring
from serving.schema import from_signature

# An unreachable registry should show up in seconds, not after MLflow's minutes of retries.
MLFLOW_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}



class LoadError(Exception):
    """A version could not be made ready; the message is one line."""


class Refused(LoadError):
    """A version failed a check before loading: it is never deserialized."""

    def __init__(self, source: Source, refusal: ModelRefused) -> None:
        super().__init__(f"refused: {refusal}")
        self.version = source.identity.version
        self.rule = refusal.rule
        self.file = refusal.file
        self.expected = refusal.expected
        self.found = refusal.found

    def as_dict(self) -> dict[str, str | None]:
        return {"version": self.version, "rule": self.rule, "file": self.file,
                "expected": self.expected, "found": self.found, "reason": str(self)}


Resolver = Callable[[], Source]
Loader = Callable[[Source], scoring.LoadedModel]


def registry_resolver(tracking_uri: str, name: str, alias: str) -> Resolver:
    """Ask the registry which version `alias` points at (with its recorded manifest)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def resolve() -> Source:
        return modelio_source.of_version(client.get_model_version_by_alias(name, alias))

    return resolve


def mlflow_loader(*, tracking_uri: str, max_rows: int, runtime: str = "auto",
                  onnx_threads: int = 1, sklearn_threads: int = 1,
                  twin_first: bool = True, id_column: str | None = None) -> Loader:
    """Download, verify, load its kind (and the twin with onnxruntime), warm up."""
    limit_sklearn_threads(sklearn_threads)

    def load(source: Source) -> scoring.LoadedModel:
        workdir = Path(tempfile.mkdtemp(prefix="serving-model-"))
        try:
            local = _download(source, workdir, tracking_uri)
            opened = _check(source, local)
            model, example = _assemble(opened, max_rows=max_rows, runtime=runtime,
                                       onnx_threads=onnx_threads, twin_first=twin_first,
                                       id_column=id_column)
            warm_up(model, example)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        if model.pending is None:
            shutil.rmtree(workdir, ignore_errors=True)
            return model
        return dataclasses.replace(model, pending=_then_remove(model.pending, workdir))

    return load


def _then_remove(pending: Callable[[], scoring.LoadedModel], workdir: Path
                 ) -> Callable[[], scoring.LoadedModel]:
    """`pending`, and the version's downloaded files removed once it has run."""
    def run() -> scoring.LoadedModel:
        try:
            return pending()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    return run


def _download(source: Source, workdir: Path, tracking_uri: str) -> Path:
    try:
        return modelio_source.download(source, workdir, tracking_uri=tracking_uri)
    except Exception as err:
        raise LoadError(f"cannot download: {one_line(err)}") from err


def _check(source: Source, local: Path) -> modelio.OpenedModel:
    """The checks of the bytes and the format (`modelio`; the kind's own checks come
    before its file is read); a registry version needs its recorded manifest."""
    try:
        return modelio.open_folder(local, source)
    except ModelRefused as refusal:
        raise Refused(source, refusal) from None


def _assemble(opened: modelio.OpenedModel, *, max_rows: int, runtime: str = "auto",
              onnx_threads: int = 1, twin_first: bool = True, id_column: str | None = None
              ) -> tuple[scoring.LoadedModel, Any]:
    """The version ready to score: its twin first when it can be (see the module), else
    its model (and the twin, if it agrees with it)."""
    try:
        meta = opened.info
        example = opened.input_example()
    except Exception as err:
        raise LoadError(f"cannot load: {one_line(err)}") from err
    if runtime == "auto" and twin_first and opened.source.registered:
        twin, _ = recorded_twin(opened.files.twin_file, example, threads=onnx_threads)
        if twin is not None:
            first = _loaded(opened, meta, example, twin, why_not=None, classes=twin.classes,
                            max_rows=max_rows, id_column=id_column)

            def finish() -> scoring.LoadedModel:
                return _with_model(opened, meta, example, max_rows=max_rows, twin=twin,
                                   id_column=id_column)

            return dataclasses.replace(first, pending=finish), example
    return _with_model(opened, meta, example, max_rows=max_rows, runtime=runtime,
                       onnx_threads=onnx_threads, id_column=id_column), example


def _with_model(opened: modelio.OpenedModel, meta: Any, example: Any, *, max_rows: int,
                runtime: str = "auto", onnx_threads: int = 1,
                twin: OnnxPredictor | None = None,
                id_column: str | None = None) -> scoring.LoadedModel:
    """Load the model by its kind (its types checked first), and serve the twin only if
    it agrees with it; `twin` is one already loaded (twin first), re-checked here."""
    try:
        estimator = opened.estimator()
    except ModelRefused as refusal:
        raise Refused(opened.source, refusal) from None
    except Exception as err:
        raise LoadError(f"cannot load: {one_line(err)}") from err
    sklearn_predictor = SklearnPredictor(estimator)
    if twin is not None:
        predictor, why_not = choose_twin(twin, sklearn_predictor, example)
    else:
        predictor, why_not = choose_predictor(opened.files, sklearn_predictor, example,
                                              runtime=runtime, threads=onnx_threads)
    model = _loaded(opened, meta, example, predictor, why_not=why_not,
                    classes=classes_of(estimator), max_rows=max_rows, id_column=id_column)
    if twin is not None and predictor is not twin:
        warm_up(model, example)  # the twin was refused: the model serves from now on
    return model


def _loaded(opened: modelio.OpenedModel, meta: Any, example: Any, predictor: Any, *,
            why_not: str | None, classes: tuple[Any, ...] | None,
            max_rows: int, id_column: str | None = None) -> scoring.LoadedModel:
    who = opened.identity
    return scoring.LoadedModel(
        info=dataclasses.replace(who, run_id=who.run_id or meta.run_id),
        loaded_at=_now(),
        predictor=predictor,
        schema=from_signature(meta.signature, max_rows=max_rows, id_column=id_column),
        max_rows=max_rows,
        example=example_records(example),
        runtime=getattr(predictor, "runtime", "sklearn"),
        twin=why_not,
        classes=classes,
        params=getattr(meta.signature, "params", None),
    )


def choose_twin(twin: OnnxPredictor, sklearn_predictor: SklearnPredictor, example: Any
                ) -> tuple[Any, str | None]:
    """The twin served first, re-checked against the sklearn model it twins."""
    why_not = disagreement(twin, sklearn_predictor.estimator, example)
    return (twin, None) if why_not is None else (sklearn_predictor, why_not)


def choose_predictor(checked: CheckedModel, sklearn_predictor: SklearnPredictor,
                     example: Any, *, runtime: str, threads: int) -> tuple[Any, str | None]:
    """The twin when the version has one and it agrees with sklearn on the input example.

    A twin that fails to load or disagrees is not served (the version is: through
    sklearn), and the reason is what `/model` shows as `twin`.
    """
    if runtime == "sklearn":
        return sklearn_predictor, "turned off (SERVING_RUNTIME=sklearn)"
    if checked.twin_file is None:
        return sklearn_predictor, no_twin(sklearn_predictor.estimator)
    twin, why_not = checked_twin(checked.twin_file, sklearn_predictor.estimator, example,
                                 threads=threads)
    return (twin, None) if twin is not None else (sklearn_predictor, why_not)


def no_twin(estimator: Any) -> str:
    """Why a version has no twin, as far as the server can tell: promotion records one only
    when a converter exists for the model and the twin's parity was proven."""
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    name = type(final).__name__
    library = type(final).__module__.split(".")[0]
    runtime = {"sklearn": "scikit-learn", "modelio": "xgboost"}.get(library, library)
    return (f"this version has no compiled twin: promotion records one only when {name} has "
            f"a converter and its twin's parity is proven; {name} serves on its own runtime "
            f"({runtime})")


def classes_of(estimator: Any) -> tuple[Any, ...] | None:
    """A classifier's labels in its probability columns' order; None for a regressor."""
    if not hasattr(estimator, "predict_proba") or not hasattr(estimator, "classes_"):
        return None
    return tuple(np.asarray(estimator.classes_).tolist())


def limit_sklearn_threads(threads: int) -> None:
    """Cap the OpenMP and BLAS pools sklearn uses, for the whole process.

    HistGradientBoosting and the BLAS behind Ridge start one thread per core for every
    predict. On one row that buys nothing, and on a small machine those threads compete
    with the event loop, the other workers and the load: the server's p50 was three
    times its in-process floor before this. `SERVING_SKLEARN_THREADS` raises it.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads)


class SklearnPredictor:
    """An estimator called with sklearn's per-call checks off: the input is validated."""

    runtime = "sklearn"

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator

    def predict(self, frame: pd.DataFrame) -> Any:
        import sklearn

        with sklearn.config_context(skip_parameter_validation=True):
            return self.estimator.predict(frame)

    def predict_proba(self, frame: pd.DataFrame) -> Any:
        import sklearn

        with sklearn.config_context(skip_parameter_validation=True):
            return self.estimator.predict_proba(frame)


def example_records(example: Any, rows: int = 3) -> list[dict[str, Any]] | None:
    """A few rows of the input example as JSON-ready records (missing values as null)."""
    if example is None:
        return None
    frame = example if isinstance(example, pd.DataFrame) else pd.DataFrame(example)
    head = frame.head(rows).astype(object)
    return [{str(k): (None if pd.isna(v) else v) for k, v in rec.items()}
            for rec in head.to_dict(orient="records")]


def warm_up(model: scoring.LoadedModel, example: Any) -> None:
    """Score the input example through the request path: proves the model answers."""
    if example is None:
        return
    try:
        rows = scoring.rows_of_frame(model, example)
    except scoring.InputError as err:
        raise LoadError(f"its input example does not match its signature: {err}") from err
    try:
        scoring.score(model, rows)
    except scoring.ModelFailure as err:
        raise LoadError(f"warm-up on its input example failed: {err.__cause__ or err}") from err


def one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return (text if isinstance(err, LoadError) else f"{type(err).__name__}: {text}")[:300]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
