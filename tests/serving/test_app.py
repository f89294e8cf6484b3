"""The app in-process (ASGI): routes, input rules, errors, OpenAPI, metrics."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.store import ModelStore
from tests.serving.helpers import ROW, Exploding, loaded, ready_store

SECRET = "S3CRET-payload-value"


@pytest.fixture
def client() -> Iterator[TestClient]:
    app = create_app(ready_store(loaded()), max_body_bytes=4096, manage_store=False)
    with TestClient(app) as test_client:
        yield test_client


def post(client: TestClient, path: str, body: Any) -> Any:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.post(path, content=content, headers={"content-type": "application/json"})


def row(**changes: Any) -> dict[str, Any]:
    return {**ROW, **changes}


def test_predict_returns_predictions_and_the_model_that_made_them(client: TestClient) -> None:
    answer = post(client, "/predict", {"records": [row(), row(carat=1.0, count=5)]})
    assert answer.status_code == 200
    assert answer.json() == {"predictions": [502.0, 1005.0],
                             "model": {"name": "toy", "version": "1", "run_id": "run1"}}


def test_optional_column_may_be_null_or_absent(client: TestClient) -> None:
    without = {k: v for k, v in ROW.items() if k != "depth"}
    answer = post(client, "/predict", {"records": [row(depth=None), without]})
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(("records", "column", "rule"), [
    ([row(colour="E")], "colour", "extra_forbidden"),
    ([{k: v for k, v in ROW.items() if k != "carat"}], "carat", "missing"),
    ([row(carat="heavy")], "carat", "float_type"),
    ([row(count=2.5)], "count", "int_type"),
    ([row(cut=7)], "cut", "string_type"),
    ([row(carat=True)], "carat", "float_type"),
])
def test_bad_column_is_422_naming_column_and_rule(client: TestClient, records: Any,
                                                    column: str, rule: str) -> None:
    answer = post(client, "/predict", {"records": records})
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert [d["type"] for d in detail] == [rule]
    assert detail[0]["loc"] == ["records", 0, column]
    assert column in answer.json()["message"]


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_nan_or_infinite_where_signature_forbids_is_422(client: TestClient,
                                                        literal: bytes) -> None:
    body = (b'{"records": [{"carat": ' + literal
            + b', "cut": "Ideal", "depth": 61.0, "count": 2}]}')
    answer = post(client, "/predict", body)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["records", 0, "carat"]
    assert answer.json()["detail"][0]["type"] == "finite_number"


def test_empty_batch_is_422(client: TestClient) -> None:
    answer = post(client, "/predict", {"records": []})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["type"] == "too_short"


def test_more_rows_than_the_limit_is_422(client: TestClient) -> None:
    answer = post(client, "/predict", {"records": [row()] * 6})  # limit is 5
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["type"] == "too_long"
    assert "5" in answer.json()["message"]


def test_body_over_the_size_limit_is_413(client: TestClient) -> None:
    answer = post(client, "/predict", {"records": [row(cut="x" * 5000)]})
    assert answer.status_code == 413
    streamed = client.post("/predict", content=iter([b'{"records": [', b" " * 5000, b"]}"]),
                           headers={"content-type": "application/json"})
    assert streamed.status_code == 413


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"rows": []}', b""])
def test_malformed_body_is_422(client: TestClient, body: bytes) -> None:
    assert post(client, "/predict", body).status_code == 422


def test_errors_never_echo_the_payload(client: TestClient) -> None:
    bad = [
        {"records": [row(carat=SECRET)]},
        {"records": [row(cut=[SECRET])]},
        {"records": [row(**{SECRET: 1})]},
        {"records": [SECRET]},
        {"dataframe_split": {"columns": ["carat"], "data": [[SECRET]]}},
    ]
    for body in bad:
        for path in ("/predict", "/invocations"):
            answer = post(client, path, body)
            assert 400 <= answer.status_code < 500
            text = answer.text
            # An unknown column is named (cut to 64 characters); values never appear.
            if SECRET in text:
                assert f'"{SECRET}"' in text
                assert "unknown column" in text


def test_model_error_is_500_logged_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(ready_store(loaded(Exploding())), manage_store=False)
    with TestClient(app) as client, caplog.at_level(logging.ERROR, logger="serving.app"):
        answer = post(client, "/predict", {"records": [row()]})
        metrics = client.get("/metrics").text
    assert answer.status_code == 500
    assert "server error" in answer.json()["message"]
    assert "RuntimeError" not in answer.text
    assert any("model failure" in r.getMessage() for r in caplog.records)
    assert "serving_model_errors_total 1.0" in metrics
    assert 'serving_requests_total{endpoint="/predict",method="POST",status="500"} 1.0' in metrics


@pytest.mark.parametrize("payload", [
    {"dataframe_split": {"columns": list(ROW), "data": [list(ROW.values())]}},
    {"dataframe_records": [ROW]},
    {"instances": [ROW]},
    {"inputs": [ROW]},
    {"inputs": {k: [v] for k, v in ROW.items()}},
])
def test_invocations_speaks_mlflow_protocol(client: TestClient, payload: Any) -> None:
    answer = post(client, "/invocations", payload)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"predictions": [502.0]}


@pytest.mark.parametrize("payload", [
    {"dataframe_records": [row(carat="x")]},
    {"dataframe_records": [ROW], "instances": [ROW]},
    {"something": [ROW]},
    {"dataframe_split": {"columns": ["carat"], "data": [[1.0, 2.0]]}},
    {"instances": []},
])
def test_invocations_bad_input_is_400_like_mlflow(client: TestClient, payload: Any) -> None:
    answer = post(client, "/invocations", payload)
    assert answer.status_code == 400
    assert answer.json()["error_code"] == "BAD_REQUEST"


def test_not_ready_until_a_model_is_loaded() -> None:
    store = ModelStore(resolve=lambda: (_ for _ in ()).throw(ConnectionError("down")),
                       load=lambda ref: loaded(), poll_seconds=60)
    store.refresh()
    with TestClient(create_app(store, manage_store=False)) as client:
        assert client.get("/health").status_code == 200
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert "registry" in ready.json()["reason"]
        assert post(client, "/predict", {"records": [ROW]}).status_code == 503
        assert post(client, "/invocations", {"inputs": [ROW]}).status_code == 503
        assert client.get("/model").json()["version"] is None


def test_model_endpoint_and_ready(client: TestClient) -> None:
    model = client.get("/model").json()
    assert (model["name"], model["version"], model["run_id"]) == ("toy", "1", "run1")
    assert model["loaded_at"]
    assert model["last_reload_error"] is None
    assert model["features"] == ["carat", "cut", "depth", "count"]
    assert client.get("/ready").json() == {"ready": True, "model": {
        "name": "toy", "version": "1", "run_id": "run1"}}


def test_openapi_shows_the_signature_features_and_types(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    record = spec["components"]["schemas"]["Record"]
    assert record["required"] == ["carat", "cut", "count"]
    assert record["properties"]["carat"]["type"] == "number"
    assert record["properties"]["cut"]["type"] == "string"
    assert record["properties"]["count"]["type"] == "integer"
    assert record["additionalProperties"] is False
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/PredictRequest"}


def test_metrics_count_requests_and_show_the_model(client: TestClient) -> None:
    post(client, "/predict", {"records": [ROW]})
    post(client, "/predict", {"records": []})
    client.get("/nope")
    text = client.get("/metrics").text
    assert 'serving_requests_total{endpoint="/predict",method="POST",status="200"} 1.0' in text
    assert 'serving_requests_total{endpoint="/predict",method="POST",status="422"} 1.0' in text
    assert 'serving_requests_total{endpoint="other",method="GET",status="404"} 1.0' in text
    assert 'serving_request_duration_seconds_count{endpoint="/predict"} 2.0' in text
    assert 'serving_model_info{name="toy",run_id="run1",runtime="sklearn",version="1"} 1.0' in text
    assert "serving_model_reloads_total 1.0" in text
