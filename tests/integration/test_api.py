"""The data scientist's one import (`pipeline.api`), against a real tracking server: the
three ways to train (a name, a factory, an estimator object or a model fitted in the
notebook), the gate, and the proposal into the card."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from sklearn.compose import TransformedTargetRegressor
from sklearn.ensemble import ExtraTreesRegressor, GradientBoostingRegressor
from sklearn.linear_model import Ridge

from pipeline import api
from pipeline.errors import ConfigError
from pipeline.gitops.card import load_card
from pipeline.stages.features import build_model
from tests.conftest import TrackingServer
from tests.utils import run_mlops
from tests.utils.cards import write_card

pytestmark = pytest.mark.integration


def test_three_ways_in_one_gate_one_proposal(tracking_env: TrackingServer, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    experiment = f"api-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("MLOPS_EXPERIMENT", experiment)
    card = write_card(tmp_path, f"api-{uuid.uuid4().hex[:8]}")
    (tmp_path / "my_models.py").write_text(
        "from sklearn.ensemble import ExtraTreesRegressor\n\n\ndef extra_trees():\n"
        "    return ExtraTreesRegressor(n_estimators=10, min_samples_leaf=3, random_state=0)\n")
    boot = run_mlops("train", "--estimator", "dummy", "--register", "--promote",
                     "--card", str(card), env={**tracking_env.env,
                                               "MLOPS_EXPERIMENT": "api-baseline"})
    assert boot.returncode == 0, boot.stderr

    project = api.load(card)
    assert "xgboost" in api.estimators(project.task)
    by_name = api.train(project, "lightgbm", params={"n_estimators": 80})
    by_factory = api.train(project, "my_models:extra_trees")
    by_object = api.train(project, GradientBoostingRegressor(n_estimators=40), name="gb")
    notebook_model = build_model(project.data.spec, ExtraTreesRegressor(
        n_estimators=10, random_state=0)).fit(project.data.x_train, project.data.y_train)
    fitted = api.train(project, notebook_model, fitted=True, name="my fitted trees")

    client = MlflowClient(tracking_env.uri)
    runs = {run.info.run_id: run for run in client.search_runs(
        [client.get_experiment_by_name(experiment).experiment_id])}
    assert set(runs) == {r.run_id for r in (by_name, by_factory, by_object, fitted)}
    assert {run.data.params["estimator"] for run in runs.values()} == {
        "lightgbm", "my_models:extra_trees", "gb", "my fitted trees"}
    assert runs[by_name.run_id].data.params["estimator.n_estimators"] == "80"
    assert all(run.data.tags["twin"] == "onnx" for run in runs.values())

    with pytest.raises(ConfigError, match=r"posix\.system"):
        api.train(project, TransformedTargetRegressor(regressor=Ridge(),
                                                      inverse_func=os.system))
    assert len(client.search_runs([client.get_experiment_by_name(experiment)
                                   .experiment_id])) == 4, "a refused estimator leaves no run"

    verdict = api.gate(project, by_object.run_id)
    assert verdict.candidate_run_id == by_object.run_id
    assert (api.propose(project, by_object.run_id, verdict) == card) is verdict.passed
    expected = by_object.run_id if verdict.passed else None
    assert load_card(card).model.candidate_run_id == expected
