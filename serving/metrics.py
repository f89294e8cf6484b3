"""Prometheus metrics: requests by endpoint and status, latency, and the model's state.

Each app has its own registry (tests build many apps in one process). The model's
state is read from the store when `/metrics` is scraped, so the store knows nothing
about Prometheus.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.batching import MicroBatcher
from serving.store import ModelStore

METHODS = frozenset({"GET", "POST", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"})
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1,
                   0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The request metrics of one app, in its own registry."""

    def __init__(self, store: ModelStore, endpoints: Iterable[str],
                 batcher: MicroBatcher | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.endpoints = frozenset(endpoints)
        self.requests = Counter("serving_requests",
                                "HTTP requests by endpoint, method and status",
                                ["endpoint", "method", "status"], registry=self.registry)
        self.latency = Histogram("serving_request_duration_seconds",
                                 "Time from request to response, by endpoint", ["endpoint"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.model_errors = Counter("serving_model_errors",
                                    "Requests on which the model itself failed (5xx)",
                                    registry=self.registry)
        # Memory, CPU, open files and GC of this process: what a hot swap leaves behind.
        ProcessCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.registry.register(StoreCollector(store))
        if batcher is not None:
            self.registry.register(BatcherCollector(batcher))

    def endpoint(self, path: str) -> str:
        # Unknown paths share one label: a scanner cannot blow up the label set.
        if path.startswith("/v2/models/"):  # one label per route, whatever the model name
            suffix = path.rsplit("/", 1)[-1]
            path = f"/v2/models/{suffix}" if suffix in ("ready", "infer") else "/v2/models"
        return path if path in self.endpoints else "other"


class StoreCollector(Collector):
    """The store's counters and the version being served, read at scrape time."""

    def __init__(self, store: ModelStore) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        store = self.store
        yield _counter("serving_model_reloads", "Models swapped in", store.reloads)
        yield _counter("serving_model_reload_failures",
                       "Versions that failed to load (the old model kept serving)",
                       store.reload_failures)
        yield _counter("serving_registry_failures", "Registry polls that failed",
                       store.registry_failures)
        yield _counter("serving_model_refusals",
                       "Versions refused before loading (manifest, format or types)",
                       store.refusals)
        info = GaugeMetricFamily("serving_model_info", "The model being served (value 1)",
                                 labels=["name", "version", "run_id", "runtime"])
        model = store.current
        if model is not None:
            info.add_metric([model.info.name, model.info.version or "",
                             model.info.run_id or "", model.runtime], 1.0)
        yield info
        yield GaugeMetricFamily("serving_model_ready", "1 once a verified model is loaded",
                                value=1.0 if model is not None else 0.0)
        yield GaugeMetricFamily("serving_behind_registry",
                                "1 while the registry's alias points at a version this "
                                "server does not serve (refused, failed or loading)",
                                value=1.0 if store.behind_registry else 0.0)
        loaded = model.loaded_at.timestamp() if model is not None else 0.0
        yield GaugeMetricFamily("serving_model_loaded_timestamp_seconds",
                                "When the served model was swapped in (Unix time)", value=loaded)

    def describe(self) -> list[Metric]:
        return []


class BatcherCollector(Collector):
    """How well concurrent requests share a `predict` (requests per batch = the ratio)."""

    def __init__(self, batcher: MicroBatcher) -> None:
        self.batcher = batcher

    def collect(self) -> Iterator[Metric]:
        yield _counter("serving_batches", "Calls of the model's predict (one per batch)",
                       self.batcher.batches)
        yield _counter("serving_batched_requests", "Requests scored in those batches",
                       self.batcher.batched_requests)
        yield _counter("serving_inline_requests",
                       "Of those, small twin requests scored on the event loop (thread idle)",
                       self.batcher.inline)
        yield _counter("serving_parses",
                       "Large bodies parsed on the parsing thread (admitted by the queue)",
                       self.batcher.parses)
        yield GaugeMetricFamily("serving_queue_depth",
                                "Requests waiting for the scoring or the parsing thread",
                                value=self.batcher.queue_depth)
        yield GaugeMetricFamily("serving_queue_limit", "Requests that may wait (SERVING_QUEUE_MAX)",
                                value=self.batcher.max_queue)
        yield _counter("serving_overloaded", "Requests refused because the queue was full (503)",
                       self.batcher.overloaded)
        yield _counter("serving_deadline_exceeded",
                       "Requests not answered within the deadline (504)",
                       self.batcher.deadlines_exceeded)
        yield _counter("serving_expired",
                       "Queued requests dropped unscored or unparsed: their deadline had passed",
                       self.batcher.expired)
        yield _counter("serving_scoring_thread_restarts",
                       "Scoring threads replaced because they died or were stuck",
                       self.batcher.restarts)
        yield GaugeMetricFamily("serving_abandoned_scoring_threads",
                                "Replaced scoring threads still inside a stuck predict",
                                value=self.batcher.abandoned_threads)

    def describe(self) -> list[Metric]:
        return []


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


class ResponseStatus:
    """The status an app answered with, as a middleware around it sees it (500 until then)."""

    def __init__(self, send: Send) -> None:
        self.code = 500
        self._send = send

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.code = int(message["status"])
        await self._send(message)


class MetricsMiddleware:
    """A plain ASGI middleware (no per-request task or body copy): counts and times."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = ResponseStatus(send)
        try:
            await self.app(scope, receive, status.send)
        finally:
            endpoint = self.metrics.endpoint(scope["path"])
            method = scope["method"] if scope["method"] in METHODS else "other"
            self.metrics.requests.labels(endpoint, method, str(status.code)).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
