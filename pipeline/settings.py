"""Settings for the CLI, read from the environment once at start-up."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

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


def load_settings() -> Settings:
    """Read settings now (not at import), so tests can set the environment first."""
    return Settings()
