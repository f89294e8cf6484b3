"""OpenAPI with the request bodies of the model being served (features and types)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from serving.model import LoadedModel
from serving.store import ModelStore


def openapi_from_model(app: FastAPI, store: ModelStore) -> Callable[[], dict[str, Any]]:
    """`app.openapi`: the schema, rebuilt when the served model changes."""
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


def _request_schemas(model: LoadedModel | None,
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
