"""MLflow's scoring protocol: `POST /invocations`, `GET /ping`, `GET /version`.

A drop-in for `mlflow models serve`: the same bodies (`serving.protocols.mlflow_input`),
the same answers (`{"predictions": ...}`), the same statuses and error shapes
(`{"error_code", "message"}`; a 415 in plain text), so MLflow's own
`ScoringServerClient` works unchanged. A classifier whose signature declares the
`probabilities` param answers class probabilities when a body's `params` ask.
"""

from __future__ import annotations

import importlib.metadata
from functools import partial
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel

from serving.errors import (
    REFUSALS,
    BodyTooLarge,
    DeadlineExceeded,
    InputError,
    ModelFailure,
    NoModel,
    NotFound,
    Overloaded,
    UnsupportedMediaType,
)
from serving.protocols.mlflow_input import parser_for
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
from serving.scoring import PROBABILITIES

ERROR_CODES: dict[type[Exception], str] = {
    BodyTooLarge: "RESOURCE_LIMIT_EXCEEDED",
    NoModel: "TEMPORARILY_UNAVAILABLE",
    Overloaded: "TEMPORARILY_UNAVAILABLE",
    DeadlineExceeded: "DEADLINE_EXCEEDED",
    NotFound: "RESOURCE_DOES_NOT_EXIST",
}
"""MLflow's `error_code` of each refusal (`mlflow.protos.databricks_pb2`)."""


class InvocationsResponse(BaseModel):
    predictions: list[Any]


class MlflowErrorResponse(BaseModel):
    error_code: str
    message: str


def answer_error(request: Request, err: Exception) -> Response | None:
    """MLflow's shape: `error_code` and `message`; 400 for the caller's mistakes."""
    if isinstance(err, RequestValidationError):
        err = InputError(query_problems(err))
    if isinstance(err, InputError):
        # MLflow: a missing column or a bad param is INVALID_PARAMETER_VALUE, the rest BAD_REQUEST.
        code = ("INVALID_PARAMETER_VALUE" if any(p.type in ("missing", "invalid_parameter")
                                                 for p in err.problems) else "BAD_REQUEST")
        return json_response(400, {"error_code": code, "message": str(err)})
    if isinstance(err, ModelFailure):
        return json_response(500, {"error_code": "INTERNAL_ERROR",
                                   "message": model_failure(request, err)})
    refusal = REFUSALS.get(type(err))
    if refusal is None:
        return None
    message = refusal.message or str(err)
    if isinstance(err, UnsupportedMediaType):
        return Response(message, status_code=415, media_type="text/plain")  # as MLflow
    return json_response(refusal.status, {"error_code": ERROR_CODES[type(err)],
                                          "message": message})


router = APIRouter(route_class=protocol_route(answer_error))


@router.post("/invocations", response_model=InvocationsResponse, openapi_extra=JSON_BODY,
             responses={400: {"model": MlflowErrorResponse}, 413: {"model": MlflowErrorResponse},
                        503: {"model": MlflowErrorResponse}, 504: {"model": MlflowErrorResponse}},
             summary="MLflow's scoring protocol, as `mlflow models serve` answers it; a "
             "classifier answers class probabilities for `params: {probabilities: true}`")
async def invocations(request: Request) -> Response:
    context = context_of(request)
    deadline = context.batcher.deadline()
    parse = parser_for(request.headers.get("content-type"))
    model = model_of(request, context)
    body = await read_body(request, context.max_body_bytes)
    asked = await parsed(context, body, partial(parse, body, model), deadline)
    outputs = await scored(context, model, asked.rows, asked.method, deadline)
    values = outputs.probabilities if asked.method == PROBABILITIES else outputs.predictions
    return Response(orjson.dumps({"predictions": values}, option=orjson.OPT_SERIALIZE_NUMPY),
                    media_type="application/json")


@router.get("/ping", summary="MLflow's health check: 200 once a model is loaded (503 before)",
            response_class=Response)
async def ping(request: Request) -> Response:
    context = context_of(request)
    ok = context.store.current is not None and context.batcher.health() is None
    return Response("\n", status_code=200 if ok else 503, media_type="application/json")


def _mlflow_version() -> str:
    for distribution in ("mlflow", "mlflow-skinny"):
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


MLFLOW_VERSION = _mlflow_version()


@router.get("/version", summary="The MLflow version serving the model, as MLflow answers",
            response_class=Response)
async def version() -> Response:
    return Response(MLFLOW_VERSION, media_type="application/json")
