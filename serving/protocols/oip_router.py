"""The Open Inference Protocol v2 (REST) under `/v2`: health, metadata, infer.

The protocol KServe, MLServer and Triton speak (tested with `tritonclient[http]`); the
tensors and their rules are `serving.protocols.oip_input`. Only the model being served
answers, by its registered name and, when asked, its version. Errors answer
`{"error": ...}`; the caller's mistakes are 400.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from serving.errors import REFUSALS, InputError, ModelFailure, input_error
from serving.model import LoadedModel
from serving.protocols import oip_input
from serving.protocols.routes import (
    Context,
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
from serving.scoring import rows_of_records

SERVER_NAME = "mlops-serving"
INFER_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"type": "object", "required": ["inputs"],
                                    "properties": {"inputs": {"type": "array"}}}}}}}


def answer_error(request: Request, err: Exception) -> Response | None:
    """The protocol's shape: `{"error": message}`."""
    if isinstance(err, RequestValidationError):
        err = InputError(query_problems(err))
    if isinstance(err, InputError):
        return json_response(400, {"error": str(err)})
    if isinstance(err, ModelFailure):
        return json_response(500, {"error": model_failure(request, err)})
    refusal = REFUSALS.get(type(err))
    if refusal is None:
        return None
    return json_response(refusal.status, {"error": refusal.message or str(err)})


router = APIRouter(prefix="/v2", route_class=protocol_route(answer_error))


@router.get("", summary="Open Inference Protocol: server metadata")
async def server_metadata(request: Request) -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": request.app.version, "extensions": []}


@router.get("/health/live", summary="Open Inference Protocol: liveness")
async def server_live() -> dict[str, bool]:
    return {"live": True}


@router.get("/health/ready", summary="Open Inference Protocol: readiness (503 until ready)")
async def server_ready(request: Request) -> Response:
    context = context_of(request)
    ok = context.store.current is not None and context.batcher.health() is None
    return json_response(200 if ok else 503, {"ready": ok})


def _live(request: Request, name: str, version: str | None) -> LoadedModel:
    model = model_of(request, context_of(request))
    oip_input.check_model(model, name, version)
    return model


async def model_metadata(request: Request, name: str, version: str | None = None) -> Response:
    model = _live(request, name, version)
    datatype = await _output_datatype(context_of(request), model)
    return json_response(200, oip_input.metadata(model, datatype))


async def model_ready(request: Request, name: str, version: str | None = None) -> Response:
    _live(request, name, version)
    return json_response(200, {"name": name, "ready": True})


async def infer(request: Request, name: str, version: str | None = None) -> Response:
    context = context_of(request)
    deadline = context.batcher.deadline()
    model = _live(request, name, version)
    body = await read_body(request, context.max_body_bytes)
    header = request.headers.get("inference-header-content-length")
    if header is not None and not header.isdigit():
        raise input_error((), "Inference-Header-Content-Length must be a number", "oip_format")
    length = int(header) if header is not None else None
    asked = await parsed(context, body,
                         partial(oip_input.rows_from_infer_body, body, length, model), deadline)
    outputs = await scored(context, model, asked.rows, asked.method, deadline)
    return Response(oip_input.infer_response(model, asked, outputs),
                    media_type="application/json")


async def _output_datatype(context: Context, model: LoadedModel) -> str:
    """The datatype of the predictions tensor: what the model answers on its example."""
    key = f"{model.info.uri} {model.loaded_at.isoformat()}"
    if key not in context.datatypes:
        datatype = "FP64"
        if model.example:
            rows = rows_of_records(model, model.example)
            outputs = await context.batcher.predict(model, rows)
            datatype, _ = oip_input.tensor_of(outputs.predictions)
        context.datatypes.clear()
        context.datatypes[key] = datatype
    return context.datatypes[key]


for _prefix in ("/models/{name}", "/models/{name}/versions/{version}"):
    router.get(_prefix, summary="Open Inference Protocol: model metadata")(model_metadata)
    router.get(_prefix + "/ready", summary="Open Inference Protocol: model readiness")(
        model_ready)
    router.post(_prefix + "/infer", openapi_extra=INFER_BODY,
                summary="Open Inference Protocol: score one column-per-input tensor set")(infer)
