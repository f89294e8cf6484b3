"""Batch inference on a schedule: score a batch through the serving API, or on Spark.

One task calls `pipeline.jobs.scoring.score`, the function `mlops score` calls. With
`engine: api` (the default) it waits for the serving API's `GET /ready`, reads the batch
(CSV or Parquet, local or s3://) in bounded batches, posts each to `POST /predict` in
chunks with timeouts and retries (`pipeline.serving_client`), and writes every input row
with its prediction (and, for a classifier, its class probabilities as
`probability_<label>` columns, as every engine writes them) and the model version that
produced it. The serving API always answers with the registry's Production model, so
the api engine needs no MLflow access of its own.

With `engine: spark` the task fetches the Production model from the registry itself
(the read-only user is enough), verifies it like the server does, and scores the batch
with Spark (`local[*]` by default, `spark_master` for a cluster). Either way the output
is a folder of Parquet parts per logical date, published only when complete; re-running
a date replaces it.

With `engine: emr-serverless` (the cloud) a task pins Production's version now, and the
Amazon provider's operator submits `mlops score --engine spark` with it to the stack's
EMR Serverless application under the job role, and waits for the job: the same command
and checks, where the data is.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import mlflow
from _defaults import (
    BATCH_INPUT,
    CARD,
    EMR_JOB_ROLE_ARN,
    EMR_LOGIN_SECRET_ARN,
    INFERENCE_SCHEDULE,
    SCORES_DIR,
    SERVING_URL,
    SPARK_MASTER,
)
from _emr import emr_params, job_driver, submit_job
from _tracking_login import use_tracking_login
from airflow.sdk import Param, dag, get_current_context, task

from pipeline.gitops import registry
from pipeline.gitops.card import load_card
from pipeline.jobs import emr, scoring
from pipeline.jobs.scoring import (
    production_model_uri,
    spark_job_arguments,
    spark_python,
)
from pipeline.serving_client import RetryPolicy
from pipeline.settings import load_settings
from pipeline.stages.score_batch import dated_output

EMR_SETTINGS = {"emr_application_id": "EMR_APPLICATION_ID",
                "emr_job_role_arn": "EMR_JOB_ROLE_ARN", "emr_entry_point": "EMR_ENTRY_POINT"}
"""The emr-serverless engine's params that must not be empty, and their Airflow settings."""


@dag(
    dag_id="mlops_inference",
    schedule=INFERENCE_SCHEDULE,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    tags=["mlops", "inference"],
    default_args={"pre_execute": use_tracking_login},  # Airflow's own MLflow login
    params={
        "input": Param(BATCH_INPUT, type="string",
                       description="the batch: a CSV/Parquet path or an s3:// URI"),
        "output_dir": Param(SCORES_DIR, type="string",
                            description="folder or s3:// prefix; a folder of parts per "
                                        "logical date"),
        "serving_url": Param(SERVING_URL, type="string", description="the serving API"),
        "card": Param(CARD, type="string",
                      description="model_card.yaml: its dataset names the feature columns"),
        "chunk_size": Param(500, type="integer", minimum=1, maximum=10_000),
        "timeout_seconds": Param(30.0, type="number", exclusiveMinimum=0),
        "attempts": Param(4, type="integer", minimum=1, maximum=20),
        "backoff_seconds": Param(1.0, type="number", minimum=0),
        "engine": Param("api", type="string", enum=["api", "spark", "emr-serverless"],
                        description="api: through the serving API; spark: the verified "
                                    "model on Apache Spark; emr-serverless: the same Spark "
                                    "job on the stack's EMR Serverless application"),
        "spark_master": Param(SPARK_MASTER, type="string",
                              description="spark: the master URL (local[*] on the worker)"),
        **emr_params(role_param="emr_job_role_arn", role_default=EMR_JOB_ROLE_ARN,
                     role_description="the job's role", login_param="emr_login_secret_arn",
                     login_default=EMR_LOGIN_SECRET_ARN),
    },
    doc_md=__doc__,
)
def mlops_inference() -> None:
    @task.branch
    def choose_engine() -> str:
        """emr-serverless submits a job; api and spark score in this task's worker."""
        engine = get_current_context()["params"]["engine"]
        return "emr_job_driver" if engine == "emr-serverless" else "score"

    # No Airflow-level retries: the client already retries each call with backoff,
    # and retrying the whole task would multiply those waits.
    @task(retries=0)
    def score() -> dict[str, Any]:
        context = get_current_context()
        params = context["params"]
        dag_run = context["dag_run"]
        logical_date = context.get("logical_date") or dag_run.run_after
        card = load_card(Path(params["card"]))
        settings = load_settings()
        if params["engine"] == "spark":
            # The task's edge: MLflow and Spark's workers pointed at this environment.
            mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
            os.environ.update(spark_python())
        retry = RetryPolicy(attempts=params["attempts"], backoff_seconds=params["backoff_seconds"],
                            timeout_seconds=params["timeout_seconds"])
        result = scoring.score(engine=params["engine"], source=params["input"],
                               output=dated_output(params["output_dir"], logical_date),
                               card=card, tracking_uri=settings.mlflow_tracking_uri,
                               serving_url=params["serving_url"], retry=retry,
                               chunk_rows=params["chunk_size"],
                               spark_master=params["spark_master"])
        return result.as_dict()

    @task(retries=0)
    def emr_job_driver() -> dict[str, object]:
        """Pin Production's version now and build the job: what runs is what was gated."""
        context = get_current_context()
        params = context["params"]
        logical_date = context.get("logical_date") or context["dag_run"].run_after
        emr.require_params(params, EMR_SETTINGS)
        settings = load_settings()
        card = load_card(Path(params["card"]))
        model_uri = production_model_uri(registry.client(settings.mlflow_tracking_uri),
                                         card.model.name)
        arguments = spark_job_arguments(source=params["input"], model_uri=model_uri,
                                        output=dated_output(params["output_dir"], logical_date),
                                        card=params["emr_card"])
        return job_driver(params, arguments=arguments, login_param="emr_login_secret_arn")

    driver = emr_job_driver()
    submit_job(task_id="emr_score", role_param="emr_job_role_arn", driver=driver,
               name="mlops-score")
    choose_engine() >> [score(), driver]


inference_dag = mlops_inference()
