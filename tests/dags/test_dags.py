"""Both DAGs through `dag.test()` against a real MLflow server and the real serving API.

Run with .venv-airflow's pytest (`make dags-test`). The training DAG must log a run
with a model and register it without making it Production; the inference DAG must
write one score per input row equal to what the serving API answers for the same
rows, replace its output when a date is re-run, and fail clearly when the API is down.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests
from mlflow.tracking import MlflowClient

from pipeline.gitops import registry
from pipeline.gitops.card import load_card
from pipeline.stages.datasets import load_spec
from pipeline.stages.score_batch import dated_output
from tests.conftest import TrackingServer
from tests.dags.conftest import (
    DAGS,
    EmrServerless,
    ServingApi,
    load_dag,
    main_venv_bin,
    start_serving,
)
from tests.utils import REPO, free_port
from tests.utils.cards import unique_name, write_card
from tests.utils.registry import move_production

pytestmark = pytest.mark.integration

DATE = dt.datetime(2026, 11, 27, tzinfo=dt.UTC)
BATCH_ROWS = 150
FEATURES = load_spec("diamonds").feature_names


@dataclass(frozen=True)
class Trained:
    state: str
    model_name: str
    card: Path
    work_root: Path
    xcom_run_id: Any


@pytest.fixture(scope="module")
def dags_env(tracking_server: TrackingServer, airflow_home: Path) -> Iterator[dict[str, str]]:
    """The tasks run in this process: point it at the test's tracking server."""
    env = {**tracking_server.env, "MLOPS_EXPERIMENT": f"dags-{uuid.uuid4().hex[:8]}"}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        yield env


@pytest.fixture(scope="module")
def card(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository's card under a model name of its own."""
    return write_card(tmp_path_factory.mktemp("card"), unique_name("dag-diamonds"))


def _model_name(card: Path) -> str:
    return load_card(card).model.name


@pytest.fixture(scope="module")
def trained(dags_env: dict[str, str], card: Path,
            tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """One run of the training DAG with a small, quick hyperparameter setting."""
    dag = load_dag("training_dag", "training_dag")
    work_root = tmp_path_factory.mktemp("work")
    run = dag.test(logical_date=DATE, run_conf={
        "card": str(card), "estimator": "hist_gradient_boosting",
        "params": {"max_iter": 30}, "work_root": str(work_root),
        "engine": "local"})  # dag.test keeps a param an earlier run of the DAG set
    train_ti = run.get_task_instance("train")
    return Trained(state=str(run.state), model_name=_model_name(card), card=card,
                   work_root=work_root,
                   xcom_run_id=train_ti.xcom_pull(task_ids="train") if train_ti else None)


@pytest.fixture(scope="module")
def serving(trained: Trained, tracking_server: TrackingServer,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServingApi]:
    """Production bootstrapped with the DAG's version, then the real serving API on it."""
    client = registry.client(tracking_server.uri)
    version = registry.find_version_of_run(
        client, trained.model_name, _registered(tracking_server, trained).run_id)
    assert version is not None
    move_production(client, trained.model_name, version.version, tracking_uri=tracking_server.uri)
    api = start_serving(home=tmp_path_factory.mktemp("serving"), env=tracking_server.env,
                        model_name=trained.model_name)
    try:
        yield api
    finally:
        api.process.stop()


def _registered(server: TrackingServer, trained: Trained) -> Any:
    versions = MlflowClient(server.uri).search_model_versions(f"name='{trained.model_name}'")
    assert len(versions) == 1, f"expected one registered version, found {len(versions)}"
    return versions[0]


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """A batch of raw rows as a data scientist would drop it: an id, features, extra columns."""
    load_builtin = load_spec("diamonds").load_builtin
    assert load_builtin is not None
    frame = load_builtin().iloc[:BATCH_ROWS].copy()
    frame.insert(0, "id", [f"stone-{i:04d}" for i in range(len(frame))])
    path = tmp_path_factory.mktemp("batch") / "batch.csv"
    frame.to_csv(path, index=False)
    return path, frame


def _inference_conf(*, batch: Path, out: Path, url: str, card: Path,
                    **extra: Any) -> dict[str, Any]:
    return {"input": str(batch), "output_dir": str(out), "serving_url": url, "card": str(card),
            "chunk_size": 40, "attempts": 3, "backoff_seconds": 0.2, "timeout_seconds": 10,
            "engine": "api", **extra}  # every param given: dag.test keeps the last run's


# --- the DAG files ---------------------------------------------------------------------------


def test_the_dag_files_parse_as_the_scheduler_sees_them(airflow_home: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == {"mlops_training", "mlops_inference", "mlops_monitoring"}
    inference = bag.dags["mlops_inference"]
    assert {t.task_id: t.upstream_task_ids for t in inference.tasks} == {
        "choose_engine": set(), "score": {"choose_engine"},
        "emr_job_driver": {"choose_engine"}, "emr_score": {"emr_job_driver"}}
    training = bag.dags["mlops_training"]
    order = ["prepare", "features", "train", "evaluate", "register"]
    assert {t.task_id for t in training.tasks} == {*order, "cleanup", "choose_engine",
                                                    "emr_train_driver", "emr_train",
                                                    "wants_pull_request", "open_pull_request"}
    assert training.task_dict["open_pull_request"].upstream_task_ids == {
        "wants_pull_request", "register"}
    assert training.task_dict["prepare"].upstream_task_ids == {"choose_engine"}
    assert training.task_dict["emr_train"].upstream_task_ids == {"emr_train_driver"}
    assert "prepare" in training.task_dict["features"].upstream_task_ids
    assert {"prepare", "features"} <= training.task_dict["train"].upstream_task_ids
    assert training.task_dict["evaluate"].upstream_task_ids == {"prepare", "train"}
    assert training.task_dict["register"].upstream_task_ids == {"evaluate"}
    assert set(training.params) == {"card", "estimator", "params", "work_root", "engine",
                                    "emr_application_id", "emr_train_job_role_arn",
                                    "emr_train_login_secret_arn", "emr_entry_point",
                                    "emr_spark_parameters", "emr_card",
                                    "open_pull_request", "monitor_summary"}
    monitoring = bag.dags["mlops_monitoring"]
    assert {t.task_id: t.upstream_task_ids for t in monitoring.tasks} == {
        "monitor": set(), "alarmed": {"monitor"}, "retrain": {"alarmed", "monitor"}}


# --- training ------------------------------------------------------------------------------


def test_training_dag_logs_a_run_with_a_model_and_registers_it_without_promoting(
        trained: Trained, tracking_server: TrackingServer) -> None:
    assert trained.state == "success"
    version = _registered(tracking_server, trained)
    assert trained.xcom_run_id == version.run_id, "train must hand its run ID on by XCom"
    client = MlflowClient(tracking_server.uri)
    run = client.get_run(version.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["estimator"] == "hist_gradient_boosting"
    assert run.data.params["estimator.max_iter"] == "30"
    assert set(run.data.metrics) >= {"val_rmse", "val_mae", "val_r2"}
    assert not set(run.data.metrics) & {"rmse", "mae", "r2"}, "test-set names are the gate's"
    assert registry.logged_model_id(client, version.run_id)
    assert version.tags.get("registered_by", "").startswith("airflow mlops_training ")
    assert registry.production_version(client, trained.model_name) is None
    assert list(trained.work_root.iterdir()) == [], "the work dir of the run is removed"


def test_training_dag_on_emr_serverless_submits_mlops_train_where_the_data_is(
        tracking_server: TrackingServer, emr_serverless: EmrServerless, tmp_path: Path,
        airflow_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """engine=emr-serverless: EMR gets `mlops train --register` with the run's estimator
    and parameters under the training job role, and no stage runs in the worker; run here
    as EMR runs it, it logs and registers a version tagged with the DAG run, not Production."""
    for key, value in {**tracking_server.env, **emr_serverless.connection_env}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MLOPS_EXPERIMENT", f"dags-emr-{uuid.uuid4().hex[:8]}")
    card = write_card(tmp_path, unique_name("dag-emr-train"))  # a model of its own
    role = "arn:aws:iam::123456789012:role/mlops-train-job"
    entry = "s3://mlops-dags/dags/emr/mlops_entry.py"
    archives = "--conf spark.archives=s3://mlops-dags/emr/mlops-venv.tar.gz#environment"
    work_root = tmp_path / "work"
    submitted_before = len(_job_runs(emr_serverless))
    run = load_dag("training_dag", "training_dag").test(
        logical_date=DATE + dt.timedelta(days=1), run_conf={
            "card": str(card), "estimator": "hist_gradient_boosting",
            "params": {"max_iter": 20, "learning_rate": 0.2}, "work_root": str(work_root),
            "engine": "emr-serverless", "emr_application_id": emr_serverless.application_id,
            "emr_train_job_role_arn": role, "emr_train_login_secret_arn": "",
            "emr_entry_point": entry, "emr_spark_parameters": archives, "emr_card": str(card)})
    assert str(run.state) == "success"
    assert run.get_task_instance("prepare").state == "skipped"
    assert not work_root.exists() or not any(work_root.iterdir())

    assert len(_job_runs(emr_serverless)) == submitted_before + 1, "the run submits one job"
    arguments = _submitted(emr_serverless, run, "emr_train", role=role, entry=entry,
                           spark_parameters=archives, tracking_uri=tracking_server.uri)
    assert arguments[:3] == ["train", "--estimator", "hist_gradient_boosting"]
    registered_by = arguments[arguments.index("--registered-by") + 1]
    assert registered_by == f"airflow mlops_training {run.run_id}"

    # What EMR runs, run here: the entry point with the submitted arguments.
    done = subprocess.run([main_venv_bin("python"), str(DAGS / "emr" / "mlops_entry.py"),
                           *arguments], env=dict(os.environ), capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    client = MlflowClient(tracking_server.uri)
    (version,) = client.search_model_versions(f"name='{_model_name(card)}'")
    assert (str(version.version), version.run_id) == (str(summary["version"]), summary["run_id"])
    assert version.tags["registered_by"] == registered_by
    logged = client.get_run(version.run_id).data
    assert (logged.params["estimator.max_iter"], logged.params["estimator.learning_rate"]) == (
        "20", "0.2")
    assert set(logged.metrics) >= {"val_rmse", "val_r2"}
    assert not set(logged.metrics) & {"rmse", "mae", "r2"}, "test-set names are the gate's"
    assert registry.production_version(client, _model_name(card)) is None


def test_training_dag_names_a_missing_emr_setting(
        trained: Trained, tmp_path: Path, airflow_home: Path,
        capfd: pytest.CaptureFixture[str]) -> None:
    run = load_dag("training_dag", "training_dag").test(
        logical_date=DATE + dt.timedelta(days=2), run_conf={
            "card": str(trained.card), "estimator": "hist_gradient_boosting", "params": {},
            "work_root": str(tmp_path), "engine": "emr-serverless",
            "emr_application_id": "app", "emr_train_job_role_arn": "",
            "emr_entry_point": "s3://b/e.py", "emr_spark_parameters": "",
            "emr_card": "model_card.yaml"})
    assert str(run.state) == "failed"
    assert ("param emr_train_job_role_arn is empty (set it, or "
            "AIRFLOW__MLOPS__EMR_TRAIN_JOB_ROLE_ARN") in "".join(capfd.readouterr())


# --- inference -----------------------------------------------------------------------------


def test_inference_dag_writes_one_score_per_row_equal_to_the_apis_predict(
        serving: ServingApi, trained: Trained, batch: tuple[Path, pd.DataFrame],
        tmp_path: Path, airflow_home: Path) -> None:
    path, frame = batch
    dag = load_dag("inference_dag", "inference_dag")
    run = dag.test(logical_date=DATE, run_conf=_inference_conf(
        batch=path, out=tmp_path, url=serving.url, card=trained.card))
    assert str(run.state) == "success"

    scores = pd.read_parquet(dated_output(str(tmp_path), DATE))
    assert len(scores) == BATCH_ROWS
    assert scores["id"].tolist() == frame["id"].tolist()

    records = json.loads(frame[FEATURES].to_json(orient="records"))
    direct = requests.post(f"{serving.url}/predict", json={"records": records}, timeout=60)
    assert direct.status_code == 200
    body = direct.json()
    assert scores["prediction"].tolist() == pytest.approx(body["predictions"], rel=1e-12)
    assert set(scores["model_version"]) == {str(body["model"]["version"])}
    assert set(scores["model_run_id"]) == {body["model"]["run_id"]}
    assert set(scores["model_name"]) == {trained.model_name}


@pytest.mark.spark
def test_inference_dag_on_spark_scores_like_the_api(
        serving: ServingApi, trained: Trained, batch: tuple[Path, pd.DataFrame],
        tracking_server: TrackingServer, tmp_path: Path, airflow_home: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """engine=spark: the task fetches and verifies the model itself, scores on local Spark."""
    path, frame = batch
    for key, value in tracking_server.env.items():
        monkeypatch.setenv(key, value)
    dag = load_dag("inference_dag", "inference_dag")
    day = DATE + dt.timedelta(days=7)  # a run of its own: dag.test reuses a date's run
    run = dag.test(logical_date=day, run_conf=_inference_conf(
        batch=path, out=tmp_path, url=serving.url, card=trained.card, engine="spark",
        spark_master="local[2]"))
    assert str(run.state) == "success"

    folder = Path(dated_output(str(tmp_path), day))
    assert (folder / "_SUCCESS").exists()
    scores = pd.read_parquet(folder).sort_values("id").reset_index(drop=True)
    assert scores["id"].tolist() == sorted(frame["id"].tolist())
    records = json.loads(frame.sort_values("id")[FEATURES].to_json(orient="records"))
    direct = requests.post(f"{serving.url}/predict", json={"records": records}, timeout=60)
    assert direct.status_code == 200
    # Spark's executors and the server both score with the verified compiled twin.
    assert scores["prediction"].tolist() == direct.json()["predictions"]
    assert set(scores["model_name"]) == {trained.model_name}


@pytest.mark.spark
def test_inference_dag_on_emr_serverless_submits_the_spark_command_for_production(
        serving: ServingApi, trained: Trained, batch: tuple[Path, pd.DataFrame],
        tracking_server: TrackingServer, emr_serverless: EmrServerless, tmp_path: Path,
        airflow_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """engine=emr-serverless: EMR gets `mlops score --engine spark` with Production's
    version pinned, under the job role; run here as EMR runs it, it scores like the API."""
    path, frame = batch
    for key, value in {**tracking_server.env, **emr_serverless.connection_env}.items():
        monkeypatch.setenv(key, value)
    role = "arn:aws:iam::123456789012:role/mlops-spark-job"
    entry = "s3://mlops-dags/dags/emr/mlops_entry.py"
    archives = "--conf spark.archives=s3://mlops-dags/emr/mlops-venv.tar.gz#environment"
    day = DATE + dt.timedelta(days=14)
    submitted_before = len(_job_runs(emr_serverless))  # one moto server per session
    dag = load_dag("inference_dag", "inference_dag")
    run = dag.test(logical_date=day, run_conf=_inference_conf(
        batch=path, out=tmp_path, url=serving.url, card=trained.card, engine="emr-serverless",
        emr_application_id=emr_serverless.application_id, emr_job_role_arn=role,
        emr_login_secret_arn="", emr_entry_point=entry, emr_spark_parameters=archives,
        emr_card=str(trained.card)))
    assert str(run.state) == "success"

    assert len(_job_runs(emr_serverless)) == submitted_before + 1, "the run submits one job"
    arguments = _submitted(emr_serverless, run, "emr_score", role=role, entry=entry,
                           spark_parameters=archives, tracking_uri=tracking_server.uri)
    production = registry.production_version(registry.client(tracking_server.uri),
                                             trained.model_name)
    assert production is not None
    assert arguments[:4] == ["score", str(path), dated_output(str(tmp_path), day), "--engine"]
    assert arguments[arguments.index("--model-uri") + 1] == (
        f"models:/{trained.model_name}/{production.version}")
    assert arguments[arguments.index("--spark-master") + 1] == "submit", \
        "on EMR the master is the one spark-submit set, not local mode"

    # What EMR runs, run here: the entry point with the submitted arguments, local Spark
    # (the last --spark-master wins).
    python = main_venv_bin("python")
    done = subprocess.run([python, str(DAGS / "emr" / "mlops_entry.py"), *arguments,
                           "--spark-master", "local[2]"],
                          env={**os.environ, "PYSPARK_PYTHON": python}, capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["rows"] == BATCH_ROWS
    scores = pd.read_parquet(dated_output(str(tmp_path), day)).sort_values("id")
    records = json.loads(frame.sort_values("id")[FEATURES].to_json(orient="records"))
    direct = requests.post(f"{serving.url}/predict", json={"records": records}, timeout=60)
    # Spark's executors and the server both score with the verified compiled twin.
    assert scores["prediction"].tolist() == direct.json()["predictions"]
    assert set(scores["model_version"]) == {str(production.version)}


def _submitted(emr: EmrServerless, run: Any, task_id: str, *, role: str, entry: str,
               spark_parameters: str, tracking_uri: str, login: str | None = None) -> list[str]:
    """The job `task_id` started: checked for its role, entry point, Spark settings and the
    entry point's own options (the tracking server, the login secret's ARN if any); its
    `mlops` command line returned."""
    arguments = submitted_arguments(emr, run, task_id, role=role, entry=entry,
                                    spark_parameters=spark_parameters)
    options = ["--tracking-uri", tracking_uri, *(["--tracking-login", login] if login else [])]
    assert arguments[:len(options)] == options
    return arguments[len(options):]


def submitted_arguments(emr: EmrServerless, run: Any, task_id: str, *, role: str, entry: str,
                        spark_parameters: str) -> list[str]:
    """The entry point's arguments of the job `task_id` started, checked for its role,
    entry point and Spark settings."""
    job_id = run.get_task_instance(task_id).xcom_pull(task_ids=task_id)
    job = emr.client.get_job_run(applicationId=emr.application_id, jobRunId=job_id)["jobRun"]
    assert job["executionRole"] == role
    submit = job["jobDriver"]["sparkSubmit"]
    assert (submit["entryPoint"], submit.get("sparkSubmitParameters", "")) == (
        entry, spark_parameters)
    arguments: list[str] = submit["entryPointArguments"]
    return arguments


def _job_runs(emr: EmrServerless) -> list[dict[str, Any]]:
    """The application's job runs (moto answers "does not exist" while it has none)."""
    try:
        runs: list[dict[str, Any]] = emr.client.list_job_runs(
            applicationId=emr.application_id)["jobRuns"]
    except emr.client.exceptions.ResourceNotFoundException:
        return []
    return runs


def test_inference_dag_names_a_missing_emr_setting(
        trained: Trained, batch: tuple[Path, pd.DataFrame], tmp_path: Path,
        airflow_home: Path, capfd: pytest.CaptureFixture[str]) -> None:
    path, _ = batch
    dag = load_dag("inference_dag", "inference_dag")
    run = dag.test(logical_date=DATE + dt.timedelta(days=21), run_conf=_inference_conf(
        batch=path, out=tmp_path, url="http://127.0.0.1:9", card=trained.card,
        engine="emr-serverless", emr_application_id="", emr_job_role_arn="",
        emr_entry_point="", emr_spark_parameters="", emr_card="model_card.yaml"))
    assert str(run.state) == "failed"
    assert "param emr_application_id is empty" in "".join(capfd.readouterr())
    assert not any(tmp_path.iterdir())


def test_rerunning_a_logical_date_replaces_its_scores(
        serving: ServingApi, trained: Trained, batch: tuple[Path, pd.DataFrame],
        tmp_path: Path, airflow_home: Path) -> None:
    path, _ = batch
    dag = load_dag("inference_dag", "inference_dag")
    conf = _inference_conf(batch=path, out=tmp_path, url=serving.url, card=trained.card)
    for _ in range(2):
        assert str(dag.test(logical_date=DATE, run_conf=conf).state) == "success"
    other_day = DATE + dt.timedelta(days=1)
    assert str(dag.test(logical_date=other_day, run_conf=conf).state) == "success"

    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert files == [f"logical_date={day}/scores/{name}"
                     for day in ("20261127T000000Z", "20261128T000000Z")
                     for name in ("_SUCCESS", "part-00000.parquet")]
    assert len(pd.read_parquet(dated_output(str(tmp_path), DATE))) == BATCH_ROWS


def test_inference_dag_fails_clearly_when_the_api_is_down(
        trained: Trained, batch: tuple[Path, pd.DataFrame], tmp_path: Path,
        airflow_home: Path, capfd: pytest.CaptureFixture[str]) -> None:
    path, _ = batch
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens here
    dag = load_dag("inference_dag", "inference_dag")
    run = dag.test(logical_date=DATE, run_conf=_inference_conf(
        batch=path, out=tmp_path / "out", url=url, card=trained.card))

    assert str(run.state) == "failed"
    assert str(run.get_task_instance("score").state) == "failed"
    output = "".join(capfd.readouterr())
    assert f"serving API at {url}/ready is not ready after 3 attempt(s): connection refused" \
        in output
    assert not (tmp_path / "out").exists(), "a failed run writes nothing"
