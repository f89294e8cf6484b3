"""Fixtures that start real services on loopback and stop what they started.

`tracking_server` is parametrized over the two backends, so every test that uses it
runs on both: `sqlite` (the embedded default: SQLite, local artifacts, no auth) and
`mysql` (MariaDB, S3 protocol artifacts, basic auth: the cloud's protocols). One server
per backend per session, started on first use and stopped at the end.
MLOPS_TEST_BACKENDS=sqlite (comma-separated) narrows the choice for quick local runs.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pytest

from pipeline.localstack import BACKENDS
from pipeline.localstack.mysql import BUCKET, MysqlStack, mysql_stack
from pipeline.localstack.process import ManagedProcess
from pipeline.localstack.sqlite import mlflow_server
from tests.utils import free_port, missing_service

BACKENDS_VARIABLE = "MLOPS_TEST_BACKENDS"

# Servers started by the tests (in process or as children) log predictions here, not into
# the repository's .mlops/ (a test that reads the log sets its own folder).
os.environ.setdefault("PREDICTION_LOG", tempfile.mkdtemp(prefix="mlops-test-predictions-"))
CREDENTIALS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


def selected_backends() -> list[str]:
    """The backends this session tests, from MLOPS_TEST_BACKENDS (default: all)."""
    raw = os.environ.get(BACKENDS_VARIABLE, "") or ",".join(BACKENDS)
    chosen = list(dict.fromkeys(b.strip() for b in raw.split(",") if b.strip()))
    unknown = [b for b in chosen if b not in BACKENDS]
    if unknown or not chosen:
        raise pytest.UsageError(f"{BACKENDS_VARIABLE}={raw!r}: choose from {', '.join(BACKENDS)}")
    return chosen


@dataclass(frozen=True)
class TrackingServer:
    """A running MLflow server and the environment a client needs to use it.

    `env` holds MLflow's own variables: the tracking URI and, on an authenticated
    backend, an admin user's MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD.
    """

    uri: str
    env: dict[str, str]
    home: Path
    backend: str = "sqlite"
    stack: MysqlStack | None = None  # the mysql backend's services, for security tests
    bucket: str = ""  # the artifact bucket, when it is not the local stack's own

    @property
    def bucket_dir(self) -> Path:
        """The artifact bucket's folder on the S3 protocol server (security tests plant
        canaries beside the artifact root)."""
        assert self.stack is not None, "only a server with S3 artifacts has a bucket"
        return self.stack.s3_root / (self.bucket or BUCKET)

    @property
    def reader_env(self) -> dict[str, str]:
        """The read-only user's environment (the PR gate's); no login on SQLite."""
        return self.stack.reader_env() if self.stack is not None else dict(self.env)


# Seconds each backend took to start, reported at the end of the session.
STARTUP_SECONDS: dict[str, float] = {}


class TrackingServers:
    """Start each backend's server on first use; stop all of them, newest first."""

    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self._factory = factory
        self._servers: dict[str, TrackingServer] = {}
        self._stops: list[ManagedProcess | MysqlStack] = []

    def get(self, backend: str) -> TrackingServer:
        if backend not in self._servers:
            began = time.monotonic()
            self._servers[backend] = self._start(backend)
            STARTUP_SECONDS[backend] = time.monotonic() - began
        return self._servers[backend]

    def _start(self, backend: str) -> TrackingServer:
        home = self._factory.mktemp(f"mlflow-{backend}")
        port = free_port()
        if backend == "mysql":
            stack = mysql_stack(home=home, host="127.0.0.1", port=port)
            self._stops.append(stack)
            stack.start(wait_seconds=180)
            return TrackingServer(uri=stack.uri, env=stack.client_env(), home=stack.home,
                                  backend=backend, stack=stack)
        service, command = mlflow_server(home=home, host="127.0.0.1", port=port)
        self._stops.append(service)
        service.start(command, wait_seconds=120)
        uri = f"http://127.0.0.1:{port}"
        return TrackingServer(uri=uri, env={"MLFLOW_TRACKING_URI": uri}, home=home,
                              backend=backend)

    def stop_all(self) -> None:
        for started in reversed(self._stops):
            started.stop()


@pytest.fixture(scope="session")
def tracking_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrackingServers]:
    servers = TrackingServers(tmp_path_factory)
    try:
        yield servers
    finally:
        servers.stop_all()


@pytest.fixture(scope="session", params=selected_backends())
def tracking_server(request: pytest.FixtureRequest,
                    tracking_servers: TrackingServers) -> TrackingServer:
    """A real `mlflow server` process for the session, once per selected backend."""
    return tracking_servers.get(str(request.param))


@pytest.fixture(scope="session")
def first_backend_server(tracking_servers: TrackingServers) -> TrackingServer:
    """The first selected backend alone. A module whose subject does not depend on the
    registry's database overrides `tracking_server` with it: its long loop runs once,
    and the backends themselves are tested by the registry, security and trust tests."""
    return tracking_servers.get(selected_backends()[0])


@pytest.fixture(scope="session")
def secured_server(tracking_servers: TrackingServers) -> TrackingServer:
    """The mysql backend alone: basic auth, allowed hosts, S3 artifacts."""
    if "mysql" not in selected_backends():
        pytest.skip(f"the mysql backend is not selected ({BACKENDS_VARIABLE})")
    return tracking_servers.get("mysql")


@pytest.fixture
def tracking_env(tracking_server: TrackingServer,
                 monkeypatch: pytest.MonkeyPatch) -> TrackingServer:
    """Point this process's MLflow client at the session's server."""
    for key, value in tracking_server.env.items():
        monkeypatch.setenv(key, value)
    return tracking_server


@pytest.fixture(autouse=True)
def _no_stray_tracking(request: pytest.FixtureRequest,
                       monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A test that forgets its server must fail loudly, not write to ./mlruns.

    A URI an earlier test set in-process (`mlflow.set_tracking_uri`) is forgotten: with
    two backends it would send this test to the other backend's server. A test that uses
    `tracking_server` gets that server's credentials (not its URI), so an in-process
    `MlflowClient(server.uri)` authenticates as a CI job would; no other test sees
    credentials from the outer environment.
    """
    _forget_global_tracking_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    for key in CREDENTIALS:
        monkeypatch.delenv(key, raising=False)
    if "tracking_server" in request.fixturenames:
        server: TrackingServer = request.getfixturevalue("tracking_server")
        for key in CREDENTIALS:
            if key in server.env:
                monkeypatch.setenv(key, server.env[key])
    yield
    _forget_global_tracking_uri()


def _forget_global_tracking_uri() -> None:
    """Back to the environment's URI (MLflow's own reset passes None the same way), and
    no active experiment: its ID belongs to one server's store."""
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
    mlflow.set_registry_uri(None)  # type: ignore[arg-type]
    mlflow.tracking.fluent._active_experiment_id = None


def _run_one_backend_once(config: pytest.Config, items: list[pytest.Item]) -> None:
    first = selected_backends()[0]
    kept, dropped = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("tracking_server") if callspec else None
        if item.get_closest_marker("one_backend") and backend not in (None, first):
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


# What a test needs beyond this process. A test with none of these is `unit`: it runs
# in-process (the serving app through ASGI, the gate on frames, the stages on small data),
# and `make test-fast` (`-m unit`) is the inner loop made of them.
NEEDS = ("integration", "e2e", "docker", "airflow", "spark", "slow")
SERVER_FIXTURES = {"tracking_server", "tracking_servers", "tracking_env", "secured_server"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Markers that follow from what a test uses, so `-m` selects by need and no marker
    can be forgotten: a tracking-server fixture makes a test `integration`, Spark's
    fixture `spark`, tests/dags `airflow`. A `one_backend` test runs on the first
    selected backend only."""
    _run_one_backend_once(config, items)
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & SERVER_FIXTURES:
            item.add_marker(pytest.mark.integration)
        if "spark_scoring" in fixtures:
            item.add_marker(pytest.mark.spark)
        if "dags" in item.path.relative_to(Path(__file__).parent).parts[:1]:
            item.add_marker(pytest.mark.airflow)
        if not any(item.get_closest_marker(need) for need in NEEDS):
            item.add_marker(pytest.mark.unit)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """How long each backend's stack took to start: the price of testing on it."""
    if STARTUP_SECONDS:
        terminalreporter.write_line("tracking server startup: " + ", ".join(
            f"{backend} {seconds:.1f} s" for backend, seconds in STARTUP_SECONDS.items()))


__all__ = ["ManagedProcess", "TrackingServer"]


@pytest.fixture(scope="session")
def docker_client() -> Any:
    """The Docker daemon (`scripts/dockerd.sh start`); missing, the test fails under CI."""
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as err:
        missing_service(f"no Docker daemon ({type(err).__name__}): run scripts/dockerd.sh start")
    return client
