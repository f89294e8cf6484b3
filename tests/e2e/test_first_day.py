"""A data scientist's first day on a fork: new regression data through the whole loop,
with no edit of the card but the candidate.

The fork starts with the demo's card (`diamond-price`, RMSE, `r2: 0.90`). A CSV of a
dataset that scikit-learn ships (diabetes: 442 patients, ten measurements, disease
progression a year later) goes through `mlops data init`, which writes the schema and a
whole card for it. Then, as the README says: `card check`, bootstrap a dummy
Production, train the default, propose it (the one edit of the card), gate (pass),
promote, and `mlops serve --background` answers with the promoted version.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import requests
from mlflow.tracking import MlflowClient
from sklearn.datasets import load_diabetes

from pipeline.gitops.card import demo_leftovers, load_card, placeholders
from pipeline.serving_client import ServingClient
from tests.conftest import TrackingServer
from tests.e2e.test_gate_loop import git
from tests.utils import REPO, free_port, run_mlops

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

@pytest.fixture(scope="module")
def tracking_server(first_backend_server: TrackingServer) -> TrackingServer:
    """One backend: nothing here depends on the registry's database (tests/conftest.py)."""
    return first_backend_server



def test_new_regression_data_through_the_loop_with_only_the_candidate_edited(
        tracking_server: TrackingServer, tmp_path: Path) -> None:
    repo = tmp_path / "fork"
    repo.mkdir()
    (repo / "model_card.yaml").write_text((REPO / "model_card.yaml").read_text())  # the demo's
    source = f"diabetes_{uuid.uuid4().hex[:8]}.csv"  # its own model name on a shared server
    load_diabetes(as_frame=True, scaled=False).frame.to_csv(repo / source, index=False)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "Our data, the demo's card")
    env = {**tracking_server.env, "MLOPS_EXPERIMENT": "e2e-first-day",
           "MLOPS_HOME": str(tmp_path / "home")}
    card = repo / "model_card.yaml"

    def mlops(*args: str, code: int = 0) -> str:
        done = run_mlops(*args, env=env, cwd=repo)
        assert done.returncode == code, done.stderr
        return done.stdout

    init = json.loads(mlops("data", "init", source, "--target", "target", "--json"))
    model = source.removesuffix(".csv").replace("_", "-")
    assert (init["task"], init["card_written"], init["model_name"]) == (
        "regression", "new", model)
    assert init["notes"]["sex"].startswith("2 distinct whole numbers")  # a code, perhaps
    written = load_card(card)
    assert (written.promotion.metric, list(written.promotion.floors)) == ("rmse", ["rmse"])
    assert written.promotion.floors["rmse"] < init["floors"][0]["baseline"]
    assert demo_leftovers(written) == []
    assert "card.intended_use" in placeholders(written)
    assert "valid; model " + model in mlops("card", "check")
    after_init = card.read_text()
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "Schema and card by mlops data init")

    boot = json.loads(mlops("train", "--estimator", "dummy", "--register", "--promote",
                            "--json"))
    candidate = json.loads(mlops("train", "--json"))  # the default estimator
    assert candidate["metrics"]["val_rmse"] < boot["metrics"]["val_rmse"]
    mlops("propose", candidate["run_id"])
    changed = [(a, b) for a, b in zip(after_init.splitlines(), card.read_text().splitlines(),
                                      strict=True) if a != b]
    assert len(changed) == 1  # the one edit of the card: the candidate
    assert changed[0][1].strip().startswith(f"candidate_run_id: {candidate['run_id']}")

    verdict_path = tmp_path / "verdict.json"
    printed = mlops("gate", "--report", str(tmp_path / "report.md"), "--json",
                    str(verdict_path))
    verdict = json.loads(verdict_path.read_text())
    assert verdict["passed"] is True
    assert verdict["floors"][0]["metric"] == "rmse"
    assert printed.startswith(f"gate PASSED: {model} run {candidate['run_id']}")
    mlops("promote", "--verdict", str(verdict_path))
    client = MlflowClient(tracking_server.uri, registry_uri=tracking_server.uri)
    production = client.get_model_version_by_alias(model, "production")
    assert production.run_id == candidate["run_id"]

    port = free_port()
    served = run_mlops("serve", "--background", "--port", str(port), "--wait", "120",
                       env=env, cwd=repo)
    try:
        assert served.returncode == 0, served.stderr
        assert f"started a new serving API at http://127.0.0.1:{port}" in served.stderr
        assert f"{model} version {production.version}" in served.stderr
        record = {"age": 50.0, "sex": 2.0, "bmi": 32.0, "bp": 100.0, "s1": 200.0,
                  "s2": 120.0, "s3": 40.0, "s4": 5.0, "s5": 5.2, "s6": 95.0}
        predictions, answered_by = ServingClient(f"http://127.0.0.1:{port}").predict([record])
        assert answered_by["model_version"] == production.version
        assert 25 <= float(predictions[0]) <= 346
        assert requests.get(f"http://127.0.0.1:{port}/ready", timeout=10).status_code == 200
    finally:
        stopped = run_mlops("stack", "down", env=env, cwd=repo)
        assert "serving API stopped" in stopped.stdout, stopped.stderr
