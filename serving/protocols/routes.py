"""What every protocol's routes share: the app's parts, a request's model, body and parse,
and a route class that answers errors in the protocol's own shape.

A router is built with `protocol_route(answer)`: every route on it hands what it raises
to `answer`, the protocol's error formatter, so an error's shape follows the router
that served the request, never its URL.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute

from serving.access import request_id
from serving.batching import MicroBatcher
from serving.errors import BodyTooLarge, ModelFailure, NoModel, Overloaded, Problem
from serving.metrics import Metrics
from serving.model import LoadedModel
from serving.prediction_log import ModelInfo, PredictionLog
from serving.scoring import Outputs
from serving.store import ModelStore

log = logging.getLogger("serving.app")
T = TypeVar("T")

INLINE_PARSE_BYTES = 32 * 1024
"""Bodies up to this size are parsed on the event loop (tens of microseconds in
pydantic-core); larger ones on the batcher's parsing thread, admitted by its queue."""

JSON_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"type": "object"}}}}}
"""The request body OpenAPI shows until the served model's own schema replaces it."""

Answer = Callable[[Request, Exception], Response | None]
"""A protocol's error formatter: the answer to an error, or None for one it does not know."""


@dataclass(frozen=True)
class Context:
    """The app's parts every route uses (`app.state.context`)."""

    store: ModelStore
    batcher: MicroBatcher
    metrics: Metrics
    max_body_bytes: int
    retry_after: str
    """Seconds, as the Retry-After header of a 503 for a full queue."""
    datatypes: dict[str, str] = field(default_factory=dict)
    """The Open Inference Protocol's output datatype of the model served (one entry)."""
    prediction_log: PredictionLog | None = None
    """Where every scored row is recorded (`PREDICTION_LOG`), or None when off."""


def context_of(request: Request) -> Context:
    context: Context = request.app.state.context
    return context


async def scored(context: Context, model: LoadedModel, rows: list[Any], method: str,
                 deadline: float | None, *, ids: list[Any] | None = None) -> Outputs:
    """The model's outputs for a request's rows, and the rows recorded in the prediction
    log (an enqueue: the writing happens on the log's own thread)."""
    outputs = await context.batcher.predict(model, rows, method, deadline=deadline)
    if context.prediction_log is not None:
        predictions = (outputs.predictions if outputs.predictions is not None
                       else [None] * len(rows))
        info = ModelInfo(name=model.info.name, version=model.info.version,
                         run_id=model.info.run_id, runtime=model.runtime,
                         classes=model.classes)
        context.prediction_log.record(info, request_id() or "", rows, predictions,
                                      outputs.probabilities, ids=ids)
    return outputs


def model_of(request: Request, context: Context) -> LoadedModel:
    """The model this request is scored by, read once (`NoModel` before one is loaded)."""
    model = context.store.current
    if model is None:
        raise NoModel
    request.state.model_version = model.info.version
    return model


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused (413) as soon as it is known to be over `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


async def parsed(context: Context, body: bytes, parse: Callable[[], T], deadline: float) -> T:
    """`parse()` of `body`: at once when it is small, else on the parsing thread, admitted
    by the batcher's queue (503 when full) and within the request's `deadline` (504)."""
    if len(body) <= INLINE_PARSE_BYTES:
        return parse()
    return await context.batcher.parse(parse, deadline=deadline)


def protocol_route(answer: Answer) -> type[APIRoute]:
    """A route class whose routes answer what they raise with `answer`."""

    class ProtocolRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def handle(request: Request) -> Response:
                try:
                    return await handler(request)
                except Exception as err:
                    response = answer(request, err)
                    if response is None:
                        raise
                    if isinstance(err, Overloaded):
                        response.headers["Retry-After"] = context_of(request).retry_after
                    return response

            return handle

    return ProtocolRoute


def model_failure(request: Request, err: ModelFailure) -> str:
    """Log and count a model failure; the message for the client names only a reference."""
    reference = request_id() or uuid.uuid4().hex
    context_of(request).metrics.model_errors.inc()
    log.error("model failure (ref %s) on %s: %s", reference, request.url.path, err,
              exc_info=err.__cause__ or err)
    return f"the model failed on this request; this is a server error (ref {reference})"


def query_problems(err: RequestValidationError) -> list[Problem]:
    """FastAPI's parameter errors (the query string) as problems, values left out."""
    return [Problem(tuple(str(p)[:64] if not isinstance(p, int) else p
                          for p in e.get("loc", ())),
                    str(e.get("msg", "invalid")), str(e.get("type", "invalid")))
            for e in err.errors()]


def json_response(status: int, content: Any) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")
