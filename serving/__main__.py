"""`python -m serving`: run the API with uvicorn, address and model from the environment.

This is the image's command, and what `mlops serve` runs.
"""

from __future__ import annotations

import logging
import os
import sys

import uvicorn
from pythonjsonlogger.json import JsonFormatter

from serving.access import RequestIdFilter
from serving.loader import MLFLOW_HTTP_DEFAULTS
from serving.settings import ServingSettings, SettingsError, load_settings


def run(settings: ServingSettings) -> None:
    """One worker with uvloop and httptools (TCP_NODELAY set; the model is in memory once).

    Idle keep-alive connections stay open `SERVING_KEEP_ALIVE_SECONDS`, longer than the
    clients' and the load balancer's own idle timeouts, so the client side always closes
    first and no request is sent on a connection the server is closing.
    """
    for key, value in MLFLOW_HTTP_DEFAULTS.items():  # MLflow reads these from the environment
        os.environ.setdefault(key, value)
    configure_logging(settings)
    uvicorn.run("serving.app:create_app", factory=True, host=settings.serving_host,
                port=settings.serving_port, loop="uvloop", http="httptools",
                log_level=settings.serving_log_level.lower(), access_log=False,
                log_config=None, proxy_headers=True, timeout_graceful_shutdown=10,
                timeout_keep_alive=settings.serving_keep_alive_seconds)


def configure_logging(settings: ServingSettings) -> None:
    """Every log line of the process (uvicorn's too) through one handler, with request IDs.

    Our access log (`serving.access`) replaces uvicorn's, which knows neither the
    request ID nor the model version.
    """
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    if settings.serving_log_format == "json":
        handler.setFormatter(JsonFormatter(
            "{asctime}{levelname}{name}{message}", style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"}))
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.serving_log_level.upper())


def main() -> None:
    """Start, or say in one line which setting is wrong (exit 2)."""
    try:
        settings = load_settings()
    except SettingsError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    run(settings)


if __name__ == "__main__":
    main()
