"""The attacks of test_tracking_server.py, against the same stack without our auth plugin
(MLflow's own `authorization_function`): they succeed there, so the tests that refuse them
test the plugin, not MLflow."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
import requests
from mlflow.tracking import MlflowClient

from pipeline.localstack.mysql import MLFLOW_AUTH_FUNCTION, mysql_stack
from tests.conftest import TrackingServer, selected_backends
from tests.security.test_tracking_server import API, _create, _create_user
from tests.utils import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def unguarded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrackingServer]:
    if "mysql" not in selected_backends():
        pytest.skip("the mysql backend is not selected")
    stack = mysql_stack(home=tmp_path_factory.mktemp("unguarded"), host="127.0.0.1",
                        port=free_port(), authorization_function=MLFLOW_AUTH_FUNCTION)
    try:
        stack.start(wait_seconds=180)
        yield TrackingServer(uri=stack.uri, env=stack.client_env(), home=stack.home)
    finally:
        stack.stop()


@pytest.mark.parametrize("what", ["experiments", "registered-models"])
def test_without_the_plugin_a_reader_creates(unguarded_server: TrackingServer,
                                              what: str) -> None:
    reader = _create_user(unguarded_server, explicit_read=None)
    assert _create(unguarded_server, reader, what) == 200


def test_without_the_plugin_an_editor_moves_an_alias(unguarded_server: TrackingServer) -> None:
    """MLflow's EDIT on a model covers alias moves: what rule 3 of the plugin takes away."""
    admin = (unguarded_server.env["MLFLOW_TRACKING_USERNAME"],
             unguarded_server.env["MLFLOW_TRACKING_PASSWORD"])
    name = f"pointer-{secrets.token_hex(4)}"
    with pytest.MonkeyPatch.context() as patch:
        for key, value in unguarded_server.env.items():
            patch.setenv(key, value)
        client = MlflowClient(unguarded_server.uri, registry_uri=unguarded_server.uri)
        run = client.create_run(client.create_experiment(f"pointer-{secrets.token_hex(4)}"))
        client.create_registered_model(name)
        client.create_model_version(name, f"{run.info.artifact_uri}/model",
                                    run_id=run.info.run_id)
    editor = _create_user(unguarded_server, explicit_read=None)
    granted = requests.post(f"{unguarded_server.uri}/api/3.0/mlflow/users/permissions/grant",
                            auth=admin, timeout=30,
                            json={"username": editor[0], "resource_type": "registered_model",
                                  "resource_id": name, "permission": "EDIT"})
    assert granted.status_code == 200, granted.text
    moved = requests.post(f"{unguarded_server.uri}{API}/registered-models/alias", auth=editor,
                          json={"name": name, "alias": "production", "version": "1"},
                          timeout=30)
    assert moved.status_code == 200
