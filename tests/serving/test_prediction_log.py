"""The prediction log: records as the schema says, bounded queue, rotation, clean shutdown,
sampling, S3, and a real uvicorn app that logs from its route."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import requests
import uvicorn
from fastapi import FastAPI, Request
from prometheus_client import CollectorRegistry, generate_latest

from pipeline.localstack.mysql import rclone_binary
from pipeline.localstack.process import ManagedProcess
from serving.prediction_log import (
    SCHEMA,
    ModelInfo,
    PredictionLog,
    PredictionLogCollector,
    schema_problem,
)
from serving.settings import ServingSettings
from tests.utils import free_port, wait_for

REGRESSOR = ModelInfo(name="diamond-price", version="3", run_id="a" * 32, runtime="onnx")
CLASSIFIER = ModelInfo(name="health", version="1", run_id="b" * 32, runtime="sklearn",
                       classes=(0, 1))


def read_log(folder: Path | str, filesystem: pafs.FileSystem | None = None) -> pd.DataFrame:
    """Every finished file of the log (hidden names are files still being written)."""
    dataset = ds.dataset(str(folder), filesystem=filesystem, format="parquet",
                         partitioning=None, exclude_invalid_files=False,
                         ignore_prefixes=[".", "_"])
    return dataset.to_table().to_pandas()


def finished_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.parquet") if not p.name.startswith("."))


def test_records_hold_what_the_schema_says(tmp_path: Path) -> None:
    with PredictionLog(str(tmp_path)) as log:
        log.record(REGRESSOR, "req-a", [{"carat": 0.3, "cut": "Ideal"}], [512.5])
        log.record(REGRESSOR, "req-b", pd.DataFrame({"carat": [1.0, np.nan],
                                                     "cut": ["Good", None]}), np.array([1.0, 2.0]),
                   ids=["stone-1", "stone-2"])
        log.record(CLASSIFIER, "req-c", {"age": np.array([30.0, 40.0])}, np.array([1, 0]),
                   probabilities=np.array([[0.25, 0.75], [0.9, 0.1]]))
    files = finished_files(tmp_path)
    assert len(files) == 1
    assert files[0].parent.name.startswith("date=")
    assert schema_problem(pq.read_schema(files[0])) is None
    frame = read_log(tmp_path).sort_values(["request_id", "row"]).reset_index(drop=True)
    assert frame["request_id"].tolist() == ["req-a", "req-b", "req-b", "req-c", "req-c"]
    assert frame["row"].tolist() == [0, 0, 1, 0, 1]
    assert [json.loads(v) for v in frame["inputs"]] == [
        {"carat": 0.3, "cut": "Ideal"}, {"carat": 1.0, "cut": "Good"},
        {"carat": None, "cut": None}, {"age": 30.0}, {"age": 40.0}]
    assert [json.loads(v) for v in frame["prediction"]] == [512.5, 1.0, 2.0, 1, 0]
    assert frame["id"].tolist()[1:3] == ["stone-1", "stone-2"]
    assert frame["id"].isna().tolist() == [True, False, False, True, True]
    assert json.loads(frame["probabilities"][3]) == {"0": 0.25, "1": 0.75}
    assert frame["probabilities"][:3].isna().all()
    assert frame["model_version"].tolist() == ["3", "3", "3", "1", "1"]
    assert set(frame["runtime"]) == {"onnx", "sklearn"}
    assert set(frame["source"]) == {"serving"}
    assert frame["time"].dt.tz is not None


def test_a_full_queue_drops_rows_and_counts_them_without_waiting(tmp_path: Path) -> None:
    log = PredictionLog(str(tmp_path), max_queue_rows=10)  # not started: nothing drains it
    assert log.record(REGRESSOR, "r1", [{"x": 1.0}] * 8, [1.0] * 8)
    began = time.perf_counter()
    assert not log.record(REGRESSOR, "r2", [{"x": 1.0}] * 5, [1.0] * 5)
    assert time.perf_counter() - began < 1.0
    registry = CollectorRegistry()
    registry.register(PredictionLogCollector(log))
    text = generate_latest(registry).decode()
    assert 'prediction_log_rows_dropped_total{reason="queue_full"} 5.0' in text
    assert "prediction_log_queue_rows 8.0" in text
    log.start()
    log.close()
    assert log.rows_written == 8
    assert 'prediction_log_rows_written_total 8.0' in generate_latest(registry).decode()


def test_nothing_queued_is_lost_on_a_clean_shutdown(tmp_path: Path) -> None:
    """Long flush interval and no rotation: close() alone must write every row."""
    log = PredictionLog(str(tmp_path), flush_seconds=3600, flush_rows=1_000_000,
                        rotate_seconds=86_400).start()
    sent = 0
    for request in range(500):
        rows = request % 7 + 1
        log.record(REGRESSOR, f"req-{request}", [{"x": float(i)} for i in range(rows)],
                   [0.0] * rows)
        sent += rows
    assert finished_files(tmp_path) == []
    log.close()
    assert len(read_log(tmp_path)) == sent == log.rows_written
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")], "no temp file left"


def test_files_rotate_by_size_and_by_time(tmp_path: Path) -> None:
    by_size = tmp_path / "size"
    with PredictionLog(str(by_size), rotate_bytes=1, flush_seconds=3600) as log:
        for request in range(3):
            log.record(REGRESSOR, f"r{request}", [{"x": 1.0}], [1.0])
            log.flush()
    assert len(finished_files(by_size)) == 3

    by_time = tmp_path / "time"
    with PredictionLog(str(by_time), rotate_seconds=0.3, flush_seconds=0.05) as log:
        log.record(REGRESSOR, "early", [{"x": 1.0}], [1.0])
        wait_for(lambda: bool(finished_files(by_time)), what="the first file to be finished",
                 seconds=10, interval=0.05)
        assert len(finished_files(by_time)) == 1, "the first file is finished by its age"
        log.record(REGRESSOR, "late", [{"x": 2.0}], [2.0])
    assert len(finished_files(by_time)) == 2
    assert sorted(read_log(by_time)["request_id"]) == ["early", "late"]


def test_a_burst_is_finished_once_the_log_is_idle(tmp_path: Path) -> None:
    """A file is readable soon after traffic stops, not only at its age or size: the
    monitor can look at a burst seconds after it ends."""
    idle = tmp_path / "idle"
    with PredictionLog(str(idle), rotate_seconds=86_400, flush_seconds=0.05,
                       idle_seconds=0.3) as log:
        log.record(REGRESSOR, "burst", [{"x": 1.0}, {"x": 2.0}], [1.0, 2.0])
        log.flush()
        assert finished_files(idle) == [], "still open while rows may follow"
        wait_for(lambda: bool(finished_files(idle)), what="the idle file to be finished",
                 seconds=10, interval=0.05)
        assert len(read_log(idle)) == 2
        log.record(REGRESSOR, "next", [{"x": 3.0}], [3.0])
    assert len(finished_files(idle)) == 2, "the next burst starts a file of its own"

    never = tmp_path / "never"
    with PredictionLog(str(never), rotate_seconds=86_400, flush_seconds=0.05,
                       idle_seconds=0) as log:
        log.record(REGRESSOR, "kept-open", [{"x": 1.0}], [1.0])
        log.flush()
        time.sleep(0.5)
        assert finished_files(never) == [], "idle_seconds=0: only age, size and close"
    assert len(finished_files(never)) == 1


def test_sampling_keeps_about_the_asked_share_of_rows(tmp_path: Path) -> None:
    with PredictionLog(str(tmp_path), sample_rate=0.25) as log:
        for request in range(200):
            log.record(REGRESSOR, f"r{request}", [{"x": 1.0}] * 100, [1.0] * 100)
    kept = len(read_log(tmp_path))
    expected, spread = 20_000 * 0.25, (20_000 * 0.25 * 0.75) ** 0.5
    assert abs(kept - expected) < 5 * spread, kept


def test_a_failing_destination_costs_rows_never_the_request(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the log's folder should be")
    with PredictionLog(str(blocker)) as log:
        assert log.record(REGRESSOR, "r", [{"x": 1.0}] * 3, [1.0] * 3)
        log.flush()
    assert log.rows_dropped["write_error"] == 3
    assert log.write_errors >= 1
    assert log.rows_written == 0


def test_another_schema_is_named(tmp_path: Path) -> None:
    assert schema_problem(pa.schema([("price", pa.float64())])) == (
        "not a prediction log (no schema version in its metadata)")
    newer = SCHEMA.with_metadata({b"mlops.prediction_log.schema_version": b"2"})
    assert schema_problem(newer) == (
        "prediction log schema version 2, this reader knows version 1")
    fewer = pa.schema(list(SCHEMA)[:-1], metadata=SCHEMA.metadata)
    assert schema_problem(fewer) == "columns differ from the prediction log schema version 1"


def test_settings_turn_the_log_on_and_off(tmp_path: Path) -> None:
    on = ServingSettings(model_name="m", prediction_log=str(tmp_path),
                         prediction_log_sample_rate=0.5)
    log = PredictionLog.from_settings(on)
    assert log is not None
    assert log.sample_rate == 0.5
    assert PredictionLog.from_settings(ServingSettings(model_name="m", prediction_log="")) is None


# --- S3 (the S3 protocol server the stack runs) --------------------------------------------


@pytest.fixture
def s3_bucket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    root = tmp_path / "s3"
    (root / "logs").mkdir(parents=True)
    port = free_port()
    server = ManagedProcess(name="s3", home=tmp_path, health_url=f"http://127.0.0.1:{port}",
                            probe=lambda: _listening(port))
    server.start([rclone_binary(), "serve", "s3", "--addr", f"127.0.0.1:{port}", str(root)],
                 env={"RCLONE_AUTH_KEY": '"log-key,log-secret"'}, wait_seconds=30)
    for key, value in {"AWS_ACCESS_KEY_ID": "log-key", "AWS_SECRET_ACCESS_KEY": "log-secret",
                       "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
                       "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
                       "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required"}.items():
        monkeypatch.setenv(key, value)
    fsspec.get_filesystem_class("s3").clear_instance_cache()
    try:
        yield "s3://logs/predictions"
    finally:
        server.stop()


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_the_log_can_live_on_s3(s3_bucket: str) -> None:
    with PredictionLog(s3_bucket, rotate_bytes=1) as log:
        log.record(REGRESSOR, "r1", [{"carat": 0.5}], [800.0])
        log.flush()
        log.record(REGRESSOR, "r2", [{"carat": 0.7}, {"carat": 0.9}], [900.0, 1000.0])
    filesystem, root = pafs.FileSystem.from_uri(s3_bucket)
    names = [info.path for info in filesystem.get_file_info(pafs.FileSelector(root,
                                                                              recursive=True))
             if info.path.endswith(".parquet")]
    assert len(names) == 2
    assert all("/date=" in name for name in names)
    frame = read_log(root, filesystem)
    assert sorted(frame["request_id"]) == ["r1", "r2", "r2"]
    assert log.rows_dropped == {"queue_full": 0, "write_error": 0, "closed": 0}

    # The monitor finds the window's files by listing the prefix (a reader's grant), and
    # an empty prefix is "no log", one line.
    from pipeline.errors import DataError
    from pipeline.monitoring.window import Window, log_files

    now = dt.datetime.now(dt.UTC)
    _, found = log_files(s3_bucket, Window(start=now - dt.timedelta(hours=1), end=now))
    assert len(found) == 2
    with pytest.raises(DataError, match="nothing under the prefix"):
        log_files(s3_bucket + "-none", Window(start=now - dt.timedelta(hours=1), end=now))


# --- a real uvicorn app that logs from its route ---------------------------------------------


def _app(log: PredictionLog) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        log.start()
        try:
            yield
        finally:
            log.close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, Any]:
        rows = (await request.json())["records"]
        predictions = [row["carat"] * 1000.0 for row in rows]
        log.record(REGRESSOR, request.headers["x-request-id"], rows, predictions)
        return {"predictions": predictions}

    return app


def test_a_served_app_logs_every_row_and_loses_none_on_shutdown(tmp_path: Path) -> None:
    log = PredictionLog(str(tmp_path), flush_seconds=3600, rotate_seconds=86_400)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(_app(log), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, what="uvicorn to start", seconds=30, interval=0.05)
    sent = 0
    with requests.Session() as http:
        for request in range(60):
            rows = [{"carat": 0.1 * (i + 1)} for i in range(request % 4 + 1)]
            answer = http.post(f"http://127.0.0.1:{port}/predict", json={"records": rows},
                               headers={"X-Request-ID": f"req-{request:03d}"}, timeout=10)
            assert answer.status_code == 200
            sent += len(rows)
    server.should_exit = True  # what SIGTERM does: the lifespan closes the log
    thread.join(timeout=30)
    frame = read_log(tmp_path)
    assert len(frame) == sent
    assert frame["request_id"].nunique() == 60
    last = frame[frame["request_id"] == "req-059"].sort_values("row")
    assert [json.loads(v)["carat"] for v in last["inputs"]] == pytest.approx([0.1, 0.2, 0.3, 0.4])


def test_the_server_records_every_row_it_scores_on_every_protocol(tmp_path: Path) -> None:
    """The app wired as deployed: /predict, /invocations and /v2 infer each leave their
    rows in the log with the request's ID and the model that scored them; the rows are
    written when the app shuts down, none lost."""
    from fastapi.testclient import TestClient

    from serving.app import create_app
    from tests.serving.helpers import ROW, loaded, ready_store

    settings = ServingSettings(model_name="toy", prediction_log=str(tmp_path / "log"))
    app = create_app(ready_store(loaded()), settings=settings, manage_store=False)
    with TestClient(app) as client:
        first = client.post("/predict", json={"records": [ROW, ROW]},
                            headers={"X-Request-ID": "req-predict"})
        second = client.post("/invocations", json={"dataframe_records": [ROW]},
                             headers={"X-Request-ID": "req-invocations"})
        third = client.post("/v2/models/toy/infer", headers={"X-Request-ID": "req-v2"},
                            json={"inputs": [
                                {"name": name, "shape": [1], "datatype": datatype,
                                 "data": [ROW[name]]}
                                for name, datatype in (("carat", "FP64"), ("cut", "BYTES"),
                                                       ("depth", "FP64"), ("count", "INT64"))]})
        assert [r.status_code for r in (first, second, third)] == [200, 200, 200], third.text
        assert "prediction_log_write_errors_total 0.0" in client.get("/metrics").text
    frame = read_log(tmp_path / "log").sort_values(["request_id", "row"])
    assert frame["request_id"].tolist() == ["req-invocations", "req-predict", "req-predict",
                                            "req-v2"]
    assert set(frame["model_version"]) == {"1"}
    assert json.loads(frame["inputs"].iloc[0]) == ROW
    assert [json.loads(p) for p in frame["prediction"]] == [502.0, 502.0, 502.0, 502.0]


def test_a_row_id_passes_through_predict_to_the_answer_and_the_log(tmp_path: Path) -> None:
    """The card's ID column: /predict records may carry it, the answer names it, the log
    records it, the model never sees it; MLflow's protocol keeps its own shape."""
    from fastapi.testclient import TestClient

    from serving.app import create_app
    from serving.schema import from_columns
    from tests.serving.helpers import COLUMNS, ROW, Linear, loaded, ready_store

    model = dataclasses.replace(loaded(Linear()),
                                schema=from_columns(COLUMNS, max_rows=5, id_column="order"))
    settings = ServingSettings(model_name="toy", prediction_log=str(tmp_path / "log"))
    app = create_app(ready_store(model), settings=settings, manage_store=False)
    with TestClient(app) as client:
        answer = client.post("/predict", json={"records": [{**ROW, "order": "A-17"},
                                                           {**ROW, "order": 42}, ROW]})
        assert answer.status_code == 200, answer.text
        assert answer.json()["ids"] == ["A-17", 42, None]
        assert answer.json()["predictions"] == [502.0, 502.0, 502.0]
        refused = client.post("/invocations",
                              json={"dataframe_records": [{**ROW, "order": "A-17"}]})
        assert refused.status_code == 400
    frame = read_log(tmp_path / "log").sort_values("row")
    assert [None if pd.isna(v) else v for v in frame["id"]] == ["A-17", "42", None]
    assert "order" not in json.loads(frame["inputs"].iloc[0])
