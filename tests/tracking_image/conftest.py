"""The cloud tracking image, built from infra/tracking_image and run as its ECS task would.

The task definition comes from the Pulumi program under mocks (tests/infra/conftest.py);
task.py turns it into `docker run`'s environment and command. Behind the container: the
local mysql stack's MariaDB (TLS only, as RDS with `require_secure_transport`) and S3
protocol server, both also listening on the Docker bridge's gateway so the container
reaches them; in front of it, alb.py stands in for the load balancer. The security tests
of tests/security then run against it unchanged (`secured_server` is the container here).
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from pipeline.localstack.mysql import DatabaseTls, MysqlStack, mysql_stack
from tests.conftest import TrackingServer
from tests.infra.conftest import Deployment, base_settings, deploy
from tests.tracking_image.alb import load_balancer
from tests.tracking_image.secrets_manager import SecretsManager, secrets_manager
from tests.tracking_image.task import ContainerRun, container_run
from tests.utils import REPO, free_port

TAG = "mlops-tracking:test"
DOCKERFILE = "infra/tracking_image/Dockerfile"  # built from the root, as docs/infra.md says
TASK = "aws:ecs/taskDefinition:TaskDefinition"
RDS = "aws:rds/instance:Instance"
SECRET = "aws:secretsmanager/secret:Secret"
MASTER_USER = "mlflow_master"  # what RDS's managed master secret holds as `username`


@pytest.fixture(scope="session")
def deployment() -> Deployment:
    """The stack at its defaults (HTTPS, a tracking host name) with orchestration, so every
    login is declared (serving, gate, registry-read, promote, airflow, emr-train, emr-score)."""
    return deploy(base_settings(orchestration=True))


@pytest.fixture(scope="session")
def task_container(deployment: Deployment) -> dict[str, Any]:
    """The tracking task definition's one container, as ECS would receive it."""
    (definition,) = deployment.named(TASK, "tracking-task").json("containerDefinitions")
    return dict(definition)


@pytest.fixture(scope="session")
def service_host() -> str:
    host = base_settings().tracking_host
    assert host
    return host


@pytest.fixture(scope="session")
def bucket(deployment: Deployment) -> str:
    return str(deployment.outputs["artifactBucket"])


@pytest.fixture(scope="session")
def gateway(docker_client: Any) -> str:
    """The default bridge's address on this host: where a container reaches the host."""
    (config,) = docker_client.networks.get("bridge").attrs["IPAM"]["Config"]
    if config.get("Gateway"):
        return str(config["Gateway"])
    return str(next(ipaddress.ip_network(config["Subnet"]).hosts()))


@pytest.fixture(scope="session")
def db_host(deployment: Deployment) -> str:
    """The RDS endpoint's name, as the task definition passes it (the container resolves
    it to the bridge gateway, where MariaDB listens)."""
    return str(deployment.named(RDS, "tracking-db-mysql").state["address"])


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory, db_host: str, gateway: str) -> DatabaseTls:
    """A CA and a certificate for MariaDB under the RDS endpoint's name; the image trusts
    the CA as RDS's, and PyMySQL checks the name."""
    folder = tmp_path_factory.mktemp("db-tls")
    files = DatabaseTls(ca=folder / "ca.pem", cert=folder / "server.pem",
                        key=folder / "server-key.pem")
    ca_key = folder / "ca-key.pem"

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=folder)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            "/CN=test database CA", "-keyout", str(ca_key), "-out", str(files.ca))
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=mariadb", "-keyout",
            str(files.key), "-out", str(folder / "server.csr"))
    (folder / "san.ext").write_text(f"subjectAltName=DNS:{db_host}\n")
    openssl("x509", "-req", "-in", str(folder / "server.csr"), "-CA", str(files.ca),
            "-CAkey", str(ca_key), "-CAcreateserial", "-days", "2", "-out", str(files.cert),
            "-extfile", str(folder / "san.ext"))
    return files


@dataclass(frozen=True)
class Storage:
    stack: MysqlStack
    gateway: str
    master_password: str

    @property
    def s3_endpoint_for_container(self) -> str:
        return f"http://{self.gateway}:{self.stack.state.s3_port}"


@pytest.fixture(scope="session")
def storage(tmp_path_factory: pytest.TempPathFactory, gateway: str, tls: DatabaseTls,
            bucket: str) -> Iterator[Storage]:
    """MariaDB (TLS only) and the S3 server, with the task's bucket and an RDS-like master."""
    home = tmp_path_factory.mktemp("cloud-storage")
    stack = mysql_stack(home=home, host="127.0.0.1", port=0, extra_bind=(gateway,), tls=tls)
    try:
        stack.start_storage(wait_seconds=180)
        password = secrets.token_urlsafe(24)
        # RDS's master user may create databases and users (with the grant option): the
        # image creates the application's user with it.
        stack.run_sql(f"CREATE USER '{MASTER_USER}'@'%' IDENTIFIED BY '{password}' REQUIRE SSL;\n"
                      f"GRANT ALL PRIVILEGES ON *.* TO '{MASTER_USER}'@'%' WITH GRANT OPTION;\n")
        import boto3

        boto3.client("s3", endpoint_url=stack.s3_endpoint, region_name="us-east-1",
                     aws_access_key_id=stack.state.s3_access_key,
                     aws_secret_access_key=stack.state.s3_secret_key).create_bucket(Bucket=bucket)
        yield Storage(stack=stack, gateway=gateway, master_password=password)
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def local_secrets(deployment: Deployment, storage: Storage) -> dict[str, str]:
    """Secrets Manager's stand-in: each ARN the program registered, with a value."""
    db = deployment.named(RDS, "tracking-db-mysql").state
    values = {db["masterUserSecrets"][0]["secretArn"]:
              json.dumps({"username": MASTER_USER, "password": storage.master_password})}
    for secret in deployment.of_type(SECRET):
        values[secret.state["arn"]] = secrets.token_urlsafe(24)
    return values


@pytest.fixture(scope="session")
def secrets_store(local_secrets: dict[str, str], gateway: str) -> Iterator[tuple[SecretsManager,
                                                                                  str]]:
    """The Secrets Manager stand-in with the stack's secrets, on the bridge's gateway."""
    store = SecretsManager(local_secrets)
    with secrets_manager(store, host=gateway) as endpoint:
        yield store, endpoint


@pytest.fixture(scope="session")
def run_spec(task_container: dict[str, Any], local_secrets: dict[str, str],
             storage: Storage, secrets_store: tuple[SecretsManager, str]) -> ContainerRun:
    state = storage.stack.state
    return container_run(
        task_container, secrets=local_secrets,
        addresses={"DB_PORT": str(state.db_port)},
        runtime={"AWS_ACCESS_KEY_ID": state.s3_access_key,
                 "AWS_SECRET_ACCESS_KEY": state.s3_secret_key,
                 "AWS_DEFAULT_REGION": "us-east-1",
                 "MLFLOW_S3_ENDPOINT_URL": storage.s3_endpoint_for_container,
                 "AWS_ENDPOINT_URL_SECRETS_MANAGER": secrets_store[1]})


class QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def image(docker_client: Any, tls: DatabaseTls) -> Any:
    """Built from infra/tracking_image as it is; only the CA bundle's URL is this test's."""
    base = subprocess.run([str(REPO / "scripts" / "base-image.sh")], cwd=REPO,
                          capture_output=True, text=True, timeout=900, check=False)
    assert base.returncode == 0, base.stderr
    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 partial(QuietFiles, directory=str(tls.ca.parent)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{tls.ca.name}"
        built, _ = docker_client.images.build(
            path=str(REPO), dockerfile=DOCKERFILE, tag=TAG, network_mode="host", rm=True,
            forcerm=True,
            buildargs={"RDS_CA_BUNDLE_URL": url}, timeout=1800)
    finally:
        server.shutdown()
        server.server_close()
    return built


class TrackingContainer:
    """The running task; `replace()` stops it and starts a new one, as ECS replaces a task."""

    def __init__(self, client: Any, image: Any, spec: ContainerRun,
                 definition: dict[str, Any], service_host: str,
                 hosts: dict[str, str]) -> None:
        self._client, self._image, self.spec, self._hosts = client, image, spec, hosts
        self._init = bool(definition.get("linuxParameters", {}).get("initProcessEnabled"))
        self.port = free_port()
        self.service_host = service_host
        self.container: Any = None

    def start(self, *, wait_seconds: float = 300) -> None:
        self.container = self._client.containers.run(
            self._image.id, command=self.spec.command, environment=self.spec.environment,
            ports={"5000/tcp": ("127.0.0.1", self.port)}, init=self._init, detach=True,
            extra_hosts=self._hosts)
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline:
            self.container.reload()
            if self.container.status == "exited":
                break
            try:
                answer = requests.get(f"http://127.0.0.1:{self.port}/health", timeout=5,
                                      headers={"Host": self.service_host})
                if answer.status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(1)
        logs = self.logs()[-3000:]
        raise AssertionError(f"the tracking container did not answer /health:\n{logs}")

    def logs(self) -> str:
        return self.container.logs().decode(errors="replace") if self.container else ""

    def remove(self) -> None:
        if self.container is not None:
            self.container.remove(force=True)
            self.container = None

    def replace(self) -> None:
        self.container.stop(timeout=20)
        self.remove()
        self.start()


@pytest.fixture(scope="session")
def tracking_container(docker_client: Any, image: Any, run_spec: ContainerRun,
                       task_container: dict[str, Any], service_host: str, db_host: str,
                       gateway: str) -> Iterator[TrackingContainer]:
    running = TrackingContainer(docker_client, image, run_spec, task_container, service_host,
                                hosts={db_host: gateway})
    started = time.monotonic()
    try:
        running.start()
        print(f"\ntracking container answered /health after {time.monotonic() - started:.1f} s")
        yield running
    finally:
        running.remove()


@pytest.fixture(scope="session")
def cloud_server(tracking_container: TrackingContainer, storage: Storage, run_spec: ContainerRun,
                 bucket: str) -> Iterator[TrackingServer]:
    """The container behind the load balancer's stand-in, as the security tests see a server."""
    with load_balancer(upstream_port=tracking_container.port,
                       service_host=tracking_container.service_host) as uri:
        env = {"MLFLOW_TRACKING_URI": uri,
               "MLFLOW_TRACKING_USERNAME": run_spec.environment["MLFLOW_AUTH_ADMIN_USERNAME"],
               "MLFLOW_TRACKING_PASSWORD": run_spec.environment["MLFLOW_AUTH_ADMIN_PASSWORD"]}
        yield TrackingServer(uri=uri, env=env, home=storage.stack.home, backend="cloud-image",
                             stack=storage.stack, bucket=bucket)


@pytest.fixture(scope="session")
def secured_server(cloud_server: TrackingServer) -> TrackingServer:
    """tests/security's checks, run here against the container."""
    return cloud_server


def in_database(storage: Storage, sql: str) -> list[list[str]]:
    rows = storage.stack.run_sql(sql).splitlines()
    return [row.split("\t") for row in rows if row]

