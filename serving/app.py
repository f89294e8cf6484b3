"""The FastAPI app, built by `create_app(store=...)` around a `ModelStore`.

Routes only translate: the body is validated by the pure core in `serving.scoring`,
the rows are scored by the `MicroBatcher`'s thread (off the event loop, together with
whatever else is waiting), and the core's two errors become HTTP statuses in one place
(`_install_error_handlers`): `InputError` → 422 on /predict, 400 on /invocations (what
`mlflow models serve` answers); `ModelFailure` → 500, logged and counted; the rest by
the `REFUSALS` table. Each route family answers errors in its protocol's shape:
MLflow's (`error_code`, `message`) on /invocations, the Open Inference Protocol's
(`error`) under /v2, ours (`message`, `detail`) elsewhere.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from serving import oip, scoring
from serving.access import (
    REQUEST_ID_HEADER,
    AccessLogMiddleware,
    CorrelationIdMiddleware,
    plausible_request_id,
    request_id,
)
from serving.batching import DeadlineExceeded, MicroBatcher, Overloaded
from serving.metrics import Metrics, MetricsMiddleware
from serving.settings import ServingSettings, load_settings
from serving.store import ModelStore

log = logging.getLogger("serving.app")

Parse = Callable[[bytes, scoring.LoadedModel], list[Any]]
# Bodies up to this size are validated on the event loop (tens of microseconds in
# pydantic-core); larger ones in a worker thread so they do not stall other requests.
INLINE_PARSE_BYTES = 32 * 1024
ENDPOINTS = ("/predict", "/invocations", "/health", "/ready", "/model", "/metrics", "/ping",
             "/version", "/v2", "/v2/health/live", "/v2/health/ready", "/v2/models",
             "/v2/models/ready", "/v2/models/infer")
CSV_TYPES = ("text/csv",)
JSON_TYPES = ("application/json",)


class BodyTooLarge(Exception):
    """The body is over the configured size (413)."""


class NoModel(Exception):
    """No verified model loaded yet (503)."""


class UnsupportedMediaType(Exception):
    """An /invocations body that is neither JSON nor CSV, or not UTF-8 (415, as MLflow)."""


class ModelRefOut(BaseModel):
    name: str
    version: str | None
    run_id: str | None


class PredictResponse(BaseModel):
    predictions: list[Any]
    probabilities: list[list[float]] | None = Field(
        default=None, description="with ?probabilities=true: each row's class probabilities")
    classes: list[Any] | None = Field(
        default=None, description="with ?probabilities=true: the labels of the columns")
    model: ModelRefOut = Field(description="the version that made these predictions")


class InvocationsResponse(BaseModel):
    predictions: list[Any]


class ErrorDetail(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class InputErrorResponse(BaseModel):
    message: str
    detail: list[ErrorDetail]


class MlflowErrorResponse(BaseModel):
    error_code: str
    message: str


class ModelStatus(BaseModel):
    name: str | None
    version: str | None
    run_id: str | None
    uri: str | None
    loaded_at: str | None
    source: str
    poll_seconds: float | None
    last_checked_at: str | None
    last_reload_error: str | None
    last_reload_error_at: str | None
    features: list[str] | None
    runtime: Literal["onnx", "sklearn"] | None = Field(
        default=None, description="onnx: the verified compiled twin serves; sklearn: the skops "
        "model")
    twin: str | None = Field(default=None, description="why the twin does not serve, if not")
    sklearn: Literal["loaded", "loading"] | None = Field(
        default=None, description="loading: the twin serves while the skops model loads and "
        "the twin is re-checked against it (the first version after start-up)")
    last_refusal: dict[str, str | None] | None = Field(
        default=None, description="the last version refused before loading, and why")


def create_app(store: ModelStore | None = None, *, settings: ServingSettings | None = None,
               max_body_bytes: int | None = None, manage_store: bool = True) -> FastAPI:
    """The app around `store` (built from the environment when not given).

    With `manage_store` the app starts the store's polling on start-up and stops it on
    shutdown; tests that drive the store themselves pass False.
    """
    if store is None:
        settings = settings or load_settings()
        store = ModelStore.from_settings(settings)
    limit = max_body_bytes or _setting(settings, "serving_max_body_bytes")
    model_store = store
    batcher = MicroBatcher(max_queue=_setting(settings, "serving_queue_max"),
                           deadline_seconds=_setting(settings, "serving_deadline_seconds"),
                           stuck_seconds=_setting(settings, "serving_stuck_seconds"))
    retry_after = str(_setting(settings, "serving_retry_after_seconds"))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if manage_store:
            model_store.start()
        try:
            yield
        finally:
            batcher.close()
            if manage_store:
                model_store.stop()

    app = FastAPI(title="Model serving API", version="1.0.0", lifespan=lifespan,
                  summary="Always the registry's Production model, swapped without a redeploy.")
    metrics = Metrics(model_store, ENDPOINTS, batcher)
    app.state.store = model_store
    app.state.metrics = metrics
    app.state.batcher = batcher
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(AccessLogMiddleware)
    app.add_middleware(CorrelationIdMiddleware, header_name=REQUEST_ID_HEADER,  # outermost
                       validator=plausible_request_id)
    _install_error_handlers(app, metrics, retry_after)
    _install_routes(app, model_store, batcher, metrics, limit)
    _install_v2_routes(app, model_store, batcher, limit)
    app.openapi = _openapi_from_model(app, model_store)  # type: ignore[method-assign]
    return app


def _setting(settings: ServingSettings | None, name: str) -> Any:
    """A setting's value, or its default when the app is built without settings (tests)."""
    if settings is not None:
        return getattr(settings, name)
    return ServingSettings.model_fields[name].default


def _install_routes(app: FastAPI, store: ModelStore, batcher: MicroBatcher, metrics: Metrics,
                    limit: int) -> None:
    json_body: dict[str, Any] = {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"type": "object"}}}}}

    async def parsed(request: Request, parse: Parse) -> tuple[scoring.LoadedModel, bytes,
                                                                 list[Any]]:
        model = store.current  # read once: this request is scored by this model only
        if model is None:
            raise NoModel
        request.state.model_version = model.info.version
        body = await _read_body(request, limit)
        if len(body) <= INLINE_PARSE_BYTES:
            rows = parse(body, model)
        else:
            rows = await run_in_threadpool(parse, body, model)
        return model, body, rows

    @app.post("/predict", response_model=PredictResponse, openapi_extra=json_body,
              responses={422: {"model": InputErrorResponse}, 413: {"model": InputErrorResponse},
                         503: {"model": InputErrorResponse}},
              summary="Score rows; the answer names the model version that scored them")
    async def predict(request: Request, probabilities: bool = Query(
            False, description="a classifier also answers each row's class probabilities "
            "(`probabilities`, columns in `classes` order); a regressor refuses (422)")
            ) -> Response:
        model, _, rows = await parsed(request, scoring.rows_from_predict_body)
        if not probabilities:
            predictions = await batcher.predict(model, rows)
            return Response(scoring.predict_response(predictions, model),
                            media_type="application/json")
        scoring.check_method(model, scoring.PROBABILITIES, ("query", "probabilities"))
        predictions, proba = await asyncio.gather(
            batcher.predict(model, rows), batcher.predict(model, rows, scoring.PROBABILITIES))
        return Response(scoring.predict_response(predictions, model, proba),
                        media_type="application/json")

    @app.post("/invocations", response_model=InvocationsResponse, openapi_extra=json_body,
              responses={400: {"model": MlflowErrorResponse}, 413: {"model": MlflowErrorResponse},
                         503: {"model": MlflowErrorResponse}},
              summary="MLflow's scoring protocol, as `mlflow models serve` answers it; a "
              "classifier answers class probabilities for `params: {probabilities: true}`")
    async def invocations(request: Request) -> Response:
        parse = _invocations_parser(request.headers.get("content-type"))
        model, body, rows = await parsed(request, parse)
        method = scoring.PREDICT
        if parse is scoring.rows_from_mlflow_body:  # CSV bodies carry no params
            method = scoring.method_of_mlflow_body(body, model)
        predictions = await batcher.predict(model, rows, method)
        return Response(scoring.invocations_response(predictions),
                        media_type="application/json")

    @app.get("/ping", summary="MLflow's health check: 200 once a model is loaded (503 before)",
             response_class=Response)
    async def ping() -> Response:
        status = 200 if store.current is not None and batcher.health() is None else 503
        return Response("\n", status_code=status, media_type="application/json")

    @app.get("/version", summary="The MLflow version serving the model, as MLflow answers",
             response_class=Response)
    async def version() -> Response:
        return Response(MLFLOW_VERSION, media_type="application/json")

    @app.get("/health", summary="Liveness: the process answers")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", summary="Readiness: a verified model is loaded (503 until then)",
             responses={503: {"description": "no model loaded yet"}})
    async def ready() -> Response:
        model = store.current
        if model is None:
            return _json(503, {"ready": False,
                               "reason": store.last_error or "no model loaded yet"})
        trouble = batcher.health()
        if trouble is not None:
            return _json(503, {"ready": False, "reason": trouble})
        return _json(200, {"ready": True, "model": model.info.ref()})

    @app.get("/model", response_model=ModelStatus,
             summary="The model being served and the last reload error")
    async def model_status() -> dict[str, Any]:
        return store.status()

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _mlflow_version() -> str:
    for distribution in ("mlflow", "mlflow-skinny"):
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


MLFLOW_VERSION = _mlflow_version()


def _invocations_parser(content_type: str | None) -> Parse:
    """JSON or CSV by the content type, as `mlflow models serve` reads it (UTF-8 only)."""
    if content_type is None:
        return scoring.rows_from_mlflow_body
    mime, *parameters = (part.strip() for part in content_type.split(";"))
    options = {key.strip().lower(): value.strip().strip('"').lower()
               for key, _, value in (p.partition("=") for p in parameters if p)}
    if set(options) - {"charset"} or options.get("charset", "utf-8") != "utf-8":
        raise UnsupportedMediaType
    if mime.lower() in JSON_TYPES:
        return scoring.rows_from_mlflow_body
    if mime.lower() in CSV_TYPES:
        return scoring.rows_from_csv_body
    raise UnsupportedMediaType


def _install_v2_routes(app: FastAPI, store: ModelStore, batcher: MicroBatcher,
                       limit: int) -> None:
    """The Open Inference Protocol v2 (REST): the pure core is `serving.oip`."""
    infer_body: dict[str, Any] = {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"type": "object", "required": ["inputs"],
                                        "properties": {"inputs": {"type": "array"}}}}}}}
    datatypes: dict[str, str] = {}  # output datatype, per model, from its input example

    def live(name: str, version: str | None) -> scoring.LoadedModel:
        model = store.current
        if model is None:
            raise NoModel
        oip.check_model(model, name, version)
        return model

    async def output_datatype(model: scoring.LoadedModel) -> str:
        key = f"{model.info.uri} {model.loaded_at.isoformat()}"
        if key not in datatypes:
            datatype = "FP64"
            if model.example:
                body = orjson.dumps({"records": model.example}, option=orjson.OPT_SERIALIZE_NUMPY)
                rows = scoring.rows_from_predict_body(body, model)
                datatype, _ = oip.tensor_of(await batcher.predict(model, rows))
            datatypes.clear()
            datatypes[key] = datatype
        return datatypes[key]

    @app.get("/v2", summary="Open Inference Protocol: server metadata")
    async def server_metadata() -> dict[str, Any]:
        return {"name": "mlops-serving", "version": app.version, "extensions": []}

    @app.get("/v2/health/live", summary="Open Inference Protocol: liveness")
    async def server_live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready", summary="Open Inference Protocol: readiness (503 until ready)")
    async def server_ready() -> Response:
        ok = store.current is not None and batcher.health() is None
        return _json(200 if ok else 503, {"ready": ok})

    async def model_metadata(name: str, version: str | None = None) -> Response:
        model = live(name, version)
        return _json(200, oip.metadata(model, await output_datatype(model)))

    async def model_ready(name: str, version: str | None = None) -> Response:
        live(name, version)
        return _json(200, {"name": name, "ready": True})

    async def infer(request: Request, name: str, version: str | None = None) -> Response:
        model = live(name, version)
        request.state.model_version = model.info.version
        body = await _read_body(request, limit)
        header = request.headers.get("inference-header-content-length")
        if header is not None and not header.isdigit():
            raise scoring.InputError([scoring.Problem(
                (), "Inference-Header-Content-Length must be a number", "oip_format")])
        length = int(header) if header is not None else None
        asked = await run_in_threadpool(oip.rows_from_infer_body, body, length, model)
        results = await asyncio.gather(*(batcher.predict(model, asked.rows, oip.METHODS[name])
                                         for name in asked.outputs))
        return Response(oip.infer_response(model, asked.id, dict(zip(asked.outputs, results,
                                                                     strict=True))),
            media_type="application/json")

    for prefix in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        app.get(prefix, summary="Open Inference Protocol: model metadata")(model_metadata)
        app.get(prefix + "/ready", summary="Open Inference Protocol: model readiness")(
            model_ready)
        app.post(prefix + "/infer", openapi_extra=infer_body,
                 summary="Open Inference Protocol: score one column-per-input tensor set")(infer)


async def _read_body(request: Request, limit: int) -> bytes:
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


@dataclass(frozen=True)
class Refusal:
    """How one domain error is answered: its status, and its name in each protocol."""

    status: int
    mlflow_code: str
    kind: str
    message: str | None = None  # None: the error's own message


REFUSALS: dict[type[Exception], Refusal] = {
    BodyTooLarge: Refusal(413, "RESOURCE_LIMIT_EXCEEDED", "too_large",
                          "the body is larger than this server accepts (SERVING_MAX_BODY_BYTES)"),
    NoModel: Refusal(503, "TEMPORARILY_UNAVAILABLE", "not_ready",
                     "no model loaded yet; see /model"),
    Overloaded: Refusal(503, "TEMPORARILY_UNAVAILABLE", "overloaded",
                        "too many requests are waiting; retry after a moment"),
    DeadlineExceeded: Refusal(504, "DEADLINE_EXCEEDED", "deadline",
                              "no prediction within the deadline (SERVING_DEADLINE_SECONDS)"),
    UnsupportedMediaType: Refusal(415, "BAD_REQUEST", "media_type",
                                  "this server accepts application/json and text/csv "
                                  "bodies, UTF-8 only"),
    oip.NotFound: Refusal(404, "RESOURCE_DOES_NOT_EXIST", "not_found"),
}


def _install_error_handlers(app: FastAPI, metrics: Metrics, retry_after: str) -> None:
    """Every domain error becomes its HTTP status here, and only here.

    /invocations answers in MLflow's shape (`error_code`, `message`), as
    `mlflow models serve` does; the other routes in ours (`message`, `detail`).
    """

    def answer(request: Request, refusal: Refusal, message: str,
               detail: list[dict[str, Any]] | None = None) -> Response:
        path = request.url.path
        if path == "/invocations" and refusal.kind == "media_type":
            response = Response(message, status_code=415, media_type="text/plain")  # as MLflow
        elif path == "/invocations":
            response = _json(refusal.status, {"error_code": refusal.mlflow_code,
                                              "message": message})
        elif path == "/v2" or path.startswith("/v2/"):
            response = _json(refusal.status, {"error": message})
        else:
            response = _json(refusal.status, {"message": message, "detail": detail or [
                {"loc": [], "msg": message, "type": refusal.kind}]})
        if refusal.kind == "overloaded":
            response.headers["Retry-After"] = retry_after
        return response

    async def refuse(request: Request, err: Exception) -> Response:
        refusal = REFUSALS[type(err)]
        return answer(request, refusal, refusal.message or str(err))

    for error in REFUSALS:
        app.add_exception_handler(error, refuse)

    @app.exception_handler(scoring.InputError)
    async def input_error(request: Request, err: scoring.InputError) -> Response:
        path = request.url.path
        status = 400 if path == "/invocations" or path.startswith("/v2/") else 422
        # MLflow: a missing column or a bad param is INVALID_PARAMETER_VALUE, the rest BAD_REQUEST.
        code = ("INVALID_PARAMETER_VALUE" if any(p.type in ("missing", "invalid_parameter")
                                                 for p in err.problems) else "BAD_REQUEST")
        return answer(request, Refusal(status, code, "input"), str(err),
                      [p.as_dict() for p in err.problems])

    @app.exception_handler(RequestValidationError)
    async def query_error(request: Request, err: RequestValidationError) -> Response:
        problems = [scoring.Problem(tuple(str(p)[:64] if not isinstance(p, int) else p
                                          for p in e.get("loc", ())),
                                    str(e.get("msg", "invalid")), str(e.get("type", "invalid")))
                    for e in err.errors()]
        return await input_error(request, scoring.InputError(problems))

    @app.exception_handler(scoring.ModelFailure)
    async def model_failure(request: Request, err: scoring.ModelFailure) -> Response:
        reference = request_id() or uuid.uuid4().hex
        metrics.model_errors.inc()
        log.error("model failure (ref %s) on %s: %s", reference, request.url.path, err,
                  exc_info=err.__cause__ or err)
        message = f"the model failed on this request; this is a server error (ref {reference})"
        return answer(request, Refusal(500, "INTERNAL_ERROR", "model_error"), message)


def _json(status: int, content: Any) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")


def _openapi_from_model(app: FastAPI, store: ModelStore) -> Callable[[], dict[str, Any]]:
    """OpenAPI with the request body of the model being served (features and types)."""
    cache: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        model = store.current
        key = model.info.uri if model else ""
        if cache.get("key") == key and "schema" in cache:
            return dict(cache["schema"])
        schema = get_openapi(title=app.title, version=app.version, summary=app.summary,
                             routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        predict_body, invocations_body = _request_schemas(model, components)
        example = model.example if model else None
        _set_body(schema, "/predict", predict_body,
                  {"records": example} if example else None)
        _set_body(schema, "/invocations", invocations_body,
                  {"dataframe_split": {"columns": list(example[0]),
                                       "data": [list(r.values()) for r in example]}}
                  if example else None)
        cache.update(key=key, schema=schema)
        app.openapi_schema = None
        return schema

    return openapi


def _request_schemas(model: scoring.LoadedModel | None,
                     components: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    if model is None or model.schema is None:
        row: dict[str, Any] = {"type": "object"}
        predict_body = {"type": "object", "required": ["records"], "additionalProperties": False,
                        "properties": {"records": {"type": "array", "items": row, "minItems": 1}}}
    else:
        generated = model.schema.request.model_json_schema(
            by_alias=True, ref_template="#/components/schemas/{model}")
        components.update(generated.pop("$defs", {}))
        components["PredictRequest"] = generated
        predict_body = {"$ref": "#/components/schemas/PredictRequest"}
        row = {"$ref": "#/components/schemas/Record"}
    rows = {"type": "array", "items": row, "minItems": 1}
    invocations_body = {
        "description": "exactly one of the keys of MLflow's scoring protocol",
        "oneOf": [
            {"type": "object", "required": ["dataframe_split"], "properties": {
                "dataframe_split": {"type": "object", "required": ["columns", "data"],
                                    "properties": {
                                        "columns": {"type": "array", "items": {"type": "string"}},
                                        "data": {"type": "array",
                                                 "items": {"type": "array"}}}}}},
            {"type": "object", "required": ["dataframe_records"],
             "properties": {"dataframe_records": rows}},
            {"type": "object", "required": ["instances"], "properties": {"instances": rows}},
            {"type": "object", "required": ["inputs"], "properties": {"inputs": rows}},
        ],
    }
    return predict_body, invocations_body


def _set_body(schema: dict[str, Any], path: str, body: dict[str, Any],
              example: dict[str, Any] | None) -> None:
    """The request body of `path`, with the model's own input example when it has one."""
    content: dict[str, Any] = {"schema": body}
    if example is not None:
        content["example"] = example
    schema["paths"][path]["post"]["requestBody"] = {
        "required": True, "content": {"application/json": content}}
