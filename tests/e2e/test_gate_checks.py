"""The gate's and promote's preconditions against a real MLflow server: one line, exit 2."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import mlflow
import pytest
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from sklearn.dummy import DummyRegressor

from pipeline.gitops import registry
from pipeline.gitops.card import write_candidate_run_id
from pipeline.stages.train import pip_requirements, trusted_types
from tests.conftest import TrackingServer
from tests.utils import run_mlops
from tests.utils.cards import write_card
from tests.utils.registry import move_production

pytestmark = [pytest.mark.e2e]

@pytest.fixture(scope="module")
def tracking_server(first_backend_server: TrackingServer) -> TrackingServer:
    """One backend: nothing here depends on the registry's database (tests/conftest.py)."""
    return first_backend_server


EXPERIMENT = "e2e-gate-checks"


def _card(tmp_path: Path, model: str, run_id: str | None = None, **replace: str) -> Path:
    path = write_card(tmp_path, model, replace=replace)
    if run_id is not None:
        write_candidate_run_id(path, run_id)
    return path


def _mlops(server: TrackingServer, card: Path, *args: str) -> tuple[int, str, str]:
    done = run_mlops(*args, "--card", str(card),
                     env={**server.env, "MLOPS_EXPERIMENT": EXPERIMENT})
    return done.returncode, done.stdout, done.stderr.strip()


def _last_line(stderr: str) -> str:
    return stderr.splitlines()[-1]


@pytest.fixture
def client(tracking_server: TrackingServer) -> MlflowClient:
    return MlflowClient(tracking_server.uri, registry_uri=tracking_server.uri)


@pytest.fixture
def experiment_id(client: MlflowClient) -> str:
    found = client.get_experiment_by_name(EXPERIMENT)
    return str(found.experiment_id if found else client.create_experiment(EXPERIMENT))


def test_candidates_the_gate_cannot_judge_fail_with_one_line(
    tracking_server: TrackingServer, client: MlflowClient, experiment_id: str, tmp_path: Path
) -> None:
    model = f"e2e-checks-{uuid.uuid4().hex[:8]}"
    missing = uuid.uuid4().hex
    code, _, err = _mlops(tracking_server, _card(tmp_path, model, missing), "gate")
    assert (code, _last_line(err)) == (
        2, f"error: candidate run {missing}: not found on the tracking server")

    running = client.create_run(experiment_id).info.run_id
    code, _, err = _mlops(tracking_server, _card(tmp_path, model, running), "gate")
    assert (code, _last_line(err)) == (
        2, f"error: candidate run {running}: status RUNNING, expected FINISHED")

    client.set_terminated(running)
    code, _, err = _mlops(tracking_server, _card(tmp_path, model, running), "gate")
    assert (code, _last_line(err)) == (
        2, f"error: candidate run {running}: no model at runs:/{running}/model")

    card = _card(tmp_path, model, running, **{"r2: 0.90": "auc: 0.90"})
    code, _, err = _mlops(tracking_server, card, "gate")
    assert code == 2
    assert _last_line(err).startswith("error: promotion.floors.auc: not a metric")
    assert not (tmp_path / "report.md").exists()


def test_a_candidate_with_another_feature_schema_than_production_is_refused(
    tracking_server: TrackingServer, tracking_env: TrackingServer, client: MlflowClient,
    tmp_path: Path,
) -> None:
    model = f"e2e-schema-{uuid.uuid4().hex[:8]}"
    mlflow.set_tracking_uri(tracking_server.uri)
    mlflow.set_experiment(EXPERIMENT)
    import pandas as pd

    x = pd.DataFrame({"carat": [0.3, 0.5, 1.0], "cut": ["Ideal", "Good", "Fair"]})
    narrow = DummyRegressor().fit(x, [500.0, 900.0, 4000.0])
    with mlflow.start_run() as run:
        mlflow.set_tag("task", "regression")
        mlflow.sklearn.log_model(narrow, name="model", pip_requirements=pip_requirements(),
                                 signature=infer_signature(x, narrow.predict(x)),
                                 skops_trusted_types=trusted_types(narrow))
    version = registry.register_run(client, model, run.info.run_id)
    move_production(client, model, version.version, tracking_uri=tracking_server.uri)

    card = _card(tmp_path, model)
    code, out, _ = _mlops(tracking_server, card, "train", "--estimator", "dummy", "--json")
    assert code == 0
    candidate = json.loads(out)["run_id"]
    write_candidate_run_id(card, candidate)
    code, _, err = _mlops(tracking_server, card, "gate")
    assert code == 2
    assert _last_line(err).startswith(
        f"error: candidate run {candidate}: feature schema differs from Production version 1 (")


def test_promote_decides_on_mains_own_verdict(
    tracking_server: TrackingServer, client: MlflowClient, tmp_path: Path
) -> None:
    model = f"e2e-verdict-{uuid.uuid4().hex[:8]}"
    card = _card(tmp_path, model)
    assert _mlops(tracking_server, card, "promote")[0] == 0  # no candidate: nothing to do
    code, out, _ = _mlops(tracking_server, card, "train", "--estimator", "ridge", "--json")
    ridge = json.loads(out)["run_id"]
    write_candidate_run_id(card, ridge)

    verdict = tmp_path / "verdict.json"
    code, out, _ = _mlops(tracking_server, card, "gate", "--json", str(verdict))
    assert code == 0  # no Production: floors decide
    assert "no Production version yet" in out

    # Main tightened a floor after the PR's gate: main's own verdict decides, and says why.
    stricter = _card(tmp_path, model, ridge, **{"r2: 0.90": "r2: 0.999"})
    code, _, err = _mlops(tracking_server, stricter, "promote", "--verdict", str(verdict))
    assert code == 1, err
    line = _last_line(err)
    assert line.startswith("error: promote: the gate re-computed on main fails: floor: r2 is")
    assert "(the PR's verdict differs: verdict: pass on the PR, fail on main)" in line
    assert registry.production_version(client, model) is None

    card = _card(tmp_path, model, ridge)
    code, out, err = _mlops(tracking_server, card, "promote")
    assert code == 0, err
    assert out.strip() == f"{model} version 1 (run {ridge}) is now Production (was none)"
    tags = client.get_model_version(model, "1").tags
    assert (tags["pr_number"], tags["workflow_run_url"], tags["baseline_version"]) == (
        "none", "local", "none")
