"""`mlops status` reads the registry over REST (no MLflow import) and says what
MLflow's own client says, on both backends (the mysql one with its basic auth)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from pipeline.gitops import registry
from pipeline.gitops.rest_reader import RestReader, supports
from tests.conftest import TrackingServer
from tests.utils import run_mlops
from tests.utils.cards import write_card

pytestmark = pytest.mark.integration


def _seed(server: TrackingServer, name: str) -> list[str]:
    """Two versions of `name`, the second Production and the first previous-production."""
    client = MlflowClient(server.uri, registry_uri=server.uri)
    experiment = client.create_experiment(f"status-{uuid.uuid4().hex[:8]}")
    client.create_registered_model(name)
    versions = []
    for value in (700.0, 540.0):
        run = client.create_run(experiment)
        client.log_metric(run.info.run_id, "val_rmse", value)
        client.log_metric(run.info.run_id, "cleanse_drop_duplicates", 3.0)
        client.set_terminated(run.info.run_id)
        version = client.create_model_version(name, f"runs:/{run.info.run_id}/model",
                                              run_id=run.info.run_id)
        versions.append(version.version)
    client.set_registered_model_alias(name, "previous-production", versions[0])
    client.set_registered_model_alias(name, "production", versions[1])
    return versions


def test_status_over_rest_matches_mlflows_client(tracking_server: TrackingServer,
                                                 tmp_path: Path) -> None:
    name = f"it-status-{uuid.uuid4().hex[:8]}"
    versions = _seed(tracking_server, name)
    assert supports(tracking_server.uri, tracking_server.env)
    rest = registry.describe(RestReader(tracking_server.uri, tracking_server.env), name)
    mlflow_view = registry.describe(
        MlflowClient(tracking_server.uri, registry_uri=tracking_server.uri), name)
    assert rest == mlflow_view
    assert rest["production"]["version"] == versions[1]
    assert rest["production"]["metrics"] == {"val_rmse": 540.0}  # cleansing counts left out
    assert rest["previous_production"] == versions[0]

    card = write_card(tmp_path, name)
    done = run_mlops("status", "--json", "--card", str(card), env=tracking_server.env)
    assert done.returncode == 0, done.stderr
    assert {k: v for k, v in json.loads(done.stdout).items()
            if k in rest} == rest


def test_status_of_a_model_the_registry_does_not_know(tracking_server: TrackingServer,
                                                      tmp_path: Path) -> None:
    card = write_card(tmp_path, f"it-status-none-{uuid.uuid4().hex[:8]}")
    done = run_mlops("status", "--card", str(card), env=tracking_server.env)
    assert done.returncode == 0, done.stderr
    assert "production: none yet" in done.stdout


def test_the_rest_reader_leaves_other_uris_and_auth_plugins_to_mlflow() -> None:
    assert not supports("sqlite:///mlflow.db", {})
    assert not supports("http://127.0.0.1:5000", {"MLFLOW_TRACKING_AUTH": "plugin"})
    assert supports("https://mlflow.example.com", {})
