"""`python -m serving`: run the API with uvicorn, address and model from the environment.

This is the image's command; `mlops serve` calls `run` too.
"""

from __future__ import annotations

import logging

import uvicorn

from serving.settings import ServingSettings, load_settings


def run(settings: ServingSettings) -> None:
    """One worker with uvloop and httptools (TCP_NODELAY set; the model is in memory once)."""
    logging.basicConfig(level=settings.serving_log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run("serving.app:create_app", factory=True, host=settings.serving_host,
                port=settings.serving_port, loop="uvloop", http="httptools",
                log_level=settings.serving_log_level.lower(), access_log=False,
                proxy_headers=True, timeout_graceful_shutdown=10)


if __name__ == "__main__":
    run(load_settings())
