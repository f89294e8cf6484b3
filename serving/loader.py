"""Making a registry version ready to serve: resolve, download, load, warm up.

`registry_resolver` asks the registry which version an alias points at;
`mlflow_loader` downloads that version's files, loads the model, builds the request
schema from its signature and scores its input example through the request path.
Anything that fails raises `LoadError` with one line, and the store keeps serving
what it has.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from serving import scoring
from serving.schema import from_signature
from serving.scoring import ModelRef

# An unreachable registry should show up in seconds, not after MLflow's minutes of retries.
MLFLOW_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}



class LoadError(Exception):
    """A version could not be made ready; the message is one line."""


Resolver = Callable[[], ModelRef]
Loader = Callable[[ModelRef], scoring.LoadedModel]


def registry_resolver(tracking_uri: str, name: str, alias: str) -> Resolver:
    """Ask the registry which version `alias` points at."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def resolve() -> ModelRef:
        version = client.get_model_version_by_alias(name, alias)
        return ModelRef(name=name, version=str(version.version), run_id=version.run_id,
                        uri=f"models:/{name}/{version.version}")

    return resolve


_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)/?$")
_RUNS_URI = re.compile(r"^runs:/(?P<run_id>[^/]+)/")


def pinned_ref(uri: str, name: str | None) -> ModelRef:
    """A fixed MODEL_URI: name and version when the URI says them."""
    if match := _MODELS_URI.match(uri):
        return ModelRef(name=match["name"], version=match["version"], run_id=None, uri=uri)
    run = _RUNS_URI.match(uri)
    return ModelRef(name=name or uri, version=None, run_id=run["run_id"] if run else None, uri=uri)


def mlflow_loader(*, tracking_uri: str, max_rows: int) -> Loader:
    """Download, load (the sklearn flavor directly when present), warm up, check."""

    def load(ref: ModelRef) -> scoring.LoadedModel:
        import mlflow.artifacts
        from mlflow.models import Model

        workdir = Path(tempfile.mkdtemp(prefix="serving-model-"))
        try:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=ref.uri, dst_path=str(workdir), tracking_uri=tracking_uri)
            meta = Model.load(local)
            predictor = _load_predictor(local, meta)
            example = meta.load_input_example(local)
            run_id = ref.run_id or meta.run_id
        except Exception as err:
            raise LoadError(f"cannot load: {one_line(err)}") from err
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        model = scoring.LoadedModel(
            info=ModelRef(name=ref.name, version=ref.version, run_id=run_id, uri=ref.uri),
            loaded_at=_now(),
            predictor=predictor,
            schema=from_signature(meta.signature, max_rows=max_rows),
            max_rows=max_rows,
            example=example_records(example),
        )
        warm_up(model, example)
        return model

    return load


def _load_predictor(local: str, meta: Any) -> scoring.Predictor:
    """The bare estimator when the sklearn flavor is there: no pyfunc wrapper per call.

    `mlflow.sklearn.load_model` reads the skops trusted types recorded in MLmodel, so a
    skops model loads with exactly the types its author trusted.
    """
    if "sklearn" in meta.flavors:
        import mlflow.sklearn

        return SklearnPredictor(mlflow.sklearn.load_model(local))
    import mlflow.pyfunc

    model: scoring.Predictor = mlflow.pyfunc.load_model(local)
    return model


class SklearnPredictor:
    """An estimator called with sklearn's per-call checks off: the input is validated."""

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator

    def predict(self, frame: pd.DataFrame) -> Any:
        import sklearn

        with sklearn.config_context(skip_parameter_validation=True):
            return self.estimator.predict(frame)


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
    frame = example if isinstance(example, pd.DataFrame) else pd.DataFrame(example)
    records = frame.to_dict(orient="records")
    try:
        rows = scoring.frame_from_records(records, model)
    except scoring.InputError as err:
        raise LoadError(f"its input example does not match its signature: {err}") from err
    try:
        scoring.run(model, rows)
    except scoring.ModelFailure as err:
        raise LoadError(f"warm-up on its input example failed: {err.__cause__ or err}") from err


def one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return (text if isinstance(err, LoadError) else f"{type(err).__name__}: {text}")[:300]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
