"""The MLflow login of the task that runs now: Airflow's own, read from its secret.

On the cloud stack MWAA's execution role may read one secret, the `airflow` login
(`{"username", "password"}`, kept by the tracking server's login keeper), and the stack
names it in Airflow's configuration (`AIRFLOW__MLOPS__TRACKING_LOGIN_SECRET_ARN`), with the
tracking server (`AIRFLOW__MLOPS__TRACKING_URI`). Every task of the DAGs reads it when it
starts (`pre_execute` in the DAGs' default args) and hands it to MLflow through MLflow's
own variables, in the task's own process: the password is in no DAG file, Variable,
connection, log or job parameter, and dies with the task.

Without the setting (a laptop, the tests' unauthenticated server) MLflow's variables stay
as the environment has them. A secret that cannot be read fails the task before it runs,
in one line that names the secret.
"""

from __future__ import annotations

import os
from typing import Any

from _defaults import AWS_CONN_ID

from pipeline.settings import login_environment

LOGIN_SECRET_SETTING = "AIRFLOW__MLOPS__TRACKING_LOGIN_SECRET_ARN"  # noqa: S105 - a name
TRACKING_URI_SETTING = "AIRFLOW__MLOPS__TRACKING_URI"


class TrackingLoginError(RuntimeError):
    """The task's login secret cannot be read or is not a login; the message is one line."""


def read_secret(arn: str) -> str:
    """The secret's text, through the Airflow connection the DAGs use for AWS (MWAA: its
    execution role)."""
    from airflow.providers.amazon.aws.hooks.secrets_manager import SecretsManagerHook
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return str(SecretsManagerHook(aws_conn_id=AWS_CONN_ID).get_secret(arn))
    except (BotoCoreError, ClientError) as err:
        raise TrackingLoginError(f"{arn}: the tracking login cannot be read ({err})") from None


def use_tracking_login(context: Any = None) -> None:
    """Point this task's MLflow client at the tracking server with Airflow's own login."""
    del context  # a pre_execute hook: what it needs comes from the environment
    uri = os.environ.get(TRACKING_URI_SETTING, "").strip()
    if uri and not os.environ.get("MLFLOW_TRACKING_URI"):
        os.environ["MLFLOW_TRACKING_URI"] = uri
    arn = os.environ.get(LOGIN_SECRET_SETTING, "").strip()
    if not arn:
        return
    from pipeline.errors import ConfigError

    try:
        login = login_environment(read_secret(arn), source=arn)
    except ConfigError as err:
        raise TrackingLoginError(str(err)) from None
    os.environ.update(login)  # this process is the task's, and only this task's
