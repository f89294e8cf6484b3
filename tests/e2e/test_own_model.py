"""Your own model, the whole loop, as a data scientist on a clone of the repository would.

A folder laid out like the repository's root (its card, and `my_models.py` beside it)
-> bootstrap a dummy Production and serve it -> train `--estimator xgboost`,
`--estimator lightgbm` and the factory `my_models:extra_trees`, each gated (exit 0 or
1) -> a factory whose estimator carries `os.system` exits 2 naming it and leaves no run
-> XGBoost is promoted with the deployed server configured: promote waits until the
server serves it, by its compiled twin, within a relative 1e-3 of the model's own
prediction. (The experiment notebook's runs, which cover six estimators, are
tests/notebooks'.)
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest
import requests
from mlflow.tracking import MlflowClient

import modelio
from modelio import source as modelio_source
from pipeline.gitops.card import load_card, prepare_data
from tests.conftest import TrackingServer
from tests.serving.conftest import serving_process, using_env, wait_for
from tests.utils import MLOPS
from tests.utils.cards import write_card

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MY_MODELS = '''
"""A data scientist's own estimators: each factory returns an unfitted estimator."""

import os

import numpy as np
from sklearn.compose import TransformedTargetRegressor
from sklearn.ensemble import ExtraTreesRegressor
from sklearn.linear_model import Ridge


def extra_trees():
    return ExtraTreesRegressor(n_estimators=60, min_samples_leaf=3, random_state=0)


def log_price_with_a_shell():
    return TransformedTargetRegressor(regressor=Ridge(), func=np.log1p,
                                      inverse_func=os.system, check_inverse=False)
'''


@pytest.fixture(scope="module")
def tracking_server(first_backend_server: TrackingServer) -> TrackingServer:
    """One backend: nothing here depends on the registry's database (tests/conftest.py)."""
    return first_backend_server


def mlops(*args: str, repo: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MLOPS, *args, "--card", str(repo / "model_card.yaml")],
                          capture_output=True, text=True, timeout=900, cwd=repo,
                          env={**os.environ, **env}, check=False)


def test_own_models_train_gate_promote_and_serve_by_their_twin(
        tracking_server: TrackingServer, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    model = f"e2e-own-model-{uuid.uuid4().hex[:8]}"
    card = write_card(repo, model)
    (repo / "my_models.py").write_text(textwrap.dedent(MY_MODELS))
    experiment = f"own-model-{uuid.uuid4().hex[:8]}"
    env = {**tracking_server.env, "MLOPS_EXPERIMENT": experiment}
    client = MlflowClient(tracking_server.uri, registry_uri=tracking_server.uri)

    def ok(*args: str, extra: dict[str, str] | None = None) -> str:
        done = mlops(*args, repo=repo, env={**env, **(extra or {})})
        assert done.returncode == 0, done.stderr
        return done.stdout

    def runs() -> list[str]:
        found = client.get_experiment_by_name(experiment)
        return [] if found is None else [
            r.info.run_id for r in client.search_runs([found.experiment_id])]

    ok("train", "--estimator", "dummy", "--register", "--promote", "--json")
    with serving_process(tmp_path / "serving", tracking_server.env, model) as server:
        trained: dict[str, str] = {}
        for estimator in ("xgboost", "lightgbm", "my_models:extra_trees"):
            result = json.loads(ok("train", "--estimator", estimator, "--json"))
            trained[estimator] = result["run_id"]
            assert result["twin"] == "onnx", (estimator, result["twin"])
            ok("propose", result["run_id"])
            gated = mlops("gate", "--json", str(tmp_path / f"{estimator}.json"), repo=repo,
                          env=env)
            assert gated.returncode in (0, 1), gated.stderr
            verdict = json.loads((tmp_path / f"{estimator}.json").read_text())
            assert verdict["candidate_run_id"] == result["run_id"]
            assert verdict["passed"] is (gated.returncode == 0)

        before = runs()
        refused = mlops("train", "--estimator", "my_models:log_price_with_a_shell", repo=repo,
                        env=env)
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr.count("\n") == 1, refused.stderr  # one line
        assert "posix.system (a callable not on the callables list, os.system)" in \
            refused.stderr
        assert sorted(runs()) == sorted(before), "a refused estimator leaves no run"

        ok("propose", trained["xgboost"])
        ok("gate", "--json", str(tmp_path / "promote.json"))
        ok("promote", "--verdict", str(tmp_path / "promote.json"),
           extra={"MLOPS_SERVING_URL": server.url})  # returns once the server serves it
        production = client.get_model_version_by_alias(model, "production")
        assert production.run_id == trained["xgboost"]
        status = requests.get(server.url + "/model", timeout=5).json()
        assert (status["version"], status["runtime"], status["twin"]) == (
            production.version, "onnx", None)
        assert status["behind_registry"] is False
        assert status["loads"]["kinds"]["xgboost"]

        rows = prepare_data(load_card(card)).x_validation.head(50)
        records = [{k: (None if v != v else v) for k, v in row.items()}
                   for row in rows.to_dict(orient="records")]
        answered = server.predict(records)
        assert answered.status_code == 200, answered.text
        served = np.asarray(answered.json()["predictions"], dtype=float)
        with using_env(tracking_server.env):
            opened = modelio.fetch(modelio_source.of_version(production), tmp_path / "own",
                                   tracking_uri=tracking_server.uri)
            own = np.asarray(opened.estimator().predict(rows), dtype=float)
        np.testing.assert_allclose(served, own, rtol=1e-3)


def test_promote_moves_the_alias_back_when_the_deployed_server_cannot_load_it(
        tracking_server: TrackingServer, tmp_path: Path) -> None:
    """A server whose LightGBM is broken (an import that fails, as on an image built
    without it) is sent a LightGBM candidate: promote waits, sees the server's reason,
    moves `production` back to the version it serves, and exits 2 with that reason."""
    repo = tmp_path / "repo"
    model = f"e2e-refused-{uuid.uuid4().hex[:8]}"
    write_card(repo, model)
    broken = tmp_path / "broken" / "lightgbm"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('lightgbm is broken on this server')\n")
    env = {**tracking_server.env, "MLOPS_EXPERIMENT": "e2e-refused"}
    client = MlflowClient(tracking_server.uri, registry_uri=tracking_server.uri)

    def ok(*args: str) -> str:
        done = mlops(*args, repo=repo, env=env)
        assert done.returncode == 0, done.stderr
        return done.stdout

    ok("train", "--estimator", "dummy", "--register", "--promote", "--json")
    server_env = {**tracking_server.env, "PYTHONPATH": str(broken.parent)}
    with serving_process(tmp_path / "serving", server_env, model) as server:
        candidate = json.loads(ok("train", "--estimator", "lightgbm", "--json"))["run_id"]
        ok("propose", candidate)
        ok("gate", "--json", str(tmp_path / "v.json"))
        promoted = mlops("promote", "--verdict", str(tmp_path / "v.json"), repo=repo,
                         env={**env, "MLOPS_SERVING_URL": server.url})
        assert promoted.returncode == 2, promoted.stderr
        line = promoted.stderr.strip().splitlines()[-1]
        assert line.startswith(f"error: the deployed server refused {model} version 2: ")
        assert "lightgbm is broken on this server" in line
        assert line.endswith("production is back on version 1")

        assert client.get_model_version_by_alias(model, "production").version == "1"
        assert "previous-production" not in client.get_registered_model(model).aliases
        back = client.get_model_version(model, "1").tags
        assert back["rolled_back_from"] == "2"
        status = requests.get(server.url + "/model", timeout=5).json()
        assert status["version"] == "1"
        assert requests.get(server.url + "/ready", timeout=5).status_code == 200
        wait_for(lambda: requests.get(server.url + "/model", timeout=5).json()[
            "behind_registry"] is False, what="the server in step with the registry again")
