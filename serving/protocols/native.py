"""Our own protocol: `POST /predict` and the operations endpoints.

`/predict` takes `{"records": [{feature: value, ...}, ...]}`, validated by the request
model generated from the signature (pydantic-core, straight from the bytes), and answers
the predictions and the version that made them; with `?probabilities=true` a classifier
also answers each row's class probabilities, from the same call. `/health`, `/ready`,
`/model` and `/metrics` tell operators and orchestrators how the server is.

Errors answer `{"message": ..., "detail": [{"loc", "msg", "type"}, ...]}`; the caller's
mistakes are 422.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field, ValidationError

from serving.errors import REFUSALS, InputError, ModelFailure, input_error, problems_of
from serving.limits import check_json
from serving.model import LoadedModel
from serving.protocols.routes import (
    JSON_BODY,
    context_of,
    json_response,
    model_failure,
    model_of,
    parsed,
    protocol_route,
    query_problems,
    read_body,
    scored,
)
from serving.protocols.rows import loads, records_of, schemaless
from serving.scoring import LABELS_AND_PROBABILITIES, PREDICT, Outputs, check_method


class ModelIdentityOut(BaseModel):
    """`ModelIdentity.ref()` as OpenAPI shows it: the schema of the JSON, not a value."""

    name: str
    version: str | None
    run_id: str | None


class PredictResponse(BaseModel):
    predictions: list[Any]
    probabilities: list[list[float]] | None = Field(
        default=None, description="with ?probabilities=true: each row's class probabilities")
    classes: list[Any] | None = Field(
        default=None, description="with ?probabilities=true: the labels of the columns")
    ids: list[Any] | None = Field(
        default=None, description="each row's ID as sent, when the server has an ID column "
        "(SERVING_ID_COLUMN)")
    model: ModelIdentityOut = Field(description="the version that made these predictions")


class ErrorDetail(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class InputErrorResponse(BaseModel):
    message: str
    detail: list[ErrorDetail]


class LoadCapabilities(BaseModel):
    """`modelio.allowlist.capabilities()`: the model kinds this server loads (with their
    library's version, null when not installed) and its allowlist's SHA-256."""

    kinds: dict[str, str | None]
    allowlist: str


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
        "model itself, on its own runtime (scikit-learn, and XGBoost or LightGBM for their "
        "kinds)")
    twin: str | None = Field(default=None, description="why the twin does not serve, if not "
                             "(no converter for the model, or it disagreed with it)")
    sklearn: Literal["loaded", "loading"] | None = Field(
        default=None, description="loading: the twin serves while the skops model loads and "
        "the twin is re-checked against it (the first version after start-up)")
    last_refusal: dict[str, str | None] | None = Field(
        default=None, description="the last version refused before loading, and why")
    registry_version: str | None = Field(
        default=None, description="the version the registry's alias pointed at when last "
        "asked (null for a pinned MODEL_URI)")
    behind_registry: bool = Field(
        default=False, description="true while the alias points at a version this server "
        "does not serve: refused (see last_refusal), failed (last_reload_error) or loading")
    loads: LoadCapabilities | None = Field(
        default=None, description="what this server can load: promote refuses a version "
        "that needs more")


def answer_error(request: Request, err: Exception) -> Response | None:
    """Our shape: `message`, and `detail` naming where and which rule."""
    if isinstance(err, InputError):
        return _answer(422, str(err), [p.as_dict() for p in err.problems])
    if isinstance(err, RequestValidationError):
        return answer_error(request, InputError(query_problems(err)))
    if isinstance(err, ModelFailure):
        return _answer(500, model_failure(request, err), kind="model_error")
    refusal = REFUSALS.get(type(err))
    if refusal is None:
        return None
    return _answer(refusal.status, refusal.message or str(err), kind=refusal.kind)


def _answer(status: int, message: str, detail: list[dict[str, Any]] | None = None,
            kind: str = "input") -> Response:
    return json_response(status, {"message": message, "detail": detail or [
        {"loc": [], "msg": message, "type": kind}]})


router = APIRouter(route_class=protocol_route(answer_error))


@router.post("/predict", response_model=PredictResponse, openapi_extra=JSON_BODY,
             responses={422: {"model": InputErrorResponse}, 413: {"model": InputErrorResponse},
                        503: {"model": InputErrorResponse}, 504: {"model": InputErrorResponse}},
             summary="Score rows; the answer names the model version that scored them")
async def predict(request: Request, probabilities: bool = Query(
        False, description="a classifier also answers each row's class probabilities "
        "(`probabilities`, columns in `classes` order); a regressor refuses (422)")
        ) -> Response:
    context = context_of(request)
    deadline = context.batcher.deadline()
    model = model_of(request, context)
    body = await read_body(request, context.max_body_bytes)
    rows = await parsed(context, body, partial(rows_of_body, body, model), deadline)
    method = LABELS_AND_PROBABILITIES if probabilities else PREDICT
    check_method(model, method, ("query", "probabilities"))
    ids = model.schema.ids(rows) if model.schema is not None else None
    outputs = await scored(context, model, rows, method, deadline, ids=ids)
    return Response(response_of(outputs, model, ids), media_type="application/json")


def rows_of_body(body: bytes, model: LoadedModel) -> list[Any]:
    """The validated rows of a `/predict` body (`InputError` naming column and rule)."""
    schema = model.schema
    if schema is None:
        payload = loads(body, model)
        if not isinstance(payload, dict) or set(payload) != {"records"}:
            raise input_error((), "expected a JSON object with one key, records", "model_type")
        return schemaless(records_of("records", payload["records"], model), model)
    check_json(body, model)
    try:
        request = schema.request.model_validate_json(body)
    except ValidationError as err:
        raise InputError(problems_of(err)) from None
    rows: list[Any] = request.__dict__["records"]
    return rows


def response_of(outputs: Outputs, model: LoadedModel, ids: list[Any] | None = None) -> bytes:
    answer: dict[str, Any] = {"predictions": outputs.predictions}
    if ids is not None:
        answer["ids"] = ids
    if outputs.probabilities is not None:
        answer["probabilities"] = outputs.probabilities
        answer["classes"] = list(model.classes or ())
    answer["model"] = model.info.ref()
    return orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)


@router.get("/health", summary="Liveness: the process answers")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", summary="Readiness: a verified model is loaded (503 until then)",
            responses={503: {"description": "no model loaded yet"}})
async def ready(request: Request) -> Response:
    context = context_of(request)
    model = context.store.current
    if model is None:
        return json_response(503, {"ready": False,
                                   "reason": context.store.last_error or "no model loaded yet"})
    trouble = context.batcher.health()
    if trouble is not None:
        return json_response(503, {"ready": False, "reason": trouble})
    return json_response(200, {"ready": True, "model": model.info.ref()})


@router.get("/model", response_model=ModelStatus,
            summary="The model being served and the last reload error")
async def model_status(request: Request) -> dict[str, Any]:
    return context_of(request).store.status()


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def prometheus(request: Request) -> Response:
    return Response(generate_latest(context_of(request).metrics.registry),
                    media_type=CONTENT_TYPE_LATEST)
