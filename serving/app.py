"""The FastAPI app, built by `create_app(store=...)` around a `ModelStore`.

The app only wires parts: the store (the model being served, kept in step with the
registry), the batcher (the bounded queue, the parsing and scoring threads, the
deadline), the metrics and access log, and one router per protocol
(`serving.protocols`): ours, MLflow's and the Open Inference Protocol's, each with its
own parser and its own error shape, all scoring through `serving.scoring`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from serving.access import (
    REQUEST_ID_HEADER,
    AccessLogMiddleware,
    CorrelationIdMiddleware,
    plausible_request_id,
)
from serving.batching import MicroBatcher
from serving.metrics import Metrics, MetricsMiddleware
from serving.openapi import openapi_from_model
from serving.prediction_log import PredictionLog, PredictionLogCollector
from serving.protocols import mlflow_router, native, oip_router
from serving.protocols.routes import Context
from serving.settings import ServingSettings, load_settings
from serving.store import ModelStore

ENDPOINTS = ("/predict", "/invocations", "/health", "/ready", "/model", "/metrics", "/ping",
             "/version", "/v2", "/v2/health/live", "/v2/health/ready", "/v2/models",
             "/v2/models/ready", "/v2/models/infer")
"""The endpoint labels of the request metrics (`Metrics.endpoint`)."""


def create_app(store: ModelStore | None = None, *, settings: ServingSettings | None = None,
               max_body_bytes: int | None = None, manage_store: bool = True) -> FastAPI:
    """The app around `store` (built from the environment when not given).

    With `manage_store` the app starts the store's polling on start-up and stops it on
    shutdown; tests that drive the store themselves pass False.
    """
    if store is None:
        settings = settings or load_settings()
        store = ModelStore.from_settings(settings)
    model_store = store
    batcher = MicroBatcher(max_queue=_setting(settings, "serving_queue_max"),
                           deadline_seconds=_setting(settings, "serving_deadline_seconds"),
                           stuck_seconds=_setting(settings, "serving_stuck_seconds"))

    prediction_log = PredictionLog.from_settings(settings) if settings is not None else None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if prediction_log is not None:
            prediction_log.start()
        if manage_store:
            model_store.start()
        try:
            yield
        finally:
            batcher.close()
            if prediction_log is not None:
                prediction_log.close()  # what is queued is written before the process ends
            if manage_store:
                model_store.stop()

    app = FastAPI(title="Model serving API", version="1.0.0", lifespan=lifespan,
                  summary="Always the registry's Production model, swapped without a redeploy.")
    metrics = Metrics(model_store, ENDPOINTS, batcher)
    app.state.context = Context(
        store=model_store, batcher=batcher, metrics=metrics,
        max_body_bytes=max_body_bytes or _setting(settings, "serving_max_body_bytes"),
        retry_after=str(_setting(settings, "serving_retry_after_seconds")),
        prediction_log=prediction_log)
    if prediction_log is not None:
        metrics.registry.register(PredictionLogCollector(prediction_log))
    app.state.store = model_store
    app.state.metrics = metrics
    app.state.batcher = batcher
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(AccessLogMiddleware)
    app.add_middleware(CorrelationIdMiddleware, header_name=REQUEST_ID_HEADER,  # outermost
                       validator=plausible_request_id)
    for router in (native.router, mlflow_router.router, oip_router.router):
        app.include_router(router)
    app.openapi = openapi_from_model(app, model_store)  # type: ignore[method-assign]
    return app


def _setting(settings: ServingSettings | None, name: str) -> Any:
    """A setting's value, or its default when the app is built without settings (tests)."""
    if settings is not None:
        return getattr(settings, name)
    return ServingSettings.model_fields[name].default
