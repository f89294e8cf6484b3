"""The `emr-serverless` engine both DAGs share: its params, and the job it submits.

Each DAG adds the role param of its own job (the scoring or the training job role) and
a task that builds the job driver; `submit_job` is the Amazon provider's operator that
starts the job under that role and waits for it.
"""

from __future__ import annotations

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


def emr_params(*, role_param: str, role_default: str, role_description: str
               ) -> dict[str, Param]:
    """The engine's params, defaults from the stack's AIRFLOW__MLOPS__* settings."""
    return {
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
