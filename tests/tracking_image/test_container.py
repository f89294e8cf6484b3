"""The cloud tracking image, run as its ECS task definition says, against MariaDB and S3.

`make tracking-image-test` runs this folder. Each test names what production relies on.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

import pymysql
import pytest
import requests
from mlflow.tracking import MlflowClient

from pipeline.localstack.mysql import DatabaseTls
from tests.conftest import TrackingServer
from tests.infra.conftest import Deployment, base_settings
from tests.security import test_tracking_server as local
from tests.security.test_tracking_server import (  # the same checks as the local stack's
    canary,
    registered,
    test_anonymous_requests_get_401,
    test_artifact_downloads_outside_the_root_get_4xx,
    test_artifact_listing_outside_the_root_gets_4xx,
    test_artifact_uploads_outside_the_root_get_4xx,
    test_foreign_host_headers_get_403,
    test_health_stays_public_for_probes,
    test_the_default_admin_password_does_not_work,
)
from tests.tracking_image.conftest import MASTER_USER, Storage, TrackingContainer, in_database
from tests.tracking_image.secrets_manager import SecretsManager
from tests.tracking_image.task import ADDRESSES, RUNTIME, ContainerRun
from tests.utils import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.integration, pytest.mark.slow]

__all__ = [  # collected here too, against the container
    "canary", "registered", "test_anonymous_requests_get_401",
    "test_artifact_downloads_outside_the_root_get_4xx",
    "test_artifact_listing_outside_the_root_gets_4xx",
    "test_artifact_uploads_outside_the_root_get_4xx", "test_foreign_host_headers_get_403",
    "test_health_stays_public_for_probes", "test_the_default_admin_password_does_not_work",
]


def test_the_container_runs_the_task_definitions_environment_and_command(
    tracking_container: TrackingContainer, task_container: dict[str, Any],
    run_spec: ContainerRun, image: Any,
) -> None:
    config = tracking_container.container.attrs["Config"]
    assert config["Cmd"] == task_container["command"]
    baked = set(image.attrs["Config"]["Env"])
    running = dict(item.split("=", 1) for item in config["Env"] if item not in baked)
    assert running == run_spec.environment
    declared = {item["name"]: item["value"] for item in task_container["environment"]}
    secret_names = {item["name"] for item in task_container["secrets"]}
    assert set(running) == set(declared) | secret_names | set(RUNTIME)
    for name, value in declared.items():
        if name not in ADDRESSES:
            assert running[name] == value, name


def test_a_read_only_user_cannot_write(secured_server: TrackingServer,
                                       registered: local.Registered) -> None:
    """The cloud default is NO_PERMISSIONS: the reader holds an explicit READ grant."""
    local.test_a_read_only_user_cannot_move_production(secured_server, registered,
                                                       "explicit-read-grant")


def test_a_user_without_grants_sees_nothing(secured_server: TrackingServer,
                                            registered: local.Registered) -> None:
    user = local._create_user(secured_server, explicit_read=None)
    answer = requests.get(f"{secured_server.uri}{local.API}/registered-models/get",
                          params={"name": registered.name}, auth=user, timeout=30)
    assert answer.status_code == 403


def test_the_database_speaks_tls_only(storage: Storage, tls: DatabaseTls, db_host: str) -> None:
    """As RDS with require_secure_transport: the container's connections are TLS."""
    state = storage.stack.state
    login = {"host": "127.0.0.1", "port": state.db_port, "user": MASTER_USER,
             "password": storage.master_password, "connect_timeout": 5}
    with pytest.raises(pymysql.err.OperationalError):
        pymysql.connect(**login, ssl_disabled=True)
    # with the CA the image trusts (PyMySQL checks the name; the certificate's is db_host)
    pymysql.connect(**login, ssl={"ca": str(tls.ca), "check_hostname": False}).close()


def test_users_live_in_their_own_database(storage: Storage, cloud_server: TrackingServer) -> None:
    auth_tables = {row[0] for row in in_database(storage, "SHOW TABLES FROM mlflow_auth;")}
    assert {"users", "experiment_permissions", "alembic_version_auth"} <= auth_tables
    tracking_tables = {row[0] for row in in_database(storage, "SHOW TABLES FROM mlflow;")}
    assert "runs" in tracking_tables
    assert "users" not in tracking_tables


def _log_and_register(server: TrackingServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for key, value in server.env.items():
        monkeypatch.setenv(key, value)
    client = MlflowClient(server.uri, registry_uri=server.uri)
    tag = secrets.token_hex(4)
    experiment = client.create_experiment(f"cloud-{tag}")
    run = client.create_run(experiment)
    client.log_metric(run.info.run_id, "rmse", 1.25)
    client.log_text(run.info.run_id, f"artifact {tag}", "notes/readme.txt")
    client.set_terminated(run.info.run_id)
    name = f"cloud-model-{tag}"
    client.create_registered_model(name)
    client.create_model_version(name, f"runs:/{run.info.run_id}/notes", run_id=run.info.run_id)
    client.set_registered_model_alias(name, "production", "1")
    return {"run_id": run.info.run_id, "model": name, "tag": tag, "experiment": experiment}


def test_runs_go_to_mariadb_and_artifacts_through_s3(
    cloud_server: TrackingServer, storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = _log_and_register(cloud_server, monkeypatch)
    rows = in_database(storage, f"SELECT status FROM mlflow.runs WHERE run_uuid = "
                                f"'{made['run_id']}';")
    assert rows == [["FINISHED"]]
    stored = list(cloud_server.bucket_dir.rglob("readme.txt"))
    assert [path.read_text() for path in stored if made["run_id"] in str(path)] == [
        f"artifact {made['tag']}"]


def test_a_new_task_finds_the_runs_and_the_registry(
    cloud_server: TrackingServer, tracking_container: TrackingContainer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ECS replaces tasks: nothing may live in the container (the old one is removed)."""
    made = _log_and_register(cloud_server, monkeypatch)
    tracking_container.replace()
    client = MlflowClient(cloud_server.uri, registry_uri=cloud_server.uri)
    run = client.get_run(made["run_id"])
    assert run.data.metrics == {"rmse": 1.25}
    assert client.get_model_version_by_alias(made["model"], "production").version == "1"
    text = client.download_artifacts(made["run_id"], "notes/readme.txt")
    with open(text) as handle:
        assert handle.read() == f"artifact {made['tag']}"
    status, _ = local._raw(cloud_server, "GET", f"{local.API}/experiments/search?max_results=1")
    assert status == 401, "and anonymous callers are still refused"


def test_mlflows_own_auth_migration_fails_on_mariadb_without_auth_store(
    storage: Storage, tls: DatabaseTls
) -> None:
    """Why auth_store.py exists: on an empty database MLflow's migration stops at the
    second `fk_user_id` (errno 121, mlflow/mlflow#9642); prepared first, it runs to head."""
    import sqlalchemy as sa
    from auth_store import prepare_auth_store
    from mlflow.server.auth.db import utils

    name = f"bare_auth_{secrets.token_hex(4)}"
    server = (f"mysql+pymysql://{MASTER_USER}:{storage.master_password}@127.0.0.1:"
              f"{storage.stack.state.db_port}/mlflow?ssl_ca={tls.ca}&ssl_check_hostname=false")
    storage.stack.run_sql(f"CREATE DATABASE {name};")
    bare = sa.create_engine(server.replace("/mlflow?", f"/{name}?"))
    with pytest.raises(sa.exc.OperationalError, match="121"):
        utils.migrate(bare, "head")
    bare.dispose()
    prepared = sa.create_engine(prepare_auth_store(server, database=f"{name}_ok"))
    utils.migrate_if_needed(prepared, "head")
    assert "alembic_version_auth" in sa.inspect(prepared).get_table_names()
    prepared.dispose()


# --- one login per consumer, each able to do what it needs and refused the rest ------------

READERS = ("serving", "gate", "registry-read", "emr-score")
TRAINERS = ("airflow", "emr-train")
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"


@pytest.fixture(scope="module")
def logins(cloud_server: TrackingServer, secrets_store: tuple[SecretsManager, str],
           deployment: Deployment) -> dict[str, tuple[str, str]]:
    """Each login as its consumer reads it: from its secret, which the task wrote."""
    store, _ = secrets_store
    arns = deployment.outputs["loginSecretArns"]
    wait_for(lambda: set(arns.values()) <= set(store.puts),
             what="the task to write every login", seconds=120, interval=1)
    values = {name: json.loads(store.values[arn]) for name, arn in arns.items()}
    return {name: (value["username"], value["password"]) for name, value in values.items()}


@dataclass(frozen=True)
class Production:
    experiment_id: str
    run_id: str
    model_id: str
    versions: tuple[str, str]


@pytest.fixture(scope="module")
def production(cloud_server: TrackingServer, deployment: Deployment) -> Production:
    """The declared model with two versions (logged models of the declared experiment) and
    `production` on the first, made by the admin as a bootstrap would."""
    settings = base_settings()
    with pytest.MonkeyPatch.context() as patch:
        for key, value in cloud_server.env.items():
            patch.setenv(key, value)
        client = MlflowClient(cloud_server.uri, registry_uri=cloud_server.uri)
        experiment = client.get_experiment_by_name(settings.experiment)
        assert experiment is not None, "the task pre-created the experiment"
        run = client.create_run(experiment.experiment_id)
        logged = client.create_logged_model(experiment.experiment_id,
                                            source_run_id=run.info.run_id)
        versions = tuple(str(client.create_model_version(
            settings.model_name, f"models:/{logged.model_id}", run_id=run.info.run_id,
            model_id=logged.model_id).version) for _ in range(2))
        client.set_registered_model_alias(settings.model_name, "production", versions[0])
    return Production(experiment.experiment_id, run.info.run_id, logged.model_id,
                      (versions[0], versions[1]))


def _call(server: TrackingServer, user: tuple[str, str], method: str, target: str,
          **body: object) -> int:
    if method == "GET":
        answer = requests.get(f"{server.uri}{target}", params=body, auth=user, timeout=30)
    elif method == "PUT":
        answer = requests.put(f"{server.uri}{target}", data=b"bytes", auth=user, timeout=30)
    else:
        answer = requests.request(method, f"{server.uri}{target}", json=body, auth=user,
                                  timeout=30)
    return answer.status_code


def _can(server: TrackingServer, user: tuple[str, str], made: Production) -> dict[str, int]:
    """The status of each operation a consumer might try, as this user."""
    model = base_settings().model_name
    api = local.API
    return {
        "read model": _call(server, user, "GET", f"{api}/registered-models/get", name=model),
        "read production": _call(server, user, "GET", f"{api}/registered-models/alias",
                                 name=model, alias="production"),
        "read experiment": _call(server, user, "GET", f"{api}/experiments/get",
                                 experiment_id=made.experiment_id),
        "read model files": _call(server, user, "GET", ARTIFACTS,
                                  path=f"{made.experiment_id}/models/{made.model_id}/artifacts"),
        "create experiment": _call(server, user, "POST", f"{api}/experiments/create",
                                   name=f"x-{secrets.token_hex(4)}"),
        "create model": _call(server, user, "POST", f"{api}/registered-models/create",
                              name=f"x-{secrets.token_hex(4)}"),
        "create run": _call(server, user, "POST", f"{api}/runs/create",
                            experiment_id=made.experiment_id),
        "register version": _call(server, user, "POST", f"{api}/model-versions/create",
                                  name=model, source=f"models:/{made.model_id}",
                                  run_id=made.run_id, model_id=made.model_id),
        "tag registered_by": _call(server, user, "POST", f"{api}/model-versions/set-tag",
                                   name=model, version=made.versions[1], key="registered_by",
                                   value="test"),
        "move production": _call(server, user, "POST", f"{api}/registered-models/alias",
                                 name=model, alias="production", version=made.versions[0]),
        "write manifest": _call(server, user, "POST", f"{api}/model-versions/set-tag",
                                name=model, version=made.versions[0], key="mlops.manifest",
                                value="{}"),
        "write model files": _call(server, user, "PUT", f"{ARTIFACTS}/{made.experiment_id}/"
                                   f"models/{made.model_id}/artifacts/twin.onnx"),
        "write run files": _call(server, user, "PUT", f"{ARTIFACTS}/{made.experiment_id}/"
                                 f"{made.run_id}/artifacts/x.txt"),
        "create user": _call(server, user, "POST", "/api/2.0/mlflow/users/create",
                             username=f"u-{secrets.token_hex(4)}", password="p" * 20),
    }


READ = {"read model", "read production", "read experiment", "read model files"}
EXPECTED = {
    "reader": READ,
    "trainer": READ | {"create run", "register version", "tag registered_by",
                       "write run files", "write model files"},
    "promoter": READ | {"register version", "tag registered_by", "move production",
                        "write manifest", "write model files"},
}


@pytest.mark.parametrize("name", [*READERS, *TRAINERS, "promote"])
def test_each_login_does_what_it_needs_and_gets_403_for_the_rest(
        cloud_server: TrackingServer, logins: dict[str, tuple[str, str]],
        production: Production, name: str) -> None:
    role = "reader" if name in READERS else "trainer" if name in TRAINERS else "promoter"
    seen = _can(cloud_server, logins[name], production)
    allowed = {operation for operation, status in seen.items() if status == 200}
    assert allowed == EXPECTED[role], seen
    refused = {operation: status for operation, status in seen.items()
               if operation not in EXPECTED[role]}
    assert set(refused.values()) == {403}, refused


def test_the_admin_login_is_read_by_no_consumer(deployment: Deployment) -> None:
    """Break glass: the task's own execution role reads it, to bootstrap the user store."""
    admin = deployment.outputs["trackingAdminSecretArn"]
    readers = [p for p in deployment.of_type("aws:iam/rolePolicy:RolePolicy")
               if admin in p.state["policy"]]
    assert [p.name for p in readers] == ["tracking-exec-secrets"]


def test_the_master_password_rotates_under_a_running_server(
        cloud_server: TrackingServer, storage: Storage, production: Production) -> None:
    """As RDS's weekly rotation: a new master password and every connection dropped; the
    server, connected as its own application user, keeps answering."""
    new = secrets.token_urlsafe(24)
    storage.stack.run_sql(f"ALTER USER '{MASTER_USER}'@'%' IDENTIFIED BY '{new}';")
    ids = in_database(storage, "SELECT id FROM information_schema.processlist "
                               "WHERE user = 'mlflow_app';")
    assert ids, "the server connects as the application user"
    for (connection,) in ids:
        storage.stack.run_sql(f"KILL {connection};")
    admin = (cloud_server.env["MLFLOW_TRACKING_USERNAME"],
             cloud_server.env["MLFLOW_TRACKING_PASSWORD"])
    for _ in range(3):  # a dropped pooled connection may cost one retry inside MLflow
        status = _call(cloud_server, admin, "GET", f"{local.API}/experiments/get",
                       experiment_id=production.experiment_id)
        if status == 200:
            break
    assert status == 200
