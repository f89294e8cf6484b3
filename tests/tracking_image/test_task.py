"""How an ECS container definition becomes `docker run`'s arguments (no Docker needed)."""

from __future__ import annotations

import json

import pytest

from tests.tracking_image.task import container_run, resolve_secret

ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!db-x"
DEFINITION = {
    "environment": [{"name": "DB_HOST", "value": "db.aws"}, {"name": "DB_NAME", "value": "m"}],
    "secrets": [{"name": "DB_USERNAME", "valueFrom": f"{ARN}:username::"},
                {"name": "TOKEN", "valueFrom": f"{ARN}-token"}],
    "command": ["--port", "5000"],
}
SECRETS = {ARN: json.dumps({"username": "u", "password": "p"}), f"{ARN}-token": "t"}
RUNTIME = dict.fromkeys(("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
                         "MLFLOW_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_SECRETS_MANAGER"), "x")


def test_secrets_resolve_as_ecs_does():
    assert resolve_secret(f"{ARN}:username::", SECRETS) == "u"
    assert resolve_secret(f"{ARN}-token", SECRETS) == "t"
    with pytest.raises(KeyError):
        resolve_secret("arn:aws:secretsmanager:us-east-1:1:secret:other", SECRETS)


def test_only_addresses_are_substituted():
    run = container_run(DEFINITION, secrets=SECRETS, addresses={"DB_HOST": "172.17.0.1"},
                        runtime=RUNTIME)
    assert run.command == ["--port", "5000"]
    assert run.environment == {"DB_HOST": "172.17.0.1", "DB_NAME": "m", "DB_USERNAME": "u",
                               "TOKEN": "t", **RUNTIME}
    with pytest.raises(ValueError, match="ADDRESSES"):
        container_run(DEFINITION, secrets=SECRETS, addresses={"DB_NAME": "other"},
                      runtime=RUNTIME)


def test_the_task_definition_may_not_set_what_the_runtime_gives():
    definition = {**DEFINITION, "environment": [*DEFINITION["environment"],
                                                {"name": "AWS_DEFAULT_REGION", "value": "eu"}]}
    with pytest.raises(ValueError, match="AWS_DEFAULT_REGION"):
        container_run(definition, secrets=SECRETS, addresses={}, runtime=RUNTIME)
