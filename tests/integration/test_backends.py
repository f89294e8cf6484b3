"""The same loop on both backends, checked where each backend keeps its data.

Train, register and bootstrap Production through the installed CLI, load
`models:/NAME@production` in this process, and gate the run: the gate's rows are the
sealed test set, disjoint from the rows the run was trained and validated on. The
client holds MLflow's own variables only (URI, and on mysql an MLflow user): no S3
credentials, since artifacts are proxied.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import mlflow
import numpy as np
import pymysql
import pytest

from pipeline.gitops.card import load_card, prepare_data, write_candidate_run_id
from pipeline.localstack.mysql import ARTIFACT_PREFIX, BUCKET, DATABASE, DB_USER
from pipeline.stages.data import PreparedData, row_keys, rows_hash
from tests.conftest import TrackingServer
from tests.utils import run_mlops
from tests.utils.cards import write_card

pytestmark = pytest.mark.integration

S3_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                "AWS_PROFILE", "MLFLOW_S3_ENDPOINT_URL")


def _card(tmp_path: Path, model_name: str) -> Path:
    return write_card(tmp_path, model_name)


def _registered_models(server: TrackingServer) -> set[str]:
    """Read the backend store directly, bypassing the server."""
    if server.stack is None:
        with sqlite3.connect(server.home / "mlflow.db") as db:
            return {row[0] for row in db.execute("SELECT name FROM registered_models")}
    db = pymysql.connect(host="127.0.0.1", port=server.stack.state.db_port, user=DB_USER,
                         password=server.stack.state.db_password, database=DATABASE)
    with db, db.cursor() as cursor:
        cursor.execute("SELECT name FROM registered_models")
        return {row[0] for row in cursor.fetchall()}


def _stored_model_files(server: TrackingServer) -> list[Path]:
    """MLmodel files in the backend's artifact store: the local folder or the S3 bucket."""
    root = (server.home / "artifacts" if server.stack is None
            else server.stack.s3_root / BUCKET / ARTIFACT_PREFIX)
    return sorted(root.rglob("MLmodel"))


def test_train_register_promote_and_load_production(
    tracking_server: TrackingServer, tracking_env: TrackingServer, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key in S3_VARIABLES:
        monkeypatch.delenv(key, raising=False)
    name = f"it-backend-{tracking_server.backend}"
    card_path = _card(tmp_path, name)
    done = run_mlops("train", "--estimator", "ridge", "--register", "--promote", "--json",
                     "--card", str(card_path),
                     env={**tracking_server.env, "MLOPS_EXPERIMENT": "it-backends"})
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["production"] == summary["version"] == "1"

    assert name in _registered_models(tracking_server)
    assert _stored_model_files(tracking_server), "the model is in the backend's artifact store"

    model = mlflow.pyfunc.load_model(f"models:/{name}@production")
    assert model.metadata.run_id == summary["run_id"]
    data = prepare_data(load_card(card_path))
    predictions = np.asarray(model.predict(data.x_validation.head(20)))
    assert predictions.shape == (20,)
    assert np.isfinite(predictions).all()

    _check_the_gate_scores_only_rows_the_run_never_saw(
        tracking_server, card_path, run_id=summary["run_id"], data=data, tmp_path=tmp_path)


def _check_the_gate_scores_only_rows_the_run_never_saw(
        server: TrackingServer, card_path: Path, *, run_id: str, data: PreparedData,
        tmp_path: Path) -> None:
    """The run's tags name its train and validation rows, the verdict names the gate's."""
    tags = mlflow.get_run(run_id).data.tags
    assert tags["train_rows_hash"] == rows_hash(data.train)
    assert tags["validation_rows_hash"] == rows_hash(data.validation)
    write_candidate_run_id(card_path, run_id)
    verdict_path = tmp_path / "verdict.json"
    gated = run_mlops("gate", "--json", str(verdict_path), "--card", str(card_path),
                      env=server.reader_env)
    assert gated.returncode == 0, gated.stderr
    verdict = json.loads(verdict_path.read_text())
    assert verdict["data_hashes"]["test_rows"] == rows_hash(data.test)
    assert verdict["evaluated_rows"] == len(data.test)
    seen = set(row_keys(data.train)) | set(row_keys(data.validation))
    assert not seen & set(row_keys(data.test)), "a gated row was trained or validated on"
