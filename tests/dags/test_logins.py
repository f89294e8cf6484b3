"""Each consumer reads its own MLflow login at run time, from its own secret.

On the tracking server with basic auth (the mysql backend, as in the cloud): the DAG tasks
hold no MLflow credentials in their environment, only the name of Airflow's login secret
(as MWAA's configuration gives it); the EMR jobs get the name of their own login's secret
in their parameters and read it in the job. Secrets Manager is moto's (AWS itself cannot
run here); the MLflow server, its logins and grants are real, and the jobs' command lines
run here with this environment's Python and pyspark, the ones of the jobs' image.

Each refusal is shown too: a secret with another password, and no login at all, fail
the same task that succeeds with the login (so the login is what makes it work).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests
from mlflow.tracking import MlflowClient

from pipeline.gitops import registry
from pipeline.stages.datasets import load_spec
from pipeline.stages.score_batch import dated_output
from tests.conftest import TrackingServer
from tests.dags.conftest import DAGS, EmrServerless, load_dag
from tests.dags.test_dags import submitted_arguments
from tests.utils.cards import unique_name, write_card
from tests.utils.registry import move_production

pytestmark = pytest.mark.integration

DATE = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
API = "/api/2.0/mlflow"
GRANTS = "/api/3.0/mlflow"  # MLflow 3.17's auth API, as infra/tracking_image/logins.py uses it
ROLE = "arn:aws:iam::123456789012:role/mlops-job"
ENTRY = "s3://mlops-dags/dags/emr/mlops_entry.py"
BATCH_ROWS = 60


@dataclass(frozen=True)
class Logins:
    """The logins the stack declares for orchestration, on a server of this test's own."""

    server: TrackingServer
    experiment: str
    card: Path
    model: str
    arns: dict[str, str]  # login -> its secret's ARN
    passwords: dict[str, str]

    @property
    def admin(self) -> tuple[str, str]:
        return (self.server.env["MLFLOW_TRACKING_USERNAME"],
                self.server.env["MLFLOW_TRACKING_PASSWORD"])


def _post(logins_server: TrackingServer, admin: tuple[str, str], path: str,
          body: dict[str, str], *, api: str = API) -> dict[str, Any]:
    answer = requests.post(f"{logins_server.uri}{api}/{path}", json=body, auth=admin, timeout=30)
    assert answer.status_code == 200, f"{path}: {answer.status_code} {answer.text[:200]}"
    return dict(answer.json())


@pytest.fixture(scope="module")
def logins(secured_tracking_server: TrackingServer, emr_serverless: EmrServerless,
           tmp_path_factory: pytest.TempPathFactory) -> Logins:
    """`airflow` and `emr-train` EDIT the experiment and the model, `emr-score` READs them
    (infra/tracking_image/logins.py's roles); the experiment and the model pre-created by
    the admin; each password only in its secret."""
    server = secured_tracking_server
    admin = (server.env["MLFLOW_TRACKING_USERNAME"], server.env["MLFLOW_TRACKING_PASSWORD"])
    suffix = uuid.uuid4().hex[:8]
    experiment = f"dags-logins-{suffix}"
    card = write_card(tmp_path_factory.mktemp("card"), unique_name("dag-logins"))
    model = registry_name(card)
    experiment_id = _post(server, admin, "experiments/create", {"name": experiment})[
        "experiment_id"]
    _post(server, admin, "registered-models/create", {"name": model})
    arns, passwords = {}, {}
    for login, permission in (("airflow", "EDIT"), ("emr-train", "EDIT"), ("emr-score", "READ")):
        username, password = f"{login}-{suffix}", secrets.token_urlsafe(24)
        _post(server, admin, "users/create", {"username": username, "password": password})
        for resource_type, resource in (("experiment", experiment_id),
                                        ("registered_model", model)):
            _post(server, admin, "users/permissions/grant", {
                "username": username, "resource_type": resource_type, "resource_id": resource,
                "permission": permission}, api=GRANTS)
        arns[login] = emr_serverless.put_login(f"mlops/mlflow-login-{login}-{suffix}", username,
                                               password)
        passwords[login] = password
    return Logins(server, experiment, card, model, arns, passwords)


def registry_name(card: Path) -> str:
    from pipeline.gitops.card import load_card

    return load_card(card).model.name


@pytest.fixture
def task_env(logins: Logins, emr_serverless: EmrServerless,
             monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """What MWAA's workers hold: the tracking URI and the secret's name, no credentials.
    (dag.test runs the tasks in this process: whatever they set is undone afterwards.)"""
    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", logins.server.uri)
    monkeypatch.setenv("MLOPS_EXPERIMENT", logins.experiment)
    monkeypatch.setenv("AIRFLOW__MLOPS__TRACKING_LOGIN_SECRET_ARN", logins.arns["airflow"])
    for key, value in emr_serverless.connection_env.items():
        monkeypatch.setenv(key, value)
    return monkeypatch


def _versions(logins: Logins) -> list[Any]:
    client = MlflowClient(logins.server.uri)
    with pytest.MonkeyPatch.context() as admin:
        admin.setenv("MLFLOW_TRACKING_USERNAME", logins.admin[0])
        admin.setenv("MLFLOW_TRACKING_PASSWORD", logins.admin[1])
        return list(client.search_model_versions(f"name='{logins.model}'"))


@pytest.fixture(scope="module")
def trained(logins: Logins, emr_serverless: EmrServerless, airflow_home: Path,
            tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The training DAG's local stages, logged in as `airflow` from its secret; then the
    admin makes that version Production, as promote would."""
    with pytest.MonkeyPatch.context() as patch:
        for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            patch.setenv(key, "")
            patch.delenv(key)
        for key, value in {"MLFLOW_TRACKING_URI": logins.server.uri,
                           "MLOPS_EXPERIMENT": logins.experiment,
                           "AIRFLOW__MLOPS__TRACKING_LOGIN_SECRET_ARN": logins.arns["airflow"],
                           **emr_serverless.connection_env}.items():
            patch.setenv(key, value)
        run = load_dag("training_dag", "training_dag").test(logical_date=DATE, run_conf={
            "card": str(logins.card), "estimator": "hist_gradient_boosting",
            "params": {"max_iter": 20}, "work_root": str(tmp_path_factory.mktemp("work")),
            "engine": "local"})
        registered = _versions(logins)
        if len(registered) == 1:
            patch.setenv("MLFLOW_TRACKING_USERNAME", logins.admin[0])
            patch.setenv("MLFLOW_TRACKING_PASSWORD", logins.admin[1])
            move_production(registry.client(logins.server.uri), logins.model,
                            registered[0].version, tracking_uri=logins.server.uri)
    return run, registered


def test_training_tasks_log_in_as_airflow_from_its_secret(trained: Any) -> None:
    run, registered = trained
    assert str(run.state) == "success"
    (version,) = registered
    assert version.tags["registered_by"].startswith("airflow mlops_training ")


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    load_builtin = load_spec("diamonds").load_builtin
    assert load_builtin is not None
    frame = load_builtin().iloc[:BATCH_ROWS].copy()
    frame.insert(0, "id", [f"stone-{i:04d}" for i in range(len(frame))])
    path = tmp_path_factory.mktemp("batch") / "batch.csv"
    frame.to_csv(path, index=False)
    return path


def _score_on_emr(logins: Logins, emr: EmrServerless, batch: Path, out: Path,
                  day: dt.datetime) -> Any:
    return load_dag("inference_dag", "inference_dag").test(logical_date=day, run_conf={
        "input": str(batch), "output_dir": str(out), "serving_url": "http://127.0.0.1:9",
        "card": str(logins.card), "chunk_size": 40, "attempts": 1, "backoff_seconds": 0.1,
        "timeout_seconds": 5, "engine": "emr-serverless", "spark_master": "local[2]",
        "emr_application_id": emr.application_id, "emr_job_role_arn": ROLE,
        "emr_login_secret_arn": logins.arns["emr-score"], "emr_entry_point": ENTRY,
        "emr_spark_parameters": "", "emr_card": str(logins.card)})


def _job_runs(emr: EmrServerless) -> int:
    try:
        return len(emr.client.list_job_runs(applicationId=emr.application_id)["jobRuns"])
    except emr.client.exceptions.ResourceNotFoundException:
        return 0


def _job(emr: EmrServerless, run: Any, task_id: str) -> dict[str, Any]:
    job_id = run.get_task_instance(task_id).xcom_pull(task_ids=task_id)
    return dict(emr.client.get_job_run(applicationId=emr.application_id,
                                       jobRunId=job_id)["jobRun"])


def _run_job(arguments: list[str], emr: EmrServerless,
             logins: Logins) -> subprocess.CompletedProcess[str]:
    """What EMR runs, run here: the entry point with the submitted arguments, with AWS's
    credentials (moto's) and no MLflow login in the environment; this environment's
    Python and pyspark are the jobs' image's (tests/infra/test_versions.py)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME",
                        "MLFLOW_TRACKING_PASSWORD")}
    env |= {**emr.boto_env, "PYSPARK_PYTHON": sys.executable}
    return subprocess.run([sys.executable, str(DAGS / "emr" / "mlops_entry.py"), *arguments],
                          env=env, capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.spark
def test_the_scoring_job_gets_its_login_by_name_and_reads_it_itself(
        trained: Any, logins: Logins, emr_serverless: EmrServerless, batch: Path,
        task_env: pytest.MonkeyPatch, tmp_path: Path, airflow_home: Path) -> None:
    """The driver task pins Production as `airflow`; the job's parameters name the
    `emr-score` secret, hold no password, and the job, run as submitted, logs in with it."""
    day = DATE + dt.timedelta(days=1)
    run = _score_on_emr(logins, emr_serverless, batch, tmp_path, day)
    assert str(run.state) == "success"
    job = _job(emr_serverless, run, "emr_score")
    assert not any(password in json.dumps(job, default=str)
                   for password in logins.passwords.values())
    arguments = submitted_arguments(emr_serverless, run, "emr_score", role=ROLE, entry=ENTRY,
                                    spark_parameters="")
    assert arguments[:4] == ["--tracking-uri", logins.server.uri, "--tracking-login",
                             logins.arns["emr-score"]]

    done = _run_job([*arguments, "--spark-master", "local[2]"], emr_serverless, logins)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["rows"] == BATCH_ROWS
    assert len(pd.read_parquet(dated_output(str(tmp_path), day))) == BATCH_ROWS

    # Without its login the same job is refused by the tracking server.
    bare = [a for a in arguments if a not in ("--tracking-login", logins.arns["emr-score"])]
    refused = _run_job([*bare, "--spark-master", "local[2]"], emr_serverless, logins)
    assert refused.returncode != 0


@pytest.mark.spark
@pytest.mark.parametrize("case", ["another password in the secret", "no login at all"])
def test_without_its_login_the_task_is_refused(
        case: str, trained: Any, logins: Logins, emr_serverless: EmrServerless, batch: Path,
        task_env: pytest.MonkeyPatch, tmp_path: Path, airflow_home: Path,
        capfd: pytest.CaptureFixture[str]) -> None:
    """The same task, without Airflow's own login, cannot read Production: nothing is
    submitted. (What makes it work above is the login read from the secret.)"""
    if case == "no login at all":
        task_env.delenv("AIRFLOW__MLOPS__TRACKING_LOGIN_SECRET_ARN")
    else:
        wrong = emr_serverless.put_login(f"mlops/wrong-{uuid.uuid4().hex[:8]}",
                                         f"airflow-{logins.experiment[-8:]}", "not-the-password")
        task_env.setenv("AIRFLOW__MLOPS__TRACKING_LOGIN_SECRET_ARN", wrong)
    before = _job_runs(emr_serverless)
    day = DATE + dt.timedelta(days=2 if case.startswith("another") else 3)
    run = _score_on_emr(logins, emr_serverless, batch, tmp_path, day)
    assert str(run.state) == "failed"
    assert str(run.get_task_instance("emr_job_driver").state) == "failed"
    assert _job_runs(emr_serverless) == before
    output = "".join(capfd.readouterr())
    assert "401" in output or "nauthorized" in output


def test_a_secret_that_cannot_be_read_fails_the_task_in_one_line(
        trained: Any, logins: Logins, emr_serverless: EmrServerless, batch: Path,
        task_env: pytest.MonkeyPatch, tmp_path: Path, airflow_home: Path,
        capfd: pytest.CaptureFixture[str]) -> None:
    missing = "arn:aws:secretsmanager:us-east-1:123456789012:secret:mlops/nothing-AbCdEf"
    task_env.setenv("AIRFLOW__MLOPS__TRACKING_LOGIN_SECRET_ARN", missing)
    run = _score_on_emr(logins, emr_serverless, batch, tmp_path, DATE + dt.timedelta(days=4))
    assert str(run.state) == "failed"
    assert f"{missing}: the tracking login cannot be read" in "".join(capfd.readouterr())


def test_the_training_job_gets_its_login_by_name_and_registers_with_it(
        trained: Any, logins: Logins, emr_serverless: EmrServerless,
        task_env: pytest.MonkeyPatch, tmp_path: Path, airflow_home: Path) -> None:
    run = load_dag("training_dag", "training_dag").test(
        logical_date=DATE + dt.timedelta(days=5), run_conf={
            "card": str(logins.card), "estimator": "hist_gradient_boosting",
            "params": {"max_iter": 10}, "work_root": str(tmp_path / "work"),
            "engine": "emr-serverless", "emr_application_id": emr_serverless.application_id,
            "emr_train_job_role_arn": ROLE,
            "emr_train_login_secret_arn": logins.arns["emr-train"], "emr_entry_point": ENTRY,
            "emr_spark_parameters": "", "emr_card": str(logins.card)})
    assert str(run.state) == "success"
    arguments = submitted_arguments(emr_serverless, run, "emr_train", role=ROLE, entry=ENTRY,
                                    spark_parameters="")
    assert arguments[:4] == ["--tracking-uri", logins.server.uri, "--tracking-login",
                             logins.arns["emr-train"]]
    before = _versions(logins)
    done = _run_job(arguments, emr_serverless, logins)
    assert done.returncode == 0, done.stderr[-2000:]
    after = _versions(logins)
    assert len(after) == len(before) + 1
    with pytest.MonkeyPatch.context() as admin:
        admin.setenv("MLFLOW_TRACKING_USERNAME", logins.admin[0])
        admin.setenv("MLFLOW_TRACKING_PASSWORD", logins.admin[1])
        production = registry.production_version(registry.client(logins.server.uri),
                                                 logins.model)
    assert production is not None
    assert production.version == trained[1][0].version, "a trainer never moves Production"


def test_a_login_param_that_is_not_a_secret_arn_is_refused_without_echoing_it(
        logins: Logins, emr_serverless: EmrServerless, task_env: pytest.MonkeyPatch,
        tmp_path: Path, airflow_home: Path, capfd: pytest.CaptureFixture[str]) -> None:
    pasted = "s3cr3t-password-pasted-by-mistake"
    run = load_dag("training_dag", "training_dag").test(
        logical_date=DATE + dt.timedelta(days=6), run_conf={
            "card": str(logins.card), "estimator": "hist_gradient_boosting", "params": {},
            "work_root": str(tmp_path), "engine": "emr-serverless",
            "emr_application_id": emr_serverless.application_id,
            "emr_train_job_role_arn": ROLE, "emr_train_login_secret_arn": pasted,
            "emr_entry_point": ENTRY, "emr_spark_parameters": "", "emr_card": "model_card.yaml"})
    assert str(run.state) == "failed"
    output = "".join(capfd.readouterr())
    assert "param emr_train_login_secret_arn must be a Secrets Manager ARN" in output
    assert pasted not in output
