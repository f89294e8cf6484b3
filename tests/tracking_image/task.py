"""An ECS container definition, turned into what `docker run` gets on this machine.

One source of truth: the environment names and values, the secrets' names and the
command all come from the task definition the Pulumi program registers (under mocks).
Only three things cannot be AWS here and are substituted, each by name:

- the RDS endpoint's port (`ADDRESSES`) is the local MariaDB's; its name stays, and the
  container resolves it to the host (`docker run --add-host`);
- each secret's `valueFrom` is resolved the way ECS does (`arn` or `arn:json-key::`) from a
  local stand-in for Secrets Manager;
- what the ECS agent gives every task without the task definition naming it (`RUNTIME`:
  the task role's credentials and region) is given by the local S3 server's key pair,
  plus the endpoints of the S3 server and the Secrets Manager stand-in, which in AWS are
  the services' defaults.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ADDRESSES = ("DB_HOST", "DB_PORT")
RUNTIME = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
           "MLFLOW_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_SECRETS_MANAGER")


@dataclass(frozen=True)
class ContainerRun:
    """What `docker run` needs: the environment and the arguments after the image."""

    environment: dict[str, str]
    command: list[str]


def resolve_secret(value_from: str, secrets: Mapping[str, str]) -> str:
    """ECS's `valueFrom`: a whole secret's ARN, or `ARN:json-key:version-stage:version-id`."""
    if value_from in secrets:
        return secrets[value_from]
    parts = value_from.split(":")
    arn, key = ":".join(parts[:7]), parts[7] if len(parts) > 7 else ""
    if arn not in secrets:
        raise KeyError(f"no local secret stands in for {arn}")
    value = secrets[arn]
    return str(json.loads(value)[key]) if key else value


def container_run(definition: Mapping[str, Any], *, secrets: Mapping[str, str],
                  addresses: Mapping[str, str], runtime: Mapping[str, str]) -> ContainerRun:
    """The task's container as `docker run` gets it; refuses substitutions it would not make."""
    if set(addresses) - set(ADDRESSES) or set(runtime) != set(RUNTIME):
        raise ValueError("substitute only ADDRESSES and give exactly RUNTIME")
    environment = {item["name"]: item["value"] for item in definition.get("environment", [])}
    missing = set(addresses) - set(environment)
    if missing:
        raise ValueError(f"the task definition has no {sorted(missing)}")
    environment.update(addresses)
    for item in definition.get("secrets", []):
        environment[item["name"]] = resolve_secret(item["valueFrom"], secrets)
    clash = set(runtime) & set(environment)
    if clash:
        raise ValueError(f"the task definition sets {sorted(clash)} itself")
    environment.update(runtime)
    return ContainerRun(environment=environment, command=list(definition.get("command", [])))
