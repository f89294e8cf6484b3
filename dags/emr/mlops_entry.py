"""The EMR Serverless entry point of the DAGs' `emr-serverless` engines.

EMR Serverless runs a Python file from S3 with arguments; this one hands them to the
`mlops` command, so a job on EMR is `mlops score ... --engine spark` (the inference DAG)
or `mlops train ... --register` (the training DAG): the same code and checks (manifest,
data-only loading, columns, atomic output, sealed test rows) as on a laptop. The packed
environment that brings `pipeline` along is named in the job's Spark parameters
(docs/orchestration.md, "Spark on EMR Serverless").

Two options may come first, before the `mlops` command line:

- `--tracking-uri URI`: the tracking server (MLflow's `MLFLOW_TRACKING_URI`);
- `--tracking-login ARN`: the Secrets Manager secret of the job's own MLflow login
  (`emr-train` for training, `emr-score` for scoring), which only the job's role may
  read. The job reads it here, on the driver (the only process that talks to the
  tracking server), and hands it to MLflow through its variables: the job's parameters,
  which anyone who may list job runs can read, carry the secret's name, never the
  password.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

from pipeline.cli.app import main
from pipeline.errors import ConfigError
from pipeline.settings import login_environment

OPTIONS = {"--tracking-uri": "MLFLOW_TRACKING_URI", "--tracking-login": "login"}
"""The entry point's own options, and what each sets."""


def split_arguments(argv: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """The leading options of the entry point, and the `mlops` command line after them."""
    options: dict[str, str] = {}
    rest = list(argv)
    while rest and rest[0] in OPTIONS:
        if len(rest) < 2 or not rest[1].strip():
            raise ConfigError(f"mlops_entry.py: {rest[0]} needs a value")
        options[OPTIONS[rest[0]]] = rest[1].strip()
        rest = rest[2:]
    return options, rest


def read_secret(arn: str) -> str:
    """The secret's text, with the job role's credentials, in the secret's own region."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    region = arn.split(":")[3] if arn.count(":") >= 6 else None
    try:
        client = boto3.client("secretsmanager", region_name=region or None)
        return str(client.get_secret_value(SecretId=arn)["SecretString"])
    except (BotoCoreError, ClientError) as err:
        raise ConfigError(f"{arn}: the login secret cannot be read ({err})") from None


def job_environment(options: dict[str, str], *,
                    read: Callable[[str], str] = read_secret) -> dict[str, str]:
    """MLflow's variables for this job: the tracking URI and the login from its secret."""
    environment = {k: v for k, v in options.items() if k != "login"}
    if "login" in options:
        environment |= login_environment(read(options["login"]), source=options["login"])
    return environment


def run(argv: Sequence[str]) -> None:
    try:
        options, command = split_arguments(argv)
        environment = job_environment(options)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    os.environ.update(environment)  # this process is the job's driver: its edge
    sys.argv = [sys.argv[0], *command]
    main()


if __name__ == "__main__":
    run(sys.argv[1:])
