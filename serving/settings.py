"""Settings of the serving process, read from the environment once at start-up."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_TRACKING_URI = "http://127.0.0.1:5000"


class ServingSettings(BaseSettings):
    """Which model to serve, how often to look for a new one, and the input limits.

    `MODEL_URI` (e.g. `runs:/<id>/model` for a candidate in the PR's image test) pins one
    model and turns polling off; otherwise `models:/MODEL_NAME@MODEL_ALIAS` is followed.
    MLflow's own variables (credentials, `MLFLOW_S3_ENDPOINT_URL`) are read by MLflow.
    """

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", protected_namespaces=())

    mlflow_tracking_uri: str = DEFAULT_TRACKING_URI
    model_name: str | None = None
    model_alias: str = "production"
    model_uri: str | None = None
    model_poll_seconds: float = Field(default=10.0, gt=0)
    # After a version failed to load, try it again only after this long (a corrupt
    # artifact rarely heals, and every try downloads it again).
    model_retry_failed_seconds: float = Field(default=120.0, ge=0)
    serving_host: str = "127.0.0.1"
    serving_port: int = Field(default=8000, ge=1, le=65535)
    serving_max_rows: int = Field(default=10_000, ge=1)
    serving_max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    serving_log_level: str = "info"
    # json: one JSON object per line (access log included); text: for a terminal.
    serving_log_format: Literal["json", "text"] = "json"
    # Requests waiting for the scoring thread; one more is refused (503, Retry-After).
    serving_queue_max: int = Field(default=256, ge=1)
    # How long a request may wait for its predictions (504 after).
    serving_deadline_seconds: float = Field(default=30.0, gt=0)
    # A predict running longer than this (default: the deadline) marks the scoring thread
    # stuck: /ready answers 503 and a new thread serves the queue.
    serving_stuck_seconds: float | None = Field(default=None, gt=0)
    serving_retry_after_seconds: int = Field(default=1, ge=0)
    # How long an idle keep-alive connection is kept open. Longer than any client's or
    # load balancer's idle timeout (httpx 5 s, the stack's load balancer 120 s): when the
    # server closes first, a client that sends on the connection at that moment sees it
    # reset, with no HTTP status (uvicorn's default of 5 s did that under load).
    serving_keep_alive_seconds: int = Field(default=130, ge=1)
    # auto: a version's verified compiled twin (onnxruntime) when it has one, else sklearn;
    # sklearn: always the skops model (to compare, or to rule the twin out).
    serving_runtime: Literal["auto", "sklearn"] = "auto"
    # With auto: serve the first version's twin as soon as it gives the answers training
    # recorded, and load its sklearn model behind it (a cold start without importing
    # scikit-learn); false: /ready waits for the whole version.
    serving_twin_first: bool = True
    # A caller's row ID that /predict records may carry (the card's monitoring.id_column):
    # answered back and recorded in the prediction log, never given to the model.
    serving_id_column: str | None = Field(default=None, min_length=1)
    # Threads per worker process. One each by default: a single-row predict gains
    # nothing from a pool, and on a small machine the pool's threads compete with the
    # event loop and the other workers (see docs/serving.md).
    serving_onnx_threads: int = Field(default=1, ge=1, le=64)
    serving_sklearn_threads: int = Field(default=1, ge=1, le=64)
    # The prediction log (serving/prediction_log.py): a folder or an s3:// prefix that
    # every scored row is written to, off the request path; empty turns it off.
    prediction_log: str = ".mlops/predictions"
    # The share of rows logged, drawn row by row (1: every row).
    prediction_log_sample_rate: float = Field(default=1.0, gt=0, le=1)
    # Rows that may wait for the writer; more are dropped and counted, never waited for.
    prediction_log_queue_rows: int = Field(default=100_000, ge=1)
    # A file is finished (and visible to readers) at this age or size, whichever first.
    prediction_log_rotate_seconds: float = Field(default=3600.0, gt=0, le=86_400)
    prediction_log_rotate_bytes: int = Field(default=64 * 1024 * 1024, ge=1024 * 1024)
    # ... and when no rows came for this long (0: never for that reason), so that a burst
    # of traffic can be monitored seconds after it ends.
    prediction_log_idle_seconds: float = Field(default=10.0, ge=0, le=86_400)

    @field_validator("mlflow_tracking_uri")
    @classmethod
    def _no_credentials(cls, value: str) -> str:
        """Refused with a login in it: the URI reaches /model, /ready and logs in errors,
        which anyone who can reach the server reads; MLflow takes the login from
        MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD."""
        parts = urlsplit(value)
        if parts.username is not None or parts.password is not None:
            raise ValueError("holds a user name or password; set MLFLOW_TRACKING_USERNAME and "
                             "MLFLOW_TRACKING_PASSWORD instead")
        return value

    @model_validator(mode="after")
    def _needs_a_model(self) -> ServingSettings:
        if not self.model_uri and not self.model_name:
            raise ValueError("set MODEL_NAME (follow its alias) or MODEL_URI (one fixed model)")
        return self


class SettingsError(Exception):
    """A variable of the environment is invalid; the message is one line naming it."""


def load_settings() -> ServingSettings:
    """Read now, not at import, so tests and the CLI can set the environment first."""
    try:
        return ServingSettings()
    except ValidationError as err:
        problem = err.errors(include_url=False)[0]
        name = "_".join(str(p) for p in problem["loc"]).upper() or "settings"
        raise SettingsError(f"{name}: {str(problem['msg']).removeprefix('Value error, ')}"
                            ) from None
