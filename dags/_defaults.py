"""Deployment settings the DAG files read when the scheduler parses them.

Only defaults live here: every one can be overridden per run through the DAG's
params (the trigger form in the UI, or `run_conf`). The paths default to this
repository's layout, so the DAGs work from a checkout without configuration.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CARD = os.environ.get("MLOPS_CARD", str(REPO / "model_card.yaml"))
"""The model card: model name, dataset and source, promotion floors."""

WORK_ROOT = os.environ.get("MLOPS_WORK_DIR",
                           str(Path(tempfile.gettempdir()) / "mlops-airflow"))
"""Where training runs hand data between tasks (one folder per DAG run, removed after)."""

TRAINING_SCHEDULE = os.environ.get("MLOPS_TRAINING_SCHEDULE", "@weekly") or None
"""Cron or preset of the training DAG; an empty value means trigger by hand only."""

INFERENCE_SCHEDULE = os.environ.get("MLOPS_INFERENCE_SCHEDULE", "@daily") or None
"""Cron or preset of the inference DAG; an empty value means trigger by hand only."""

MONITORING_SCHEDULE = os.environ.get("MLOPS_MONITORING_SCHEDULE", "@daily") or None
"""Cron or preset of the monitoring DAG; an empty value means trigger by hand only."""

PREDICTION_LOG = (os.environ.get("PREDICTION_LOG")
                  or os.environ.get("AIRFLOW__MLOPS__PREDICTION_LOG")
                  or str(REPO / ".mlops" / "predictions"))
"""The prediction log the server and batch scoring write: a folder or an s3:// prefix."""

MONITOR_DIR = (os.environ.get("MLOPS_MONITOR_DIR") or os.environ.get("AIRFLOW__MLOPS__MONITOR_DIR")
               or str(REPO / ".mlops" / "monitor"))
"""Where each monitoring run leaves its HTML report, JSON summary and Prometheus gauges."""

SERVING_URL = (os.environ.get("MLOPS_SERVING_URL")
               or os.environ.get("AIRFLOW__MLOPS__SERVING_URL") or "http://127.0.0.1:8000")
"""The serving API that scores batches (the ALB's URL in the cloud: the stack sets it in
MWAA's configuration, section `mlops`)."""

BATCH_INPUT = os.environ.get("MLOPS_BATCH_INPUT", "")
"""The batch to score: a CSV/Parquet path or an s3:// URI."""

SCORES_DIR = os.environ.get("MLOPS_SCORES_DIR", str(REPO / ".mlops" / "scores"))
"""Where scores go, one file per logical date: a folder or an s3:// prefix."""

SPARK_MASTER = os.environ.get("MLOPS_SPARK_MASTER", "local[*]")
"""Where the inference DAG's spark engine runs: Spark in the worker by default."""

# The `emr-serverless` engines of the inference and training DAGs. The cloud stack sets
# these in MWAA's Airflow configuration (section `mlops`), which Airflow exposes as
# AIRFLOW__MLOPS__*.
EMR_APPLICATION_ID = os.environ.get("AIRFLOW__MLOPS__EMR_APPLICATION_ID", "")
"""The EMR Serverless Spark application (the stack's `sparkApplicationId`)."""

EMR_JOB_ROLE_ARN = os.environ.get("AIRFLOW__MLOPS__EMR_JOB_ROLE_ARN", "")
"""The job's role: reads the batch bucket's input/ and writes its scores/ only."""

EMR_TRAIN_JOB_ROLE_ARN = os.environ.get("AIRFLOW__MLOPS__EMR_TRAIN_JOB_ROLE_ARN", "")
"""The training job's role: reads the batch bucket's training/ only, logs to the tracking server."""

EMR_LOGIN_SECRET_ARN = os.environ.get("AIRFLOW__MLOPS__EMR_LOGIN_SECRET_ARN", "")
"""The scoring job's MLflow login (`emr-score`): the secret's ARN, which the job reads."""

EMR_TRAIN_LOGIN_SECRET_ARN = os.environ.get("AIRFLOW__MLOPS__EMR_TRAIN_LOGIN_SECRET_ARN", "")
"""The training job's MLflow login (`emr-train`): the secret's ARN, which the job reads."""

EMR_ENTRY_POINT = os.environ.get("AIRFLOW__MLOPS__EMR_ENTRY_POINT", "")
"""s3:// URI of dags/emr/mlops_entry.py as synced to the DAGs bucket."""

EMR_SPARK_PARAMETERS = os.environ.get("AIRFLOW__MLOPS__EMR_SPARK_PARAMETERS", "")
"""spark-submit settings of the job: the packed environment (`spark.archives`) and the
Python it runs (docs/orchestration.md)."""

EMR_CARD = os.environ.get("AIRFLOW__MLOPS__EMR_CARD", "model_card.yaml")
"""The model card as the job sees it (shipped beside the packed environment)."""

AWS_CONN_ID = os.environ.get("AIRFLOW__MLOPS__AWS_CONN_ID", "aws_default")
"""The Airflow connection the EMR Serverless operator uses (MWAA: its execution role)."""

EMR_POLL_SECONDS = int(os.environ.get("AIRFLOW__MLOPS__EMR_POLL_SECONDS", "60"))
"""How often the operator asks EMR Serverless whether the job has finished."""

def github_repository() -> str:
    """owner/name of the repository the retrained candidate's pull request is opened on
    (GITHUB_REPOSITORY, else MWAA's configuration `mlops.github_repository`, set by the
    stack). Read when the task runs, not when the scheduler imports the DAG file, so the
    task sees the environment it runs in."""
    return (os.environ.get("GITHUB_REPOSITORY")
            or os.environ.get("AIRFLOW__MLOPS__GITHUB_REPOSITORY", ""))
