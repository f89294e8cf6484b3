"""`python -m serving`: run the API with uvicorn, address and model from the environment.

This is the image's command, and what `mlops serve` runs.
"""

from __future__ import annotations

import logging
import os

import uvicorn

from serving.loader import MLFLOW_HTTP_DEFAULTS
from serving.settings import ServingSettings, load_settings


def run(settings: ServingSettings) -> None:
    """One worker with uvloop and httptools (TCP_NODELAY set; the model is in memory once)."""
    for key, value in MLFLOW_HTTP_DEFAULTS.items():  # MLflow reads these from the environment
        os.environ.setdefault(key, value)
    logging.basicConfig(level=settings.serving_log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run("serving.app:create_app", factory=True, host=settings.serving_host,
                port=settings.serving_port, loop="uvloop", http="httptools",
                log_level=settings.serving_log_level.lower(), access_log=False,
                proxy_headers=True, timeout_graceful_shutdown=10)


if __name__ == "__main__":
    run(load_settings())
