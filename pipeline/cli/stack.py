"""`mlops stack up|down`: the local services (`make up` / `make down`)."""

from __future__ import annotations

from typing import Annotated

import typer

from pipeline.cli.app import stack_app
from pipeline.cli.serving import stop_background as stop_serving
from pipeline.localstack import Backend
from pipeline.localstack.mysql import MYSQL_HOME, mysql_stack, stop_mysql_stack
from pipeline.localstack.sqlite import mlflow_server
from pipeline.settings import load_settings


@stack_app.command("up")
def stack_up(
    host: Annotated[str, typer.Option(envvar="MLFLOW_HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="MLFLOW_PORT")] = 5000,
    backend: Annotated[Backend, typer.Option(
        envvar="MLOPS_BACKEND", help="sqlite: SQLite and a local artifact folder; mysql: "
        "MariaDB, S3 protocol artifacts and basic auth (docs/backends.md)")] = Backend.sqlite,
    allowed_host: Annotated[list[str] | None, typer.Option(
        "--allowed-host", help="mysql: another Host header to accept, e.g. a load "
        "balancer's name (repeatable; loopback is always allowed)")] = None,
) -> None:
    """Start the local MLflow server (idempotent) and wait until it answers."""
    settings = load_settings()
    if backend is Backend.mysql:
        stack = mysql_stack(home=settings.mlops_home / MYSQL_HOME, host=host, port=port,
                            allowed_hosts=allowed_host or ())
        names = stack.start()
        state = f"started ({', '.join(names)})" if names else "already running"
        typer.echo(f"MLflow server on MariaDB with S3 artifacts and basic auth {state} at "
                   f"{stack.uri} (state in {stack.home})")
        typer.echo(f"admin credentials (train, promote): source {stack.client_env_file}")
        typer.echo(f"read-only credentials (gate, drift, serving): "
                   f"source {stack.reader_env_file}")
        return
    service, command = mlflow_server(home=settings.mlops_home, host=host, port=port)
    started = service.start(command)
    state = "started" if started else "already running"
    typer.echo(f"MLflow server {state} at http://{host}:{port} (PID file {service.pidfile})")


@stack_app.command("down")
def stack_down() -> None:
    """Stop what `stack up` started, either backend (by PID file, never by name)."""
    settings = load_settings()
    service, _ = mlflow_server(home=settings.mlops_home, host="127.0.0.1", port=0)
    if stop_serving(settings.mlops_home):
        typer.echo("serving API stopped")
    stopped_mysql = stop_mysql_stack(settings.mlops_home / MYSQL_HOME)
    if stopped_mysql:
        typer.echo(f"mysql backend stopped ({', '.join(stopped_mysql)})")
    stopped = service.stop()
    if stopped or not stopped_mysql:
        typer.echo("MLflow server stopped" if stopped else "MLflow server was not running")
