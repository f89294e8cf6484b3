"""Your own data, classification, the whole loop, through the CLI alone and no Python.

A CSV the test writes (not a built-in dataset) -> `mlops data init` (a new card) ->
bootstrap a dummy Production -> serve it -> train the default classifier -> propose ->
gate (f1_macro primary, its floor from the dummy baseline, the ROC plot recorded on the
run) -> promote -> the running server swaps to it -> /predict and /invocations answer
with labels (and probabilities on request) -> `mlops score` through the API and in
process agree.
On both backends (the `tracking_server` fixture is parametrized over them).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
from mlflow.tracking import MlflowClient

from tests.conftest import TrackingServer
from tests.e2e.test_gate_loop import git
from tests.serving.conftest import serving_process, wait_for
from tests.utils import run_mlops
from tests.utils.cards import write_card

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LABELS = {"approved", "declined"}


def write_loans(path: Path, rows: int = 600) -> None:
    """A lending table as a user would export it: an ID, gaps, text, booleans, a label."""
    rng = np.random.default_rng(7)
    income = rng.normal(50, 15, rows).round(1)
    frame = pd.DataFrame({
        "customer_id": [f"c{i:05d}" for i in range(rows)],
        "income": income,
        "region": rng.choice(["north", "south", "east"], rows),
        "tenure": rng.integers(0, 30, rows),
        "has_card": rng.choice([True, False], rows),
        "outcome": np.where(income + rng.normal(0, 8, rows) > 50, "approved", "declined"),
    })
    frame.loc[::37, "income"] = np.nan
    frame.to_csv(path, index=False)


def test_own_csv_classification_through_the_whole_loop(tracking_server: TrackingServer,
                                                       tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    model = f"e2e-own-{uuid.uuid4().hex[:8]}"
    card = write_card(repo, model)  # the demo's card: data init writes one for the loans
    write_loans(repo / "loans.csv")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "Our loans and the card")
    env = {**tracking_server.env, "MLOPS_EXPERIMENT": "e2e-own-data"}

    def mlops(*args: str) -> str:
        done = run_mlops(*args, "--card", str(card), env=env, cwd=repo)
        assert done.returncode == 0, done.stderr
        return done.stdout

    init = json.loads(mlops("data", "init", "loans.csv", "--target", "outcome",
                            "--model-name", model, "--json"))
    assert (init["task"], init["card_written"], init["metric"]) == (
        "classification", "new", "f1_macro")
    assert "dataset: loans.schema.yaml" in card.read_text()
    git(repo, "commit", "-q", "-am", "A card for the loans (mlops data init)")

    boot = json.loads(mlops("train", "--estimator", "dummy", "--register", "--promote",
                            "--json"))
    client = MlflowClient(tracking_server.uri, registry_uri=tracking_server.uri)
    with serving_process(tmp_path / "serving", tracking_server.env, model) as server:
        candidate = json.loads(mlops("train", "--json"))["run_id"]  # the default classifier
        assert candidate != boot["run_id"]
        assert {f.path for f in client.list_artifacts(candidate, "plots")} == {
            "plots/confusion_matrix.png"}
        board = json.loads(mlops("runs", "--json"))["runs"]
        assert [r["run_id"] for r in board] == [candidate, boot["run_id"]]  # by val_f1_macro
        assert board[1]["production"] is True
        mlops("propose", candidate)
        report = tmp_path / "gate.md"
        mlops("gate", "--record", "--report", str(report), "--json", str(tmp_path / "v.json"))
        verdict = json.loads((tmp_path / "v.json").read_text())
        assert (verdict["passed"], verdict["metric"]) == (True, "f1_macro")
        assert verdict["metrics"]["f1_macro"]["candidate"] > \
            verdict["metrics"]["f1_macro"]["production"]
        assert verdict["floors"][0]["metric"] == "f1_macro"  # from the dummy baseline
        assert "roc_auc" in verdict["metrics"]
        logged = {f.path for f in client.list_artifacts(candidate, "gate")}
        assert "gate/roc.png" in logged

        mlops("promote", "--verdict", str(tmp_path / "v.json"))
        assert client.get_model_version_by_alias(model, "production").run_id == candidate
        wait_for(lambda: requests.get(server.url + "/model", timeout=5).json()
                 .get("run_id") == candidate, what="the hot swap to the candidate")

        records = [{"income": 80.0, "region": "east", "tenure": 3, "has_card": "True"},
                   {"income": 20.0, "region": "north", "tenure": 12, "has_card": "False"},
                   {"income": None, "region": "south", "tenure": 1, "has_card": "True"}]
        predicted = server.predict(records)
        assert predicted.status_code == 200, predicted.text
        labels = predicted.json()["predictions"]
        assert labels[:2] == ["approved", "declined"]
        assert set(labels) <= LABELS
        mlflow_style = requests.post(server.url + "/invocations",
                                     json={"dataframe_records": records}, timeout=30)
        assert mlflow_style.status_code == 200, mlflow_style.text
        assert mlflow_style.json()["predictions"] == labels

        asked = requests.post(server.url + "/predict", params={"probabilities": "true"},
                              json={"records": records}, timeout=30).json()
        assert asked["predictions"] == labels
        assert sorted(asked["classes"]) == sorted(LABELS)
        proba = np.asarray(asked["probabilities"])
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
        assert [asked["classes"][i] for i in proba.argmax(axis=1)] == labels

        # Batch scoring: through the API and in this process, the same labels and
        # probabilities (the server's twin is verified to 1e-6 of sklearn's).
        promoted = client.get_model_version_by_alias(model, "production").version
        scored = {}
        for engine in ("api", "local"):
            out = tmp_path / f"scores-{engine}"
            mlops("score", "loans.csv", str(out), "--engine", engine, "--url", server.url,
                  "--key", "customer_id", "--json")
            scored[engine] = pd.read_parquet(out).sort_values("customer_id", ignore_index=True)
        columns = [f"probability_{label}" for label in sorted(LABELS)]
        for frame in scored.values():
            assert list(frame.columns[:2]) == ["customer_id", "prediction"]
            assert set(columns) <= set(frame.columns)
            assert set(frame["model_version"]) == {promoted}
        assert scored["api"]["prediction"].tolist() == scored["local"]["prediction"].tolist()
        np.testing.assert_allclose(scored["api"][columns], scored["local"][columns],
                                   atol=1e-6, rtol=0)
