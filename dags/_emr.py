"""The `emr-serverless` engine both DAGs share: its params, and the job it submits.

Each DAG adds the role and login params of its own job (the scoring or the training job
role, and the secret of its MLflow login: `emr-score` or `emr-train`) and a task that
builds the job driver; `submit_job` is the Amazon provider's operator that starts the job
under that role and waits for it.

The job finds the tracking server and its login through the entry point's own options
(`dags/emr/mlops_entry.py`): the tracking URI and the login secret's ARN, which the job's
role alone may read. The job's parameters, which anyone who may list job runs can read,
never carry a password.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from _defaults import (
    AWS_CONN_ID,
    EMR_APPLICATION_ID,
    EMR_CARD,
    EMR_ENTRY_POINT,
    EMR_POLL_SECONDS,
    EMR_SPARK_PARAMETERS,
)
from airflow.providers.amazon.aws.operators.emr import EmrServerlessStartJobOperator
from airflow.sdk import Param

from pipeline.jobs import emr
from pipeline.settings import load_settings

SECRET_ARN_PREFIX = "arn:aws:secretsmanager:"  # noqa: S105 - a name, not a password


def emr_params(*, role_param: str, role_default: str, role_description: str,
               login_param: str, login_default: str) -> dict[str, Param]:
    """The engine's params, defaults from the stack's AIRFLOW__MLOPS__* settings."""
    return {
        login_param: Param(login_default, type="string",
                           description="emr-serverless: ARN of the secret of the job's own "
                                       "MLflow login, which the job reads (empty: none)"),
        "emr_application_id": Param(EMR_APPLICATION_ID, type="string",
                                    description="emr-serverless: the Spark application"),
        role_param: Param(role_default, type="string",
                          description=f"emr-serverless: {role_description}"),
        "emr_entry_point": Param(EMR_ENTRY_POINT, type="string",
                                 description="emr-serverless: s3:// URI of mlops_entry.py"),
        "emr_spark_parameters": Param(EMR_SPARK_PARAMETERS, type="string",
                                      description="emr-serverless: spark-submit settings"),
        "emr_card": Param(EMR_CARD, type="string",
                          description="emr-serverless: the card's path on the job's side"),
    }


def submit_job(*, task_id: str, role_param: str, driver: Any, name: str
               ) -> EmrServerlessStartJobOperator:
    """Start the job built by `driver` under the role in `role_param`, and wait for it."""
    return EmrServerlessStartJobOperator(
        task_id=task_id, aws_conn_id=AWS_CONN_ID,
        application_id="{{ params.emr_application_id }}",
        execution_role_arn="{{ params." + role_param + " }}",
        job_driver=driver, name=f"{name}-{{{{ ds_nodash }}}}",
        wait_for_completion=True, waiter_delay=EMR_POLL_SECONDS, retries=0)


def job_driver(params: Mapping[str, Any], *, arguments: list[str], login_param: str
               ) -> dict[str, object]:
    """The job: the entry point with the tracking server and the job's login secret first
    (the secret's name, never its value), then the `mlops` command line."""
    login = str(params.get(login_param, "")).strip()
    if login and not login.startswith(SECRET_ARN_PREFIX):
        # not echoed: a password pasted here by mistake must not reach the task's log
        raise ValueError(f"engine emr-serverless: param {login_param} must be a Secrets "
                         f"Manager ARN ({SECRET_ARN_PREFIX}...)")
    options = ["--tracking-uri", load_settings().mlflow_tracking_uri]
    if login:
        options += ["--tracking-login", login]
    return emr.job_driver(entry_point=params["emr_entry_point"], arguments=[*options, *arguments],
                          spark_parameters=params["emr_spark_parameters"])
