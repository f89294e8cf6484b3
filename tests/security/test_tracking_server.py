"""What the production-like tracking server refuses, checked from outside over HTTP.

Each test is written so that it fails against a server without the protection it
names (docs/backends.md lists which configuration makes each one fail).
"""

from __future__ import annotations

import base64
import http.client
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests
from mlflow.tracking import MlflowClient

from pipeline.localstack.mysql import ARTIFACT_PREFIX
from tests.conftest import TrackingServer
from tests.utils import REPO, run_mlops

pytestmark = pytest.mark.integration

API = "/api/2.0/mlflow"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
LEGACY_DEFAULT_ADMIN = ("admin", "password1234")  # what MLflow's basic_auth.ini once shipped


def _admin(server: TrackingServer) -> tuple[str, str]:
    return server.env["MLFLOW_TRACKING_USERNAME"], server.env["MLFLOW_TRACKING_PASSWORD"]


def _raw(server: TrackingServer, method: str, target: str, *, host: str | None = None,
         auth: tuple[str, str] | None = None, body: bytes | None = None) -> tuple[int, str]:
    """Send `target` byte for byte: no client-side normalisation of `..` or `%2e`."""
    address = urlparse(server.uri)
    connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=30)
    headers = {"Host": host or address.netloc}
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    try:
        connection.request(method, target, body=body, headers=headers)
        answer = connection.getresponse()
        return answer.status, answer.read().decode(errors="replace")
    finally:
        connection.close()


# --- authentication -------------------------------------------------------------------------

@pytest.mark.parametrize("target", [
    f"{API}/experiments/search?max_results=1",
    f"{API}/registered-models/search",
    f"{ARTIFACTS}?path=",
    "/",
])
def test_anonymous_requests_get_401(secured_server: TrackingServer, target: str) -> None:
    status, _ = _raw(secured_server, "GET", target)
    assert status == 401


def test_health_stays_public_for_probes(secured_server: TrackingServer) -> None:
    """Load balancers and `registry.check_reachable` probe /health without credentials."""
    assert _raw(secured_server, "GET", "/health")[0] == 200


def test_the_default_admin_password_does_not_work(secured_server: TrackingServer) -> None:
    target = f"{API}/experiments/search?max_results=1"
    assert _raw(secured_server, "GET", target, auth=_admin(secured_server))[0] == 200
    assert _raw(secured_server, "GET", target, auth=LEGACY_DEFAULT_ADMIN)[0] == 401


def test_a_wrong_password_fails_the_cli_in_one_line(secured_server: TrackingServer) -> None:
    env = {**secured_server.env, "MLFLOW_TRACKING_PASSWORD": "not-the-password"}
    done = run_mlops("status", "--card", str(REPO / "model_card.yaml"), env=env)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error:"), done.stderr
    assert "401" in lines[0] or "unauthorized" in lines[0].lower()
    assert "not-the-password" not in done.stderr


# --- authorization: a reader cannot move the production alias -------------------------------

@dataclass(frozen=True)
class Registered:
    name: str
    versions: tuple[str, str]


@pytest.fixture
def registered(secured_server: TrackingServer) -> Registered:
    """A fresh model with two versions and `production` on the first, made by the admin."""
    admin = MlflowClient(secured_server.uri, registry_uri=secured_server.uri)
    with pytest.MonkeyPatch.context() as patch:
        for key, value in secured_server.env.items():
            patch.setenv(key, value)
        experiment = admin.create_experiment(f"security-{secrets.token_hex(4)}")
        run = admin.create_run(experiment)
        name = f"security-model-{secrets.token_hex(4)}"
        admin.create_registered_model(name)
        versions = tuple(
            admin.create_model_version(name, f"{run.info.artifact_uri}/model",
                                       run_id=run.info.run_id).version for _ in range(2))
        admin.set_registered_model_alias(name, "production", versions[0])
    return Registered(name=name, versions=(str(versions[0]), str(versions[1])))


def _create_user(server: TrackingServer, *, explicit_read: str | None) -> tuple[str, str]:
    user = (f"reader-{secrets.token_hex(4)}", secrets.token_urlsafe(18))
    answer = requests.post(f"{server.uri}{API}/users/create", timeout=30, auth=_admin(server),
                           json={"username": user[0], "password": user[1]})
    assert answer.status_code == 200, answer.text
    if explicit_read is not None:
        answer = requests.post(  # MLflow 3.17's per-user grant API
            f"{server.uri}/api/3.0/mlflow/users/permissions/grant", timeout=30,
            auth=_admin(server),
            json={"username": user[0], "resource_type": "registered_model",
                  "resource_id": explicit_read, "permission": "READ"})
        assert answer.status_code == 200, answer.text
    return user


@pytest.mark.parametrize("grant", ["default-permission", "explicit-read-grant"])
def test_a_read_only_user_cannot_move_production(secured_server: TrackingServer,
                                                 registered: Registered, grant: str) -> None:
    reader = _create_user(secured_server,
                          explicit_read=registered.name if grant == "explicit-read-grant" else None)
    alias_url = f"{secured_server.uri}{API}/registered-models/alias"
    seen = requests.get(alias_url, params={"name": registered.name, "alias": "production"},
                        auth=reader, timeout=30)
    assert seen.status_code == 200, "the reader can read"
    assert seen.json()["model_version"]["version"] == registered.versions[0]

    moved = requests.post(alias_url, auth=reader, timeout=30, json={
        "name": registered.name, "alias": "production", "version": registered.versions[1]})
    assert moved.status_code == 403

    after = requests.get(alias_url, params={"name": registered.name, "alias": "production"},
                         auth=_admin(secured_server), timeout=30)
    assert after.json()["model_version"]["version"] == registered.versions[0]


# --- artifact paths -------------------------------------------------------------------------

TRAVERSALS = [
    "../secret.txt",
    "sub/../../secret.txt",
    "%2e%2e/secret.txt",
    "%2e%2e%2fsecret.txt",
    "..%2fsecret.txt",
    "%252e%252e%252fsecret.txt",
    "..\\secret.txt",
    "..%5csecret.txt",
    "sub%5c..%5c..%5csecret.txt",
]


@pytest.fixture
def canary(secured_server: TrackingServer) -> Iterator[tuple[Path, str]]:
    """A secret object just outside the artifact root (the bucket's top level)."""
    bucket = secured_server.bucket_dir
    path, token = bucket / "secret.txt", secrets.token_hex(16)
    path.write_text(token)
    try:
        yield bucket, token
    finally:
        path.unlink(missing_ok=True)


def _outside_artifact_root(bucket: Path) -> set[Path]:
    inside = bucket / ARTIFACT_PREFIX
    found = {p for p in bucket.parent.rglob("*") if p.is_file() and inside not in p.parents}
    return found | {p for p in inside.rglob("*") if "\\" in p.name}


@pytest.mark.parametrize("path", TRAVERSALS)
def test_artifact_downloads_outside_the_root_get_4xx(
    secured_server: TrackingServer, canary: tuple[Path, str], path: str
) -> None:
    status, body = _raw(secured_server, "GET", f"{ARTIFACTS}/{path}",
                        auth=_admin(secured_server))
    assert 400 <= status < 500, (status, body[:200])
    assert canary[1] not in body


@pytest.mark.parametrize("path", TRAVERSALS)
def test_artifact_uploads_outside_the_root_get_4xx(
    secured_server: TrackingServer, canary: tuple[Path, str], path: str
) -> None:
    before = _outside_artifact_root(canary[0])
    status, body = _raw(secured_server, "PUT", f"{ARTIFACTS}/{path}",
                        auth=_admin(secured_server), body=b"written from outside")
    assert 400 <= status < 500, (status, body[:200])
    assert _outside_artifact_root(canary[0]) == before, "nothing was written outside the root"


@pytest.mark.parametrize("path", ["../secret.txt", "..%5csecret.txt", "%2e%2e%2fsecret.txt"])
def test_artifact_listing_outside_the_root_gets_4xx(
    secured_server: TrackingServer, canary: tuple[Path, str], path: str
) -> None:
    status, body = _raw(secured_server, "GET", f"{ARTIFACTS}?path={path}",
                        auth=_admin(secured_server))
    assert 400 <= status < 500, (status, body[:200])
    assert "secret.txt" not in body


# --- Host header ------------------------------------------------------------------------------

def test_foreign_host_headers_get_403(secured_server: TrackingServer) -> None:
    port = urlparse(secured_server.uri).port
    target = f"{API}/experiments/search?max_results=1"
    admin = _admin(secured_server)
    assert _raw(secured_server, "GET", target, auth=admin)[0] == 200, "loopback is allowed"
    for host in ("evil.example", f"evil.example:{port}", f"192.168.7.7:{port}", f"10.0.0.9:{port}"):
        status, _ = _raw(secured_server, "GET", target, host=host, auth=admin)
        assert status == 403, host


# --- creating: a reader reads and changes nothing ---------------------------------------------

def _create(server: TrackingServer, user: tuple[str, str], what: str) -> int:
    """POST experiments/create or registered-models/create as `user`; the HTTP status."""
    body = {"name": f"made-by-{user[0]}-{secrets.token_hex(4)}"}
    answer = requests.post(f"{server.uri}{API}/{what}/create", json=body, auth=user, timeout=30)
    return answer.status_code


def grant_to_create(server: TrackingServer, username: str) -> None:
    """MLflow's grant to create: a role in the default workspace holding `workspace * USE`."""
    from mlflow.server.auth.client import AuthServiceClient

    with pytest.MonkeyPatch.context() as patch:
        for key, value in server.env.items():
            patch.setenv(key, value)
        client = AuthServiceClient(server.uri)
        role = client.create_role("default", f"creators-{secrets.token_hex(4)}")
        client.add_role_permission(role.id, "workspace", "*", "USE")
        client.assign_role(username, role.id)


@pytest.mark.parametrize("what", ["experiments", "registered-models"])
def test_a_read_only_user_cannot_create(secured_server: TrackingServer, registered: Registered,
                                        what: str) -> None:
    """docs/gate.md: the reader "reads and changes nothing". MLflow lets any logged-in user
    create experiments and models; the auth plugin asks for a grant to create."""
    reader = _create_user(secured_server, explicit_read=registered.name)
    assert _create(secured_server, reader, what) == 403
    model = requests.get(f"{secured_server.uri}{API}/registered-models/get", auth=reader,
                         params={"name": registered.name}, timeout=30)
    assert model.status_code == 200, "the reader keeps READ on the model"
    experiment_id = _experiment_of(secured_server, registered)
    experiment = requests.get(f"{secured_server.uri}{API}/experiments/get", auth=reader,
                              params={"experiment_id": experiment_id}, timeout=30)
    assert experiment.status_code == 200, "and on its experiment"


@pytest.mark.parametrize("what", ["experiments", "registered-models"])
def test_a_grant_to_create_lets_a_user_create(secured_server: TrackingServer,
                                              what: str) -> None:
    user = _create_user(secured_server, explicit_read=None)
    assert _create(secured_server, user, what) == 403
    grant_to_create(secured_server, user[0])
    assert _create(secured_server, user, what) == 200


def _experiment_of(server: TrackingServer, registered: Registered) -> str:
    answer = requests.get(f"{server.uri}{API}/model-versions/get", auth=_admin(server),
                          params={"name": registered.name, "version": registered.versions[0]},
                          timeout=30)
    run_id = answer.json()["model_version"]["run_id"]
    run = requests.get(f"{server.uri}{API}/runs/get", auth=_admin(server),
                       params={"run_id": run_id}, timeout=30)
    return str(run.json()["run"]["info"]["experiment_id"])


# --- the production pointer: EDIT registers versions, MANAGE moves the pointer -----------------

def _grant(server: TrackingServer, username: str, kind: str, resource: str,
           permission: str) -> None:
    answer = requests.post(f"{server.uri}/api/3.0/mlflow/users/permissions/grant", timeout=30,
                           auth=_admin(server),
                           json={"username": username, "resource_type": kind,
                                 "resource_id": resource, "permission": permission})
    assert answer.status_code == 200, answer.text


POINTER_MOVES = {
    "alias": ("POST", "registered-models/alias", {"alias": "production", "version": "2"}),
    "alias-delete": ("DELETE", "registered-models/alias", {"alias": "production"}),
    "stage": ("POST", "model-versions/transition-stage",
              {"version": "2", "stage": "Production", "archive_existing_versions": True}),
    "manifest-tag": ("POST", "model-versions/set-tag",
                     {"version": "1", "key": "mlops.manifest", "value": "{}"}),
    "audit-tag": ("POST", "model-versions/set-tag",
                  {"version": "2", "key": "promoted_at", "value": "2020-01-01"}),
    "tag-delete": ("DELETE", "model-versions/delete-tag", {"version": "1", "key": "x"}),
    "rename": ("POST", "registered-models/rename", {"new_name": "elsewhere"}),
}


@pytest.mark.parametrize("move", sorted(POINTER_MOVES))
def test_an_editor_registers_versions_but_cannot_move_the_pointer(
        secured_server: TrackingServer, registered: Registered, move: str) -> None:
    """Training holds EDIT on the model (it registers versions and tags them
    `registered_by`); aliases, stages, the manifest and promotion's tags are MANAGE's."""
    editor = _create_user(secured_server, explicit_read=None)
    _grant(secured_server, editor[0], "registered_model", registered.name, "EDIT")
    tagged = requests.post(f"{secured_server.uri}{API}/model-versions/set-tag", auth=editor,
                           json={"name": registered.name, "version": registered.versions[1],
                                 "key": "registered_by", "value": "a DAG run"}, timeout=30)
    assert tagged.status_code == 200, tagged.text
    method, path, body = POINTER_MOVES[move]
    answer = requests.request(method, f"{secured_server.uri}{API}/{path}", auth=editor,
                              json={"name": registered.name, **body}, timeout=30)
    assert answer.status_code == 403, answer.text
    after = requests.get(f"{secured_server.uri}{API}/registered-models/alias",
                         params={"name": registered.name, "alias": "production"},
                         auth=_admin(secured_server), timeout=30)
    assert after.json()["model_version"]["version"] == registered.versions[0]


def test_a_manager_moves_the_pointer(secured_server: TrackingServer,
                                     registered: Registered) -> None:
    manager = _create_user(secured_server, explicit_read=None)
    _grant(secured_server, manager[0], "registered_model", registered.name, "MANAGE")
    moved = requests.post(f"{secured_server.uri}{API}/registered-models/alias", auth=manager,
                          json={"name": registered.name, "alias": "production",
                                "version": registered.versions[1]}, timeout=30)
    assert moved.status_code == 200, moved.text
