"""`mlops serve`, `mlops predict`, `mlops serve-wait`: the serving API from the outside.

`serve` runs the server (`serving/`) in the foreground, or in the background by PID
file; the model name comes from the model card unless `MODEL_NAME` or `MODEL_URI` is
set, and the tracking URI from the CLI's settings. The server itself reads only its own
settings (`serving.settings`): nothing of `pipeline` runs inside it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.app import CardOption, ServingUrlOption, app, say, settings_and_card
from pipeline.errors import MlopsError, ServingError
from pipeline.localstack.process import ManagedProcess
from pipeline.serving_client import DEFAULT_URL, RetryPolicy, ServingClient, to_records
from pipeline.settings import load_settings

SERVICE = "serving"


def serving_process(home: Path, host: str, port: int) -> ManagedProcess:
    """The background server `mlops serve --background` starts and `stack down` stops."""
    return ManagedProcess(name=SERVICE, home=home.resolve(),
                          health_url=f"http://{host}:{port}/health")


@app.command("serve")
def serve_command(
    background: Annotated[bool, typer.Option(
        "--background", help="start detached (PID file under .mlops/) and wait until ready")]
    = False,
    host: Annotated[str, typer.Option(envvar="SERVING_HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="SERVING_PORT")] = 8000,
    wait: Annotated[float, typer.Option(help="--background: seconds to wait for a model")]
    = 120.0,
    card_path: CardOption = None,
) -> None:
    """Serve the registry's Production model over HTTP (hot-swapped when it changes)."""
    settings = load_settings()
    env = {"MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
           "SERVING_HOST": host, "SERVING_PORT": str(port)}
    if not os.environ.get("MODEL_NAME") and not os.environ.get("MODEL_URI"):
        card = settings_and_card(card_path)[1]
        env["MODEL_NAME"] = card.model.name
        if card.monitoring.id_column and not os.environ.get("SERVING_ID_COLUMN"):
            env["SERVING_ID_COLUMN"] = card.monitoring.id_column
    command = [sys.executable, "-m", "serving"]
    if not background:
        say(f"serving on http://{host}:{port} (Ctrl+C stops)")
        # The server replaces this process, with its own settings, as in the image.
        os.execve(sys.executable, command, {**os.environ, **env})  # noqa: S606 - argv, no shell
    service = serving_process(settings.mlops_home, host, port)
    started = service.start(command, env=env, wait_seconds=60)
    url = f"http://{host}:{port}"
    say(f"started a new serving API at {url} (PID {service.pid()})" if started
        else f"a serving API started here already answers at {url} (PID {service.pid()}): "
             "left it running")
    say(f"PID file {service.pidfile}, log {service.logfile}")
    say(f"serving {_wait_ready(url, wait)}")


def _wait_ready(base: str, wait_seconds: float) -> str:
    """Block until /ready says a model is loaded; fail with /model's last error if not."""
    attempts = max(1, int(wait_seconds / 0.5))
    client = ServingClient(base, retry=RetryPolicy(attempts=attempts, backoff_seconds=0.5,
                                                   max_backoff_seconds=0.5, timeout_seconds=5))
    try:
        ref = client.wait_ready().get("model") or {}
    except ServingError as err:
        raise MlopsError(f"the server runs but has no model after {wait_seconds:.0f} s: "
                         f"{err} (see {base}/model)") from err
    return f"{ref.get('name')} version {ref.get('version')} (run {ref.get('run_id')})"


def stop_background(home: Path) -> bool:
    """Stop the background server if one was started here (used by `mlops stack down`)."""
    return serving_process(home, "127.0.0.1", 0).stop()


@app.command("predict")
def predict_command(
    url: ServingUrlOption = DEFAULT_URL,
    rows: Annotated[int, typer.Option(min=1, max=1000)] = 2,
    card_path: CardOption = None,
) -> None:
    """Send validation rows to the serving API's POST /predict and print the answer."""
    from pipeline.gitops.card import prepare_data

    _, card = settings_and_card(card_path)
    data = prepare_data(card)
    records = to_records(data.x_validation.head(rows))
    predictions, model = ServingClient(url).predict(records)
    say(f"{url} served {model['model_name']} version {model['model_version']} "
        f"(run {model['model_run_id']})")
    truth = data.y_validation.head(rows).tolist()
    for record, prediction, actual in zip(records, predictions, truth, strict=False):
        typer.echo(f"{json.dumps(record)} -> {prediction} (actual {actual})")


@app.command("serve-wait")
def serve_wait_command(
    run_id: Annotated[str, typer.Option(help="the run the server should serve")],
    url: ServingUrlOption = DEFAULT_URL,
    timeout: Annotated[float, typer.Option(help="seconds")] = 120.0,
) -> None:
    """Wait until the running server has swapped to the given run (exit 1 on timeout)."""
    info = ServingClient(url).wait_for_run(run_id, timeout=timeout)
    typer.echo(f"{url} now serves {info.get('name')} version {info.get('version')} "
               f"(run {run_id}), loaded at {info.get('loaded_at')}")
