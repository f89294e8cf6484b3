"""The server as a real uvicorn process against a real MLflow server: the contract."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import mlflow
import mlflow.artifacts
import mlflow.sklearn
import numpy as np
import pytest
import requests

from pipeline.localstack.sqlite import mlflow_server
from tests.conftest import TrackingServer
from tests.serving.conftest import (
    Clients,
    Models,
    Server,
    registry,
    serve_version,
    serving_process,
    train,
    validation_rows,
    wait_for,
)
from tests.utils import free_port
from tests.utils.cards import write_card
from tests.utils.registry import move_production

pytestmark = [pytest.mark.integration, pytest.mark.slow]



def test_predictions_equal_the_models_own_predict(tracking_env: TrackingServer, models: Models,
                                                  server: Server) -> None:
    serve_version(tracking_env, server, models, models.first)
    rows = validation_rows(models.card, 250)
    expected = mlflow.sklearn.load_model(f"models:/{models.name}/{models.first}").predict(rows)

    records = rows.to_dict(orient="records")
    got: list[float] = []
    for start in range(0, len(records), 100):
        answer = server.predict(records[start:start + 100])
        assert answer.status_code == 200, answer.text
        assert answer.json()["model"]["version"] == models.first
        got.extend(answer.json()["predictions"])
    np.testing.assert_allclose(got, expected, rtol=1e-12)

    split = {"dataframe_split": rows.to_dict(orient="split", index=False)}
    invocations = requests.post(server.url + "/invocations", json=split, timeout=30)
    assert invocations.status_code == 200
    assert set(invocations.json()) == {"predictions"}
    np.testing.assert_allclose(invocations.json()["predictions"], expected, rtol=1e-12)


def test_new_version_is_swapped_in_under_load_without_a_failed_request(
        tracking_env: TrackingServer, models: Models, server: Server) -> None:
    """From the compiled twin (onnx) to a version without one (sklearn), under load."""
    client = registry(tracking_env)
    serve_version(tracking_env, server, models, models.first)
    reloads_before = server.get("/model")
    assert reloads_before["runtime"] == "onnx", reloads_before["twin"]
    record = validation_rows(models.card, 1).to_dict(orient="records")[0]
    sklearn_only, _ = log_copy(tracking_env, models.name, models.first, without_twin=True)

    with Clients(server.url, record) as clients:
        wait_for(lambda: clients.count() >= 40, what="the clients to get going")
        promoted_at = time.monotonic()
        move_production(client, models.name, sklearn_only, tracking_uri=tracking_env.uri)
        swap_seconds = wait_for(
            lambda: server.get("/model")["version"] == sklearn_only, what="the new version")
        seen = clients.count()
        wait_for(lambda: clients.count() >= seen + 40, what="requests after the swap")
    print(f"\nnew version served {time.monotonic() - promoted_at:.2f} s after promotion "
          f"(swap seen by /model after {swap_seconds:.2f} s); {clients.count()} requests")

    assert clients.errors == []
    statuses = {status for answers in clients.answers for status, _ in answers}
    assert statuses == {200}, "every request during the swap succeeded"
    for answers in clients.answers:
        versions = [version for _, version in answers]
        first_new = versions.index(sklearn_only)
        assert set(versions[:first_new]) == {models.first}
        assert set(versions[first_new:]) == {sklearn_only}, "never back to the old one"
    status = server.get("/model")
    assert status["last_reload_error"] is None
    assert status["loaded_at"] > reloads_before["loaded_at"]
    assert status["runtime"] == "sklearn"
    assert status["twin"].startswith("this version has no compiled twin: ")


def log_copy(tracking: TrackingServer, name: str, version: str, *, without_twin: bool = False,
             break_skops: bool = False) -> tuple[str, str]:
    """A new version with a copy of a version's files (minus its twin, or a garbage model)."""
    client = registry(tracking)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{name}/{version}", dst_path=tmp))
        if without_twin:
            (local / "model.onnx").unlink()
        if break_skops:
            (local / "model.skops").write_bytes(b"this is not a skops archive")
        mlflow.set_experiment("serving-model-copies")
        with mlflow.start_run() as run:
            mlflow.log_artifacts(str(local), artifact_path="model")
    source = f"{run.info.artifact_uri}/model"
    copied = client.create_model_version(name=name, source=source, run_id=run.info.run_id)
    return str(copied.version), run.info.run_id


def log_broken_copy(tracking: TrackingServer, name: str, version: str) -> tuple[str, str]:
    """A new version whose model file is garbage: the registry accepts it, loading fails."""
    return log_copy(tracking, name, version, break_skops=True)


def test_broken_version_keeps_the_old_model_serving(tracking_env: TrackingServer, models: Models,
                                                    server: Server) -> None:
    client = registry(tracking_env)
    serve_version(tracking_env, server, models, models.first)
    failures_before = _metric(server, "serving_model_reload_failures_total")
    record = validation_rows(models.card, 1).to_dict(orient="records")[0]

    corrupted, run_id = log_broken_copy(tracking_env, models.name, models.first)
    move_production(client, models.name, corrupted, tracking_uri=tracking_env.uri)
    wait_for(lambda: server.get("/model")["last_reload_error"] is not None,
             what="the failed reload to show")
    status = server.get("/model")
    assert status["version"] == models.first
    assert status["last_reload_error"].startswith(f"{models.name} version {corrupted}: ")
    answer = server.predict([record])
    assert answer.status_code == 200
    assert answer.json()["model"]["version"] == models.first

    artifacts = client.get_run(run_id).info.artifact_uri
    missing = client.create_model_version(name=models.name, run_id=run_id,
                                          source=f"{artifacts}/no-such-model").version
    move_production(client, models.name, str(missing), tracking_uri=tracking_env.uri)
    wait_for(lambda: f"version {missing}:" in (server.get("/model")["last_reload_error"] or ""),
             what="the second failed reload to show")
    assert server.predict([record]).json()["model"]["version"] == models.first
    assert _metric(server, "serving_model_reload_failures_total") == failures_before + 2


def _metric(server: Server, name: str) -> float:
    for line in requests.get(server.url + "/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


def test_predictions_continue_when_the_registry_stops(tmp_path: Path) -> None:
    """Its own MLflow server, so stopping it disturbs no other test."""
    port = free_port()
    service, command = mlflow_server(home=tmp_path / "mlflow", host="127.0.0.1", port=port)
    service.start(command, wait_seconds=120)
    env = {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"}
    card = write_card(tmp_path, "serving-registry-down")
    try:
        first = train(card, env, "--estimator", "dummy", "--register", "--promote")
        with serving_process(tmp_path, env, "serving-registry-down") as server:
            service.stop()
            _keeps_serving_without_registry(server, card, first["version"])
    finally:
        service.stop()


def _keeps_serving_without_registry(server: Server, card: Path, version: str) -> None:
    record = validation_rows(card, 1).to_dict(orient="records")[0]
    wait_for(lambda: (server.get("/model")["last_reload_error"] or "").startswith("registry:"),
             what="the registry failure to show")
    for _ in range(20):
        answer = server.predict([record])
        assert answer.status_code == 200
        assert answer.json()["model"]["version"] == version
    assert requests.get(server.url + "/ready", timeout=5).status_code == 200
