"""The current model, kept in step with the registry.

A background thread asks the registry which version the alias points at; when it
changes, the new version is made ready by the loader (`serving.loader`: download,
load, warm up, check) and only then swapped in as one reference. Requests read `store.current`
once, so each one is scored by exactly one model, old or new, never a mix. A version
that fails to load leaves the current model serving and its error on `/model`; an
unreachable registry does the same.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import Any

from modelio import source as modelio_source
from modelio.allowlist import capabilities
from modelio.identity import ModelIdentity
from serving import scoring
from serving.loader import (
    Loader,
    Refused,
    Resolver,
    mlflow_loader,
    one_line,
    registry_resolver,
)
from serving.settings import ServingSettings

log = logging.getLogger("serving.store")



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
        self.refusals = 0  # versions that failed verification (never deserialized)
        self.last_refusal: dict[str, str | None] | None = None
        self.registry_version: str | None = None
        """The version the alias pointed at when last asked (None: not asked, or pinned)."""
        self._failed: dict[str, float] = {}  # version key → when it last failed to load
        self._lock = threading.Lock()  # one refresh at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, settings: ServingSettings) -> ModelStore:
        if settings.model_uri:
            pinned = modelio_source.pinned(settings.model_uri, name=settings.model_name)
            resolve: Resolver = lambda: pinned  # noqa: E731
            follow, source = False, settings.model_uri
        else:
            assert settings.model_name is not None
            resolve = registry_resolver(settings.mlflow_tracking_uri, settings.model_name,
                                        settings.model_alias)
            follow, source = True, f"models:/{settings.model_name}@{settings.model_alias}"
        load = mlflow_loader(tracking_uri=settings.mlflow_tracking_uri,
                             max_rows=settings.serving_max_rows,
                             runtime=settings.serving_runtime,
                             onnx_threads=settings.serving_onnx_threads,
                             sklearn_threads=settings.serving_sklearn_threads,
                             twin_first=settings.serving_twin_first,
                             id_column=settings.serving_id_column)
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
                source = self._resolve()
            except Exception as err:
                self.registry_failures += 1
                self._record_error(f"registry: {one_line(err)}")
                return False
            if self.follow:
                self.registry_version = source.identity.version
            current = self.current
            uri = source.identity.uri
            if current is not None and uri == current.info.uri:
                return False
            failed_at = self._failed.get(uri)
            if failed_at is not None and time.monotonic() - failed_at < self.retry_failed_seconds:
                return False
            try:
                model = self._load(source)
                if model.pending is not None and (current is not None or uri in self._failed):
                    model = model.pending()  # a swap, or a retry: the whole version first
            except Exception as err:
                self._record_failure(source.identity, err, kept=current)
                return False
            self.current = model  # the swap: one reference assignment
            self.reloads += 1
            self.last_error = None
            self.last_error_at = None
            self._failed.pop(uri, None)
            log.info("serving %s (was %s)%s", source.identity.label,
                     current.info.label if current else "nothing",
                     "; its compiled twin first, the sklearn model loading"
                     if model.pending else "")
            if model.pending is not None:
                threading.Thread(target=self._finish, args=(model,), name="model-finish",
                                 daemon=True).start()
            return True

    def _finish(self, first: scoring.LoadedModel) -> None:
        """Load and check what a twin-first model left pending, then serve the result.

        If that fails (the skops file refused, say), the version is dropped as if it
        had failed to load whole: the server is not ready and the poll tries again after
        `retry_failed_seconds`, then loading the whole version before serving it.
        """
        assert first.pending is not None
        try:
            final = first.pending()
        except Exception as err:
            with self._lock:
                if self.current is first:
                    self.current = None
                self._record_failure(first.info, err, kept=self.current)
            return
        with self._lock:
            if self.current is first:
                self.current = final  # one reference assignment, as for a swap
                log.info("%s: the sklearn model is loaded; %s serves", first.info.label,
                         final.runtime)

    def _record_failure(self, ref: ModelIdentity, err: Exception,
                        kept: scoring.LoadedModel | None) -> None:
        self.reload_failures += 1
        if isinstance(err, Refused):
            self.refusals += 1
            self.last_refusal = err.as_dict()
        self._failed[ref.uri] = time.monotonic()
        self._record_error(f"{ref.label}: {one_line(err)}")
        log.warning("kept %s: %s failed to load: %s",
                    kept.info.label if kept else "no model", ref.label, one_line(err))

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

    @property
    def behind_registry(self) -> bool:
        """True while the alias points at a version this server does not serve (it failed
        to load, was refused, or is still loading): what `/model` and the metric
        `serving_behind_registry` tell, not `/ready`, which load balancers act on."""
        if not self.follow or self.registry_version is None:
            return False
        model = self.current
        return model is None or model.info.version != self.registry_version

    def status(self) -> dict[str, Any]:
        """What `/model` shows."""
        model = self.current
        info = model.info if model else None
        return {
            "name": info.name if info else None,
            "version": info.version if info else None,
            "run_id": info.run_id if info else None,
            "uri": info.uri if info else None,
            "loaded_at": model.loaded_at.isoformat() if model else None,
            "source": self.source,
            "poll_seconds": self.poll_seconds if self.follow else None,
            "last_checked_at": self.last_checked_at.isoformat() if self.last_checked_at else None,
            "last_reload_error": self.last_error,
            "last_reload_error_at": self.last_error_at.isoformat() if self.last_error_at else None,
            "features": model.schema.names if model and model.schema else None,
            "runtime": model.runtime if model else None,
            "twin": model.twin if model else None,
            "sklearn": ("loading" if model.pending else "loaded") if model else None,
            "last_refusal": self.last_refusal,
            "registry_version": self.registry_version,
            "behind_registry": self.behind_registry,
            "loads": capabilities(),
        }


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
