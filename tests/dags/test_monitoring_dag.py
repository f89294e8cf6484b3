"""The loop as GitOps, end to end: served traffic drifts, the monitoring DAG sees it and
asks for retraining, the training DAG registers a candidate (never Production) and opens
the pull request that names it in the card, on the fake GitHub. Unshifted traffic
triggers nothing.

Run with .venv-airflow's pytest (`make dags-test`), on each backend.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from pipeline.gitops import registry
from pipeline.gitops.card import load_card, prepare_data
from serving.prediction_log import ModelInfo, PredictionLog
from tests.conftest import TrackingServer
from tests.dags.conftest import load_dag, main_venv_bin
from tests.utils import REPO
from tests.utils.cards import unique_name, write_card
from tests.utils.fake_github import TOKEN, FakeGitHub, github

__all__ = ["github"]  # the fixture

pytestmark = pytest.mark.integration

TODAY = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
ROWS = 600


@dataclass(frozen=True)
class Production:
    card: Path
    name: str
    run_id: str
    env: dict[str, str]


@pytest.fixture(scope="module")
def production(tracking_server: TrackingServer, airflow_home: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Production:
    """A Production version trained by `mlops train` (which stores its reference)."""
    home = tmp_path_factory.mktemp("monitoring")
    name = unique_name("dag-monitor")
    card = write_card(home, name)
    env = {**tracking_server.env, "MLOPS_EXPERIMENT": f"dags-monitor-{uuid.uuid4().hex[:8]}"}
    done = subprocess.run([main_venv_bin("mlops"), "train", "--estimator",
                           "hist_gradient_boosting", "--param", "max_iter=30", "--register",
                           "--promote", "--json", "--card", str(card)],
                          env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return Production(card=card, name=name, run_id=json.loads(done.stdout)["run_id"], env=env)


@pytest.fixture
def tasks_env(production: Production, monkeypatch: pytest.MonkeyPatch) -> Production:
    """The tasks run in this process: point it at the test's tracking server."""
    for key, value in production.env.items():
        monkeypatch.setenv(key, value)
    return production


def _log_traffic(production: Production, folder: Path, *, carat: float) -> None:
    """ROWS validation rows through the prediction log's API, as the server sends them."""
    data = prepare_data(load_card(production.card))
    rows = data.x_validation.sample(ROWS, random_state=3).reset_index(drop=True)
    rows["carat"] = rows["carat"] * carat
    model = mlflow.sklearn.load_model(f"models:/{production.name}@production")
    info = ModelInfo(name=production.name, version="1", run_id=production.run_id,
                     runtime="sklearn")
    with PredictionLog(str(folder)) as log:
        for start in range(0, ROWS, 20):
            part = rows.iloc[start:start + 20]
            log.record(info, f"req-{start}", part.to_dict("records"), model.predict(part))


def _monitoring_conf(production: Production, log: Path, out: Path) -> dict[str, Any]:
    return {"card": str(production.card), "log": str(log), "window_hours": 48,
            "monitor_dir": str(out), "estimator": "hist_gradient_boosting",
            "params": {"max_iter": 20}}


def test_unshifted_traffic_triggers_nothing(tasks_env: Production, tmp_path: Path) -> None:
    production = tasks_env
    _log_traffic(production, tmp_path / "log", carat=1.0)
    run = load_dag("monitoring_dag", "monitoring_dag").test(
        logical_date=TODAY, run_conf=_monitoring_conf(production, tmp_path / "log",
                                                      tmp_path / "out"))
    assert str(run.state) == "success"
    summary = run.get_task_instance("monitor").xcom_pull(task_ids="monitor")
    assert summary["drift"] is False
    assert summary["rows"] == ROWS
    assert run.get_task_instance("retrain").state == "skipped"
    (folder,) = (tmp_path / "out").iterdir()
    assert {p.name for p in folder.iterdir()} == {"summary.json", "report.html", "monitor.prom"}


def test_drift_retrains_and_the_candidate_comes_back_as_a_pull_request(
        tasks_env: Production, github: FakeGitHub, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, tracking_server: TrackingServer) -> None:
    production = tasks_env
    _log_traffic(production, tmp_path / "log", carat=1.8)
    monitoring = load_dag("monitoring_dag", "monitoring_dag").test(
        logical_date=TODAY + dt.timedelta(hours=1),
        run_conf=_monitoring_conf(production, tmp_path / "log", tmp_path / "out"))
    assert str(monitoring.state) == "success"
    summary = monitoring.get_task_instance("monitor").xcom_pull(task_ids="monitor")
    assert summary["drift"] is True
    assert "carat" in {f["name"] for f in summary["features"] if f["drifted"]}
    assert monitoring.get_task_instance("retrain").state == "success"
    from airflow.models.dagrun import DagRun

    asked = [r for r in DagRun.find(dag_id="mlops_training")
             if (r.conf or {}).get("monitor_summary") == summary]
    assert len(asked) == 1, "one retraining asked for, with the summary as its reason"
    conf = dict(asked[0].conf)
    assert conf["open_pull_request"] is True
    assert conf["params"] == {"max_iter": 20}

    # What the scheduler would run next: the triggered training, with its conf.
    github.seed("model_card.yaml", (REPO / "model_card.yaml").read_text())
    for key, value in {"GITHUB_REPOSITORY": "o/r", "GITHUB_API_URL": github.url,
                       "AIRFLOW_VAR_MLOPS_GITHUB_TOKEN": TOKEN}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    training = load_dag("training_dag", "training_dag").test(
        logical_date=TODAY + dt.timedelta(hours=2), run_conf={
            **conf, "work_root": str(tmp_path / "work"), "engine": "local"})
    assert str(training.state) == "success"
    client = MlflowClient(tracking_server.uri)
    versions = client.search_model_versions(f"name='{production.name}'")
    candidate = next(v for v in versions if str(v.version) == "2")
    assert registry.production_version(client, production.name).version == "1", \
        "the retrained version is a candidate, never Production"
    pulled = training.get_task_instance("open_pull_request").xcom_pull(
        task_ids="open_pull_request")
    assert pulled["created"] is True
    (pull,) = github.pulls
    assert pull["head"]["ref"] == f"mlops/retrain-{candidate.run_id}" == pulled["branch"]
    card_text = github.files[(pull["head"]["ref"], "model_card.yaml")]
    assert f"candidate_run_id: {candidate.run_id}" in card_text
    assert github.commits[0]["committer"]["name"] == "mlops-retrain[bot]"
    assert "| carat | **yes** |" in pull["body"]
    assert summary["verdict"].split(";")[0] in pull["body"]
