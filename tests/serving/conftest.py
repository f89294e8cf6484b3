"""Fixtures for the serving tests: registered models and a real uvicorn process."""

from __future__ import annotations

import json
import os
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests
from mlflow.tracking import MlflowClient

from pipeline.gitops.card import load_card, prepare_data
from pipeline.gitops.registry import logged_model_id
from pipeline.localstack.process import ManagedProcess
from tests.conftest import TrackingServer
from tests.utils import free_port, run_mlops, wait_for
from tests.utils.cards import write_card
from tests.utils.registry import move_production


@dataclass(frozen=True)
class Models:
    """A registered model with a Production version and a second, unpromoted one."""

    name: str
    card: Path
    first: str  # version (ridge), Production after bootstrap
    second: str  # a second version of the same run's model, registered only


@dataclass(frozen=True)
class Server:
    """A running `python -m serving` process."""

    url: str
    process: ManagedProcess

    def get(self, path: str) -> Any:
        return requests.get(self.url + path, timeout=10).json()

    def predict(self, records: list[dict[str, Any]]) -> requests.Response:
        return requests.post(self.url + "/predict", json={"records": records}, timeout=30)


def train(card: Path, env: dict[str, str], *args: str) -> dict[str, Any]:
    done = run_mlops("train", "--card", str(card), "--json", *args, env=env)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@contextmanager
def using_env(env: dict[str, str]) -> Iterator[None]:
    """This process's MLflow client pointed at `env` (for module-scoped fixtures)."""
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def models(tracking_server: TrackingServer,
           tmp_path_factory: pytest.TempPathFactory) -> Models:
    """One training run (ridge) as Production; a second version of it to promote later."""
    name = f"serving-{uuid.uuid4().hex[:8]}"
    card = write_card(tmp_path_factory.mktemp("card"), name)
    first = train(card, tracking_server.env, "--estimator", "ridge", "--register", "--promote")
    with using_env(tracking_server.env):
        client = MlflowClient(tracking_uri=tracking_server.uri, registry_uri=tracking_server.uri)
        v1 = client.get_model_version(name, first["version"])
        model_id = logged_model_id(client, first["run_id"])
        second = client.create_model_version(name=name, source=v1.source, run_id=v1.run_id,
                                             model_id=model_id)
    return Models(name=name, card=card, first=first["version"], second=str(second.version))


@pytest.fixture(scope="module")
def server(tracking_server: TrackingServer, models: Models,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One uvicorn process per backend, polling every 0.5 s; tests set the alias they need."""
    with serving_process(tmp_path_factory.mktemp("serving"), tracking_server.env,
                         models.name) as running:
        yield running


@contextmanager
def serving_process(home: Path, env: dict[str, str], model_name: str,
                    poll_seconds: float = 0.5) -> Iterator[Server]:
    """`python -m serving` (uvicorn) on a free loopback port, ready; stopped afterwards."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = ManagedProcess(name="serving", home=home, health_url=f"{url}/health")
    try:
        process.start([sys.executable, "-m", "serving"], wait_seconds=90, env={
            **env, "MODEL_NAME": model_name, "SERVING_HOST": "127.0.0.1",
            "SERVING_PORT": str(port), "MODEL_POLL_SECONDS": str(poll_seconds),
            "MODEL_RETRY_FAILED_SECONDS": "3600", "SERVING_LOG_LEVEL": "info",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        })
        wait_for(lambda: requests.get(url + "/ready", timeout=5).status_code == 200,
                 what="the server to load a model", process=process)
        yield Server(url=url, process=process)
    finally:
        process.stop()


CLIENTS = 4
MAX_REQUESTS_PER_CLIENT = 5000


class Clients:
    """A few threads sending single-row requests in a bounded loop, recording every answer."""

    def __init__(self, url: str, record: dict[str, Any]) -> None:
        self.url = url
        self.record = record
        self.stop = threading.Event()
        self.answers: list[list[tuple[int, str | None]]] = [[] for _ in range(CLIENTS)]
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(CLIENTS)]

    def _run(self, index: int) -> None:
        session = requests.Session()
        body = {"records": [self.record]}
        for _ in range(MAX_REQUESTS_PER_CLIENT):
            if self.stop.is_set():
                return
            try:
                answer = session.post(self.url + "/predict", json=body, timeout=30)
                version = answer.json()["model"]["version"] if answer.ok else None
                self.answers[index].append((answer.status_code, version))
            except (requests.RequestException, ValueError) as err:
                self.errors.append(type(err).__name__)

    def __enter__(self) -> Clients:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)

    def count(self) -> int:
        return sum(len(a) for a in self.answers)


def registry(tracking: TrackingServer) -> MlflowClient:
    return MlflowClient(tracking_uri=tracking.uri, registry_uri=tracking.uri)


def validation_rows(card: Path, count: int) -> pd.DataFrame:
    """Validation rows the model never trained on (complete: the signature requires each column)."""
    data = prepare_data(load_card(card))
    return data.x_validation.dropna().head(count).reset_index(drop=True)


def serve_version(tracking: TrackingServer, server: Server, models: Models, version: str) -> None:
    """Point the alias at `version` and wait until the server answers with it."""
    move_production(registry(tracking), models.name, version, tracking_uri=tracking.uri)
    wait_for(lambda: server.get("/model")["version"] == version, what=f"version {version}")


@pytest.fixture(scope="module")
def one_sklearn_thread() -> Iterator[None]:
    """sklearn and OpenMP on one thread, as the server runs them (`limit_sklearn_threads`)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield
