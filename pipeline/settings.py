"""Settings for the CLI, read from the environment once at start-up."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline.errors import ConfigError

DEFAULT_TRACKING_URI = "http://127.0.0.1:5000"


class Settings(BaseSettings):
    """Where the registry lives and where runs go.

    MLflow's own variables (`MLFLOW_TRACKING_URI`, `MLFLOW_TRACKING_USERNAME`,
    `MLFLOW_TRACKING_PASSWORD`, `MLFLOW_S3_ENDPOINT_URL`) are read by MLflow itself;
    only the tracking URI is mirrored here so the CLI can default to the local stack.
    """

    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    mlflow_tracking_uri: str = Field(default=DEFAULT_TRACKING_URI)
    mlops_experiment: str = Field(default="mlops-gitops")
    mlops_card: Path = Field(default=Path("model_card.yaml"))
    mlops_home: Path = Field(default=Path(".mlops"))
    mlops_serving_url: str | None = Field(default=None)
    """The deployed serving API: the gate asks it what it loads, promote waits for it."""

    @field_validator("mlflow_tracking_uri")
    @classmethod
    def _no_credentials(cls, value: str) -> str:
        return refuse_credentials(value)


CREDENTIALS_IN_URI = ("holds a user name or password; set MLFLOW_TRACKING_USERNAME and "
                      "MLFLOW_TRACKING_PASSWORD instead (a URI is shown in links, verdicts "
                      "and errors)")


def refuse_credentials(uri: str) -> str:
    """The tracking URI, if it carries no login: every place that prints or links it
    (reports, verdicts, errors) can then show it as it is."""
    parts = urlsplit(uri)
    if parts.username is not None or parts.password is not None:
        raise ValueError(CREDENTIALS_IN_URI)
    return uri


LOGIN_VARIABLES = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


def login_environment(secret: str, *, source: str) -> dict[str, str]:
    """MLflow's login variables from a login secret's text, `{"username", "password"}` as
    the cloud tracking server's login keeper writes it. A job or a task that reads its
    own login from Secrets Manager sets these in its own process; the error names the
    secret (`source`), never what it holds."""
    try:
        value = json.loads(secret)
        username, password = str(value["username"]), str(value["password"])
    except (ValueError, TypeError, KeyError):
        raise ConfigError(f"{source}: not a login secret (a JSON object with a username "
                          "and a password)") from None
    if not username.strip() or not password:
        raise ConfigError(f"{source}: the login secret has an empty username or password")
    return dict(zip(LOGIN_VARIABLES, (username, password), strict=True))


def load_settings() -> Settings:
    """Read settings now (not at import), so tests can set the environment first."""
    try:
        return Settings()
    except ValidationError as err:
        raise ConfigError(environment_error(err)) from None


def environment_error(err: ValidationError) -> str:
    """`NAME: reason` for the first bad variable, named as the user set it."""
    problem = err.errors(include_url=False)[0]
    name = "_".join(str(p) for p in problem["loc"]).upper() or "settings"
    return f"{name}: {str(problem['msg']).removeprefix('Value error, ')}"
