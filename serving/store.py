"""The current model, kept in step with the registry.

A background thread asks the registry which version the alias points at; when it
changes, the new version is downloaded, loaded, warmed up on its input example and
checked, and only then swapped in as one reference. Requests read `store.current`
once, so each one is scored by exactly one model, old or new, never a mix. A version
that fails to load leaves the current model serving and its error on `/model`; an
unreachable registry does the same.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from serving import scoring
from serving.schema import from_signature
from serving.settings import ServingSettings

log = logging.getLogger("serving.store")

# An unreachable registry should show up in seconds, not after MLflow's minutes of retries.
_MLFLOW_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


@dataclass(frozen=True)
class ModelRef:
    """A version to serve, as the registry names it, and where its files are."""

    name: str
    version: str | None
    run_id: str | None
    uri: str


class LoadError(Exception):
    """A version could not be made ready; the message is one line."""


Resolver = Callable[[], ModelRef]
Loader = Callable[[ModelRef], scoring.LoadedModel]


class ModelStore:
    """Holds the model being served and replaces it when the registry moves."""

    def __init__(self, *, resolve: Resolver, load: Loader, poll_seconds: float,
                 follow: bool = True, retry_failed_seconds: float = 120.0,
                 source: str = "") -> None:
        self._resolve = resolve
        self._load = load
        self.poll_seconds = poll_seconds
        self.follow = follow  # False: a pinned MODEL_URI, loaded once
        self.retry_failed_seconds = retry_failed_seconds
        self.source = source
        self.current: scoring.LoadedModel | None = None
        self.last_error: str | None = None
        self.last_error_at: dt.datetime | None = None
        self.last_checked_at: dt.datetime | None = None
        self.reloads = 0
        self.reload_failures = 0
        self.registry_failures = 0
        self._failed: dict[str, float] = {}  # version key → when it last failed to load
        self._lock = threading.Lock()  # one refresh at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, settings: ServingSettings) -> ModelStore:
        for key, value in _MLFLOW_HTTP_DEFAULTS.items():
            os.environ.setdefault(key, value)
        if settings.model_uri:
            ref = pinned_ref(settings.model_uri, settings.model_name)
            resolve: Resolver = lambda: ref  # noqa: E731
            follow, source = False, settings.model_uri
        else:
            assert settings.model_name is not None
            resolve = registry_resolver(settings.mlflow_tracking_uri, settings.model_name,
                                        settings.model_alias)
            follow, source = True, f"models:/{settings.model_name}@{settings.model_alias}"
        load = mlflow_loader(tracking_uri=settings.mlflow_tracking_uri,
                             max_rows=settings.serving_max_rows)
        return cls(resolve=resolve, load=load, poll_seconds=settings.model_poll_seconds,
                   follow=follow, retry_failed_seconds=settings.model_retry_failed_seconds,
                   source=source)

    @property
    def ready(self) -> bool:
        return self.current is not None

    def refresh(self) -> bool:
        """One poll: swap in the alias's version if it is new; True if a swap happened."""
        with self._lock:
            self.last_checked_at = _now()
            try:
                ref = self._resolve()
            except Exception as err:
                self.registry_failures += 1
                self._record_error(f"registry: {_one_line(err)}")
                return False
            current = self.current
            if current is not None and _key(ref) == _key_of(current.info):
                return False
            failed_at = self._failed.get(_key(ref))
            if failed_at is not None and time.monotonic() - failed_at < self.retry_failed_seconds:
                return False
            try:
                model = self._load(ref)
            except Exception as err:
                self.reload_failures += 1
                self._failed[_key(ref)] = time.monotonic()
                self._record_error(f"{_label(ref)}: {_one_line(err)}")
                log.warning("kept %s: %s failed to load: %s",
                            _label_of(current.info) if current else "no model", _label(ref),
                            _one_line(err))
                return False
            self.current = model  # the swap: one reference assignment
            self.reloads += 1
            self.last_error = None
            self.last_error_at = None
            self._failed.pop(_key(ref), None)
            log.info("serving %s (was %s)", _label(ref),
                     _label_of(current.info) if current else "nothing")
            return True

    def start(self) -> None:
        """Poll in a background thread until `stop` (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="model-store", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Ask the poller to stop; a poll stuck on a dead registry is a daemon thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            if not self.follow and self.current is not None:
                return  # a pinned model never changes
            self._stop.wait(self.poll_seconds)

    def _record_error(self, message: str) -> None:
        self.last_error = message
        self.last_error_at = _now()

    def status(self) -> dict[str, Any]:
        """What `/model` shows."""
        model = self.current
        info = model.info if model else None
        return {
            "name": info.name if info else None,
            "version": info.version if info else None,
            "run_id": info.run_id if info else None,
            "uri": info.uri if info else None,
            "loaded_at": info.loaded_at.isoformat() if info else None,
            "source": self.source,
            "poll_seconds": self.poll_seconds if self.follow else None,
            "last_checked_at": self.last_checked_at.isoformat() if self.last_checked_at else None,
            "last_reload_error": self.last_error,
            "last_reload_error_at": self.last_error_at.isoformat() if self.last_error_at else None,
            "features": model.schema.names if model and model.schema else None,
        }


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
            raise LoadError(f"cannot load: {_one_line(err)}") from err
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        model = scoring.LoadedModel(
            info=scoring.ModelInfo(name=ref.name, version=ref.version, run_id=run_id,
                                   uri=ref.uri, loaded_at=_now()),
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


def _key(ref: ModelRef) -> str:
    return f"{ref.uri}"


def _key_of(info: scoring.ModelInfo) -> str:
    return info.uri


def _label(ref: ModelRef) -> str:
    return f"{ref.name} version {ref.version}" if ref.version else ref.uri


def _label_of(info: scoring.ModelInfo) -> str:
    return f"{info.name} version {info.version}" if info.version else info.uri


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return (text if isinstance(err, LoadError) else f"{type(err).__name__}: {text}")[:300]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
