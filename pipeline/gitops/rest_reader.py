"""The registry's state read over MLflow's REST API, without importing MLflow.

Importing MLflow's client takes seconds (it loads pandas, its entities and its GenAI
modules); `mlops status` needs two GET requests. `RestReader` answers the two calls
`registry.describe` makes, with the same names as `MlflowClient`'s, and authenticates
the way MLflow's client does from the environment: `MLFLOW_TRACKING_USERNAME` and
`MLFLOW_TRACKING_PASSWORD` (basic), or `MLFLOW_TRACKING_TOKEN` (bearer);
`MLFLOW_TRACKING_INSECURE_TLS`, `MLFLOW_TRACKING_SERVER_CERT_PATH` and
`MLFLOW_TRACKING_CLIENT_CERT_PATH` for TLS. A URI it cannot serve (a database or a
folder, or an authentication plugin named by `MLFLOW_TRACKING_AUTH`) is left to MLflow.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests

from pipeline.errors import RegistryError

API = "/api/2.0/mlflow"
TIMEOUT_SECONDS = 30.0


def supports(tracking_uri: str, env: Mapping[str, str] | None = None) -> bool:
    """True when plain HTTP requests reach this tracking server as MLflow's client would."""
    env = os.environ if env is None else env
    return urlsplit(tracking_uri).scheme in {"http", "https"} and not env.get(
        "MLFLOW_TRACKING_AUTH")


class RestError(RegistryError):
    """The server's answer to a request that failed, with MLflow's `error_code`."""

    def __init__(self, message: str, *, error_code: str) -> None:
        super().__init__(message)
        self.error_code = error_code


@dataclass(frozen=True)
class VersionView:
    """The fields of a model version that `describe` reads."""

    name: str
    version: str
    run_id: str
    current_stage: str
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RunData:
    metrics: dict[str, float]


@dataclass(frozen=True)
class RunView:
    """A run as `describe` reads it: `run.data.metrics`, the latest value of each."""

    run_id: str
    data: RunData


class RestReader:
    """`get_model_version_by_alias` and `get_run`, over HTTP."""

    def __init__(self, tracking_uri: str, env: Mapping[str, str] | None = None) -> None:
        self.base = tracking_uri.rstrip("/")
        self.env = dict(os.environ if env is None else env)

    def get_model_version_by_alias(self, name: str, alias: str) -> VersionView:
        body = self._get("registered-models/alias", {"name": name, "alias": alias})
        version = body.get("model_version") or {}
        return VersionView(
            name=str(version.get("name", name)), version=str(version.get("version", "")),
            run_id=str(version.get("run_id") or ""),
            current_stage=str(version.get("current_stage") or "None"),
            tags={t["key"]: t.get("value", "") for t in version.get("tags") or []})

    def get_run(self, run_id: str) -> RunView:
        body = self._get("runs/get", {"run_id": run_id})
        metrics = (body.get("run") or {}).get("data", {}).get("metrics") or []
        return RunView(run_id=run_id, data=RunData(
            metrics={m["key"]: float(m["value"]) for m in metrics if "key" in m}))

    def _get(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        try:
            answer = requests.get(f"{self.base}{API}/{path}", params=params,
                                  timeout=TIMEOUT_SECONDS, **self._auth())
        except requests.RequestException as err:
            raise RegistryError(f"MLflow: GET {path}: {type(err).__name__}") from err
        try:
            body = answer.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        if answer.status_code != 200:
            code = str(body.get("error_code") or f"HTTP_{answer.status_code}")
            message = str(body.get("message") or answer.reason)
            raise RestError(f"MLflow: {code}: {message}", error_code=code)
        return body

    def _auth(self) -> dict[str, Any]:
        """requests' keyword arguments for MLflow's authentication and TLS variables."""
        env = self.env
        options: dict[str, Any] = {}
        if env.get("MLFLOW_TRACKING_USERNAME") and env.get("MLFLOW_TRACKING_PASSWORD"):
            options["auth"] = (env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"])
        elif env.get("MLFLOW_TRACKING_TOKEN"):
            options["headers"] = {"Authorization": f"Bearer {env['MLFLOW_TRACKING_TOKEN']}"}
        if env.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true":
            options["verify"] = False
        elif env.get("MLFLOW_TRACKING_SERVER_CERT_PATH"):
            options["verify"] = env["MLFLOW_TRACKING_SERVER_CERT_PATH"]
        if env.get("MLFLOW_TRACKING_CLIENT_CERT_PATH"):
            options["cert"] = env["MLFLOW_TRACKING_CLIENT_CERT_PATH"]
        return options
