"""Fixtures of the DAG tests, which run in .venv-airflow (`make dags-test`).

Airflow pins fastapi lower than the serving API, so the two cannot share one
environment. The DAGs run here, in-process, through `dag.test()` on a SQLite
metadata database in a temporary AIRFLOW_HOME; the MLflow server and the serving
API run as real processes from the main environment (.venv), exactly the programs
that run in production, talking to the DAG tasks over loopback.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import requests

from pipeline.localstack.mysql import MYSQL_HOME
from pipeline.localstack.process import ManagedProcess
from tests.conftest import BACKENDS_VARIABLE, TrackingServer, selected_backends
from tests.utils import REPO, free_port, wait_for

if importlib.util.find_spec("airflow") is None:
    # The main suite runs in .venv, which has no Airflow: these run in `make dags-test`.
    collect_ignore_glob = ["test_*.py"]

DAGS = REPO / "dags"


def main_venv_bin(program: str) -> str:
    """A program of the main environment (.venv, or MLOPS_MAIN_VENV)."""
    venv = Path(os.environ.get("MLOPS_MAIN_VENV", REPO / ".venv"))
    path = venv / "bin" / program
    if not path.exists():
        pytest.fail(f"{path} not found: the DAG tests start MLflow and the serving API from the "
                    "main environment; run `make setup` first (or set MLOPS_MAIN_VENV)")
    return str(path)


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh AIRFLOW_HOME with a migrated SQLite database, set before Airflow is imported."""
    home = tmp_path_factory.mktemp("airflow-home")
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "AIRFLOW__MLOPS__EMR_POLL_SECONDS": "1",  # moto's job runs finish at once
        # The suite runs beside the main one on a 2-core machine; Airflow's 30 s default
        # for importing one DAG file measures that machine's load, not the DAG.
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
    }
    if "airflow" in sys.modules:
        pytest.fail("Airflow was imported before AIRFLOW_HOME was set: import DAGs in fixtures")
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        migrate = subprocess.run(
            [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
            capture_output=True, text=True, timeout=300, check=False)
        if migrate.returncode != 0:
            pytest.fail(f"airflow db migrate failed: {migrate.stderr[-2000:]}")
        patch.syspath_prepend(str(DAGS))
        yield home


def load_dag(module_name: str, attribute: str) -> Any:
    """Import a DAG file the way the scheduler does (dags/ on sys.path) and return its DAG,
    parsed afresh each time as the scheduler parses it: `dag.test()` runs the tasks
    in-process, and a run's conf stays in the tasks' params (an earlier test's
    `open_pull_request: true` would open a pull request in every later run)."""
    if module_name in sys.modules:
        module: ModuleType = importlib.reload(sys.modules[module_name])
    else:
        module = importlib.import_module(module_name)
    return getattr(module, attribute)


class TrackingServers:
    """Real MLflow servers started by the main environment's `mlops stack up`, one per
    backend, each started the first time a test asks for it and stopped at the end.

    sqlite: SQLite and local artifacts; mysql: MariaDB, S3 protocol artifacts and basic
    auth, as in the cloud.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.started: dict[str, tuple[TrackingServer, dict[str, str]]] = {}

    def get(self, backend: str) -> TrackingServer:
        if backend not in self.started:
            self.started[backend] = self._start(backend)
        return self.started[backend][0]

    def _start(self, backend: str) -> tuple[TrackingServer, dict[str, str]]:
        home = self.root / f"mlflow-dags-{backend}"
        home.mkdir()
        port = free_port()
        env = {**os.environ, "MLOPS_HOME": str(home)}
        up = subprocess.run([main_venv_bin("mlops"), "stack", "up", "--backend", backend,
                             "--port", str(port)], env=env, capture_output=True, text=True,
                            timeout=300, check=False)
        if up.returncode != 0:
            self._stop(env)
            pytest.fail(f"mlops stack up --backend {backend} failed: {up.stderr.strip()[-500:]}")
        uri = f"http://127.0.0.1:{port}"
        client_env = {"MLFLOW_TRACKING_URI": uri}
        if backend == "mysql":
            client_env |= _exports(home / MYSQL_HOME / "client.env")
        return TrackingServer(uri=uri, env=client_env, home=home, backend=backend), env

    @staticmethod
    def _stop(env: dict[str, str]) -> None:
        subprocess.run([main_venv_bin("mlops"), "stack", "down"], env=env, capture_output=True,
                       timeout=120, check=False)

    def stop_all(self) -> None:
        for _, env in self.started.values():
            self._stop(env)


@pytest.fixture(scope="session")
def tracking_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrackingServers]:
    servers = TrackingServers(tmp_path_factory.mktemp("mlflow-dags"))
    try:
        yield servers
    finally:
        servers.stop_all()


@pytest.fixture(scope="session", params=selected_backends())
def tracking_server(request: pytest.FixtureRequest,
                    tracking_servers: TrackingServers) -> TrackingServer:
    """A real MLflow server per selected backend (MLOPS_TEST_BACKENDS narrows the choice,
    as for the main suite)."""
    return tracking_servers.get(str(request.param))


@pytest.fixture(scope="session")
def secured_tracking_server(tracking_servers: TrackingServers) -> TrackingServer:
    """The mysql backend alone: basic auth, as the cloud's tracking server has."""
    if "mysql" not in selected_backends():
        pytest.skip(f"the mysql backend is not selected ({BACKENDS_VARIABLE})")
    return tracking_servers.get("mysql")


def _exports(path: Path) -> dict[str, str]:
    """`export KEY=VALUE` lines of the stack's client environment file."""
    pairs = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.removeprefix("export ").partition("=")
        if sep:
            pairs[key.strip()] = value.strip()
    return pairs


@dataclass(frozen=True)
class ServingApi:
    url: str
    process: ManagedProcess


def start_serving(*, home: Path, env: dict[str, str], model_name: str,
                  wait_seconds: float = 120.0) -> ServingApi:
    """The real serving API (`python -m serving` of the main environment), ready with a model."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = ManagedProcess(name="serving", home=home, health_url=f"{url}/health")
    process.start([main_venv_bin("python"), "-m", "serving"], wait_seconds=wait_seconds, env={
        **env, "MODEL_NAME": model_name, "SERVING_HOST": "127.0.0.1", "SERVING_PORT": str(port),
        "MODEL_POLL_SECONDS": "1"})
    _wait_ready(url, process, wait_seconds)
    return ServingApi(url=url, process=process)


def _wait_ready(url: str, process: ManagedProcess, wait_seconds: float) -> None:
    def ready() -> bool:
        try:
            return requests.get(f"{url}/ready", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_for(ready, what=f"the serving API at {url} to be ready", seconds=wait_seconds,
                 interval=0.5, process=process)
    except AssertionError as gave_up:
        process.stop()
        pytest.fail(str(gave_up))


@dataclass(frozen=True)
class EmrServerless:
    """EMR Serverless's and Secrets Manager's APIs (moto's server: AWS itself cannot run
    here), one Spark application in it, the Airflow connection that points the operator
    and the login hook at it, and what points boto3 at it in a job's process."""

    client: Any
    application_id: str
    connection_env: dict[str, str]
    secrets: Any
    boto_env: dict[str, str]

    def put_login(self, name: str, username: str, password: str) -> str:
        """A login secret as the tracking server's login keeper writes it; its ARN."""
        created = self.secrets.create_secret(
            Name=name, SecretString=json.dumps({"username": username, "password": password}))
        return str(created["ARN"])


@pytest.fixture(scope="session")
def emr_serverless() -> Iterator[EmrServerless]:
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    login = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing",
             "region_name": "us-east-1"}
    try:
        client = boto3.client("emr-serverless", endpoint_url=endpoint, **login)
        app = client.create_application(name="mlops-spark", releaseLabel="emr-7.9.0",
                                        type="SPARK")
        connection = {"conn_type": "aws", "login": "testing", "password": "testing",
                      "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"}}
        yield EmrServerless(
            client=client, application_id=app["applicationId"],
            connection_env={"AIRFLOW_CONN_AWS_DEFAULT": json.dumps(connection)},
            secrets=boto3.client("secretsmanager", endpoint_url=endpoint, **login),
            boto_env={"AWS_ENDPOINT_URL_SECRETS_MANAGER": endpoint,
                      "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                      "AWS_DEFAULT_REGION": "us-east-1"})
    finally:
        server.stop()
