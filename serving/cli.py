"""`mlops serve`: run the serving API in the foreground, or in the background by PID file.

Registered in `pipeline/cli.py`; the model name comes from the model card unless
`MODEL_NAME` or `MODEL_URI` is set, and the tracking URI from the CLI's settings.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated

import requests
import typer

from pipeline.card import load_card
from pipeline.config import load_settings
from pipeline.errors import MlopsError
from pipeline.stack import ManagedProcess

SERVICE = "serving"


def serving_process(home: Path, host: str, port: int) -> ManagedProcess:
    """The background server `mlops serve --background` starts and `stack down` stops."""
    return ManagedProcess(name=SERVICE, home=home.resolve(),
                          health_url=f"http://{host}:{port}/health")


def serve_command(
    background: Annotated[bool, typer.Option(
        "--background", help="start detached (PID file under .mlops/) and wait until ready")]
    = False,
    host: Annotated[str, typer.Option(envvar="SERVING_HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="SERVING_PORT")] = 8000,
    wait: Annotated[float, typer.Option(help="--background: seconds to wait for a model")]
    = 120.0,
    card_path: Annotated[Path | None, typer.Option(
        "--card", help="model card naming the model (default: model_card.yaml)")] = None,
) -> None:
    """Serve the registry's Production model over HTTP (hot-swapped when it changes)."""
    settings = load_settings()
    env = {"MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
           "SERVING_HOST": host, "SERVING_PORT": str(port)}
    if not os.environ.get("MODEL_NAME") and not os.environ.get("MODEL_URI"):
        env["MODEL_NAME"] = load_card(card_path or settings.mlops_card).model.name
    if not background:
        os.environ.update(env)
        from serving.__main__ import run
        from serving.settings import load_settings as serving_settings

        typer.echo(f"serving on http://{host}:{port} (Ctrl+C stops)", err=True)
        run(serving_settings())
        return
    service = serving_process(settings.mlops_home, host, port)
    started = service.start([sys.executable, "-m", "serving"], env=env, wait_seconds=60)
    state = "started" if started else "already running"
    typer.echo(f"serving API {state} at http://{host}:{port} (PID file {service.pidfile}, "
               f"log {service.logfile})", err=True)
    model = _wait_ready(f"http://{host}:{port}", wait)
    typer.echo(f"serving {model}", err=True)


def _wait_ready(base: str, wait_seconds: float) -> str:
    """Block until /ready says a model is loaded; fail with /model's last error if not."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            answer = requests.get(f"{base}/ready", timeout=5)
            if answer.status_code == 200:
                ref = answer.json()["model"]
                return f"{ref['name']} version {ref['version']} (run {ref['run_id']})"
            reason = answer.json().get("reason", "not ready")
        except (requests.RequestException, ValueError) as err:
            reason = type(err).__name__
        if time.monotonic() > deadline:
            raise MlopsError(f"the server runs but has no model after {wait_seconds:.0f} s: "
                             f"{reason} (see {base}/model)")
        time.sleep(0.5)


def stop_background(home: Path) -> bool:
    """Stop the background server if one was started here (used by `mlops stack down`)."""
    return serving_process(home, "127.0.0.1", 0).stop()
