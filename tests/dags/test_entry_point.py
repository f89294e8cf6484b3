"""The EMR entry point's own options: a bad login secret stops the job in one line.

Run as EMR runs it (a process with the job's arguments), against moto's Secrets Manager
(AWS itself cannot run here). The secret's content is never echoed.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.dags.conftest import DAGS, EmrServerless


def _entry(arguments: list[str], emr: EmrServerless) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    return subprocess.run([sys.executable, str(DAGS / "emr" / "mlops_entry.py"), *arguments],
                          env={**env, **emr.boto_env}, capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.mark.parametrize("content", ["hunter2-not-json", '{"username": "emr-score"}',
                                     '{"username": "", "password": "x-secret-x"}'])
def test_a_secret_that_is_not_a_login_stops_the_job_in_one_line(
        content: str, emr_serverless: EmrServerless) -> None:
    name = f"mlops/not-a-login-{abs(hash(content))}"
    arn = emr_serverless.secrets.create_secret(Name=name, SecretString=content)["ARN"]
    done = _entry(["--tracking-uri", "http://127.0.0.1:9", "--tracking-login", arn,
                   "status"], emr_serverless)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"error: {arn}: ")
    assert "hunter2" not in done.stderr
    assert "x-secret-x" not in done.stderr


def test_a_secret_the_job_cannot_read_stops_it_in_one_line(
        emr_serverless: EmrServerless) -> None:
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:mlops/absent-AbCdEf"
    done = _entry(["--tracking-login", arn, "status"], emr_serverless)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"error: {arn}: the login secret cannot be read")


def test_an_option_without_its_value_is_named() -> None:
    done = subprocess.run([sys.executable, str(DAGS / "emr" / "mlops_entry.py"),
                           "--tracking-uri"], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: mlops_entry.py: --tracking-uri needs a value"
