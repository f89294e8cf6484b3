"""Request IDs, access logs and process metrics, in-process and on a real uvicorn."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import orjson
import pytest
import requests
from fastapi.testclient import TestClient

from serving.app import create_app
from tests.conftest import TrackingServer
from tests.serving.conftest import Models, Server, serve_version, validation_rows, wait_for
from tests.serving.helpers import ROW, Exploding, loaded, ready_store


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(create_app(ready_store(loaded()), manage_store=False)) as test_client:
        yield test_client


def test_request_id_is_taken_when_plausible_and_generated_otherwise(client: TestClient) -> None:
    given = client.get("/health", headers={"X-Request-ID": "order-42:try.1"})
    assert given.headers["x-request-id"] == "order-42:try.1"
    generated = client.get("/health").headers["x-request-id"]
    assert len(generated) == 32
    assert int(generated, 16) >= 0
    for implausible in ("a b", "x" * 129, "id\"}{"):
        answer = client.get("/health", headers={"X-Request-ID": implausible})
        assert answer.headers["x-request-id"] != implausible
        assert len(answer.headers["x-request-id"]) == 32


def test_one_access_log_line_per_request(client: TestClient,
                                         caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="serving.access"):
        client.post("/predict", json={"records": [ROW]}, headers={"X-Request-ID": "r-1"})
        client.post("/predict", json={"records": []}, headers={"X-Request-ID": "r-2"})
        client.get("/ready")
    lines = [r for r in caplog.records if r.name == "serving.access"]
    assert len(lines) == 3
    first, second, third = lines
    assert (first.method, first.path, first.status, first.model_version,  # type: ignore[attr-defined]
            first.request_id) == ("POST", "/predict", 200, "1", "r-1")  # type: ignore[attr-defined]
    assert (second.status, second.request_id) == (422, "r-2")  # type: ignore[attr-defined]
    assert third.path == "/ready"
    assert third.model_version is None
    assert all(line.duration_ms >= 0 for line in lines)  # type: ignore[attr-defined]


def test_the_500_reference_is_the_request_id() -> None:
    app = create_app(ready_store(loaded(Exploding())), manage_store=False)
    with TestClient(app) as client:
        answer = client.post("/predict", json={"records": [ROW]},
                             headers={"X-Request-ID": "trace-me"})
    assert answer.status_code == 500
    assert "(ref trace-me)" in answer.json()["message"]
    assert answer.headers["x-request-id"] == "trace-me"


def test_metrics_have_process_gc_and_batcher_collectors(client: TestClient) -> None:
    client.post("/predict", json={"records": [ROW]})
    text = client.get("/metrics").text
    for name in ("process_resident_memory_bytes", "process_cpu_seconds_total",
                 "python_gc_objects_collected_total", "python_info",
                 "serving_queue_depth 0.0", "serving_queue_limit 256.0",
                 "serving_overloaded_total 0.0", "serving_deadline_exceeded_total 0.0",
                 "serving_batches_total 1.0",
                 'serving_requests_total{endpoint="/predict",method="POST",status="200"} 1.0'):
        assert name in text, name


@pytest.mark.integration
@pytest.mark.slow
def test_real_server_logs_json_lines_with_request_ids(
        tracking_env: TrackingServer, models: Models, server: Server) -> None:
    serve_version(tracking_env, server, models, models.first)
    record = validation_rows(models.card, 1).to_dict(orient="records")[0]
    marker = f"log-{uuid.uuid4().hex[:8]}"
    answer = requests.post(server.url + "/predict", json={"records": [record]}, timeout=30,
                           headers={"X-Request-ID": marker})
    assert answer.headers["x-request-id"] == marker

    def logged() -> list[dict[str, object]]:
        lines = server.process.logfile.read_text(errors="replace").splitlines()
        return [orjson.loads(line) for line in lines if marker in line]

    wait_for(lambda: bool(logged()), what="the access log line", seconds=10)
    (line,) = logged()
    assert line["logger"] == "serving.access"
    assert (line["method"], line["path"], line["status"]) == ("POST", "/predict", 200)
    assert line["model_version"] == models.first
    assert line["request_id"] == marker
    assert isinstance(line["duration_ms"], float)
    resident = [ln for ln in requests.get(server.url + "/metrics", timeout=10).text.splitlines()
                if ln.startswith("process_resident_memory_bytes ")]
    assert resident
    assert float(resident[0].split()[1]) > 10e6
