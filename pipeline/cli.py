"""`mlops`: the one command line for people, workflows and tests.

Commands only translate: they parse options, call library functions and print what
happened. Errors are turned into one line and an exit code in `run`, nowhere else:
0 success, 1 a negative verdict, 2 bad input or a failed precondition.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from mlflow.exceptions import MlflowException

from pipeline import api_client, gitops, registry
from pipeline.card import ModelCard, load_card, write_candidate_run_id
from pipeline.config import Settings, load_settings
from pipeline.data import prepare
from pipeline.datasets import load_spec
from pipeline.errors import EXIT_BAD_INPUT, MlopsError, RegistryError
from pipeline.stack import MYSQL_HOME, Backend, mlflow_server, mysql_stack, stop_mysql_stack
from pipeline.train import DEFAULT_ESTIMATOR, make_estimator, parse_params, train
from serving.cli import serve_command
from serving.cli import stop_background as stop_serving

log = logging.getLogger("mlops")

app = typer.Typer(
    help="Train, gate, promote and serve models through MLflow, the GitOps way.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
stack_app = typer.Typer(help="The local MLflow server (embedded default: SQLite, local artifacts).",
                        no_args_is_help=True)
app.add_typer(stack_app, name="stack")

CardOption = Annotated[
    Path | None, typer.Option("--card", help="model card (default: model_card.yaml)")
]


def say(message: str) -> None:
    """Progress for people goes to stderr, so stdout stays clean for --json and run IDs."""
    typer.echo(message, err=True)


def _settings() -> Settings:
    return load_settings()


def _card(path: Path | None, settings: Settings) -> ModelCard:
    return load_card(path or settings.mlops_card)


@app.command("train")
def train_command(
    estimator: Annotated[str, typer.Option(help="estimator name, e.g. dummy, ridge, "
                                           "hist_gradient_boosting, random_forest")]
    = DEFAULT_ESTIMATOR,
    param: Annotated[list[str] | None, typer.Option(
        "--param", help="hyperparameter KEY=VALUE (repeatable)")] = None,
    register: Annotated[bool, typer.Option(help="register the model under model.name")] = False,
    promote: Annotated[bool, typer.Option(
        help="with --register: make it Production when the registry has none yet")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    card_path: CardOption = None,
) -> None:
    """Train one model on the card's dataset and log it as an MLflow run."""
    if promote and not register:
        raise MlopsError("--promote needs --register")
    settings = _settings()
    card = _card(card_path, settings)
    spec = load_spec(card.data.dataset)
    params = parse_params(param or [])
    built = make_estimator(spec.task, estimator, params)
    mlflow_client = registry.client(settings.mlflow_tracking_uri)
    if promote:
        _refuse_if_production_exists(mlflow_client, card.model.name)
    os.environ.setdefault("MLFLOW_TRACKING_URI", settings.mlflow_tracking_uri)
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    data = prepare(spec, source=card.data.source, holdout_fraction=card.data.holdout_fraction)
    say(f"data: {data.report.rows_in} rows read, {data.report.rows_out} kept after cleansing, "
        f"{len(data.train)} train / {len(data.holdout)} held out (hash {data.data_hash})")
    result = train(data=data, estimator=built, estimator_name=estimator, params=params,
                   experiment=settings.mlops_experiment)
    summary: dict[str, Any] = {"run_id": result.run_id, "estimator": estimator,
                               "metrics": result.metrics, "data_hash": result.data_hash}
    say(f"logged run {result.run_id}: {run_url(settings.mlflow_tracking_uri, result.run_id)}")
    say(f"trained {estimator}: " + ", ".join(f"{k}={v:.4g}" for k, v in result.metrics.items()))
    if register:
        version = registry.register_run(mlflow_client, card.model.name, result.run_id)
        summary["version"] = version.version
        say(f"registered {card.model.name} version {version.version}")
        if promote:
            _refuse_if_production_exists(mlflow_client, card.model.name)
            registry.set_production(mlflow_client, card.model.name, version.version,
                                    tags={"promoted_by": "mlops train --promote (bootstrap)"})
            summary["production"] = version.version
            say(f"{card.model.name} version {version.version} is now Production "
                f"(alias {registry.PRODUCTION})")
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        typer.echo(result.run_id)


def run_url(tracking_uri: str, run_id: str) -> str:
    """The run's page in the MLflow UI (the UI finds the experiment from the run)."""
    return f"{tracking_uri.rstrip('/')}/#/runs/{run_id}"


def _refuse_if_production_exists(mlflow_client: Any, name: str) -> None:
    current = registry.production_version(mlflow_client, name)
    if current is not None:
        raise RegistryError(
            f"{name} already has Production version {current.version}; "
            "later models reach production through `mlops gate` and `mlops promote`"
        )


@app.command("status")
def status_command(
    card_path: CardOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Show the registered model, its Production version, run ID and metrics."""
    settings = _settings()
    card = _card(card_path, settings)
    mlflow_client = registry.client(settings.mlflow_tracking_uri)
    state = registry.describe(mlflow_client, card.model.name)
    state["candidate_run_id"] = card.model.candidate_run_id
    state["tracking_uri"] = settings.mlflow_tracking_uri
    if as_json:
        typer.echo(json.dumps(state))
        return
    typer.echo(f"tracking server: {settings.mlflow_tracking_uri}")
    typer.echo(f"model: {card.model.name}")
    typer.echo(f"candidate in the card: {card.model.candidate_run_id or '(none)'}")
    production = state["production"]
    if production is None:
        typer.echo("production: none yet (bootstrap with `mlops train --register --promote`)")
        return
    typer.echo(f"production: version {production['version']}, run {production['run_id']}, "
               f"stage {production['stage']}")
    typer.echo("metrics: " + ", ".join(f"{k}={v:.4g}" for k, v in production["metrics"].items()))
    if state["previous_production"] is not None:
        typer.echo(f"previous-production: version {state['previous_production']}")


@app.command("propose")
def propose_command(
    run_id: Annotated[str, typer.Argument(help="the MLflow run ID of the candidate")],
    card_path: CardOption = None,
) -> None:
    """Write a run ID into the card as the candidate (the change a pull request proposes)."""
    settings = _settings()
    path = card_path or settings.mlops_card
    write_candidate_run_id(path, run_id)
    typer.echo(f"{path}: candidate_run_id is now {run_id}")


@app.command("predict")
def predict_command(
    url: Annotated[str, typer.Option(envvar="SERVING_URL", help="serving API base URL")]
    = "http://127.0.0.1:8000",
    rows: Annotated[int, typer.Option(min=1, max=1000)] = 2,
    card_path: CardOption = None,
) -> None:
    """Send held-out rows to the serving API's POST /predict and print the answer."""
    settings = _settings()
    card = _card(card_path, settings)
    spec = load_spec(card.data.dataset)
    data = prepare(spec, source=card.data.source, holdout_fraction=card.data.holdout_fraction)
    records = api_client.example_records(data.holdout, spec.feature_names, rows=rows)
    answer = api_client.predict(url, records)
    model = answer.get("model", {})
    say(f"{url} served {model.get('name')} version {model.get('version')} "
        f"(run {model.get('run_id')})")
    truth = data.holdout[spec.target.name].head(rows).tolist()
    for record, prediction, actual in zip(records, answer["predictions"], truth, strict=False):
        typer.echo(f"{json.dumps(record)} -> {prediction} (actual {actual})")


@app.command("serve-wait")
def serve_wait_command(
    run_id: Annotated[str, typer.Option(help="the run the server should serve")],
    url: Annotated[str, typer.Option(envvar="SERVING_URL")] = "http://127.0.0.1:8000",
    timeout: Annotated[float, typer.Option(help="seconds")] = 120.0,
) -> None:
    """Wait until the running server has swapped to the given run (exit 1 on timeout)."""
    info = api_client.wait_for_run(url, run_id, timeout=timeout)
    typer.echo(f"{url} now serves {info.get('name')} version {info.get('version')} "
               f"(run {run_id}), loaded at {info.get('loaded_at')}")


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
    settings = _settings()
    if backend is Backend.mysql:
        stack = mysql_stack(home=settings.mlops_home / MYSQL_HOME, host=host, port=port,
                            allowed_hosts=allowed_host or ())
        names = stack.start()
        state = f"started ({', '.join(names)})" if names else "already running"
        typer.echo(f"MLflow server on MariaDB with S3 artifacts and basic auth {state} at "
                   f"{stack.uri} (state in {stack.home})")
        typer.echo(f"admin credentials for the CLI and the serving API: "
                   f"source {stack.client_env_file}")
        return
    service, command = mlflow_server(home=settings.mlops_home, host=host, port=port)
    started = service.start(command)
    state = "started" if started else "already running"
    typer.echo(f"MLflow server {state} at http://{host}:{port} (PID file {service.pidfile})")


@stack_app.command("down")
def stack_down() -> None:
    """Stop what `stack up` started, either backend (by PID file, never by name)."""
    settings = _settings()
    service, _ = mlflow_server(home=settings.mlops_home, host="127.0.0.1", port=0)
    if stop_serving(settings.mlops_home):
        typer.echo("serving API stopped")
    stopped_mysql = stop_mysql_stack(settings.mlops_home / MYSQL_HOME)
    if stopped_mysql:
        typer.echo(f"mysql backend stopped ({', '.join(stopped_mysql)})")
    stopped = service.stop()
    if stopped or not stopped_mysql:
        typer.echo("MLflow server stopped" if stopped else "MLflow server was not running")


app.command("gate")(gitops.gate_command)
app.command("promote")(gitops.promote_command)
app.command("rollback")(gitops.rollback_command)
app.command("drift")(gitops.drift_command)
app.command("pr-comment")(gitops.pr_comment_command)
app.command("serve")(serve_command)


def run(argv: list[str]) -> int:
    """Run the CLI and translate every failure into one line and an exit code."""
    try:
        result = app(args=argv, prog_name="mlops", standalone_mode=False)
    except MlopsError as err:
        typer.echo(f"error: {err}", err=True)
        return err.exit_code
    except MlflowException as err:
        typer.echo(f"error: MLflow: {_first_line(err.message)}", err=True)
        return EXIT_BAD_INPUT
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        return 130
    except typer.TyperException as err:  # typer's own click: bad options and arguments
        message = _usage_message(err)
        if message:  # empty when the help was shown for a bare `mlops`
            typer.echo(f"error: {message}", err=True)
        return EXIT_BAD_INPUT
    return result if isinstance(result, int) else 0


def _usage_message(err: Exception) -> str:
    """`--backend: 'bogus' is not one of ...` from a click-style usage error."""
    text = str(getattr(err, "format_message", lambda: str(err))()).strip()
    if not text:
        return ""
    message = _first_line(text)
    param = getattr(err, "param", None)
    hint = getattr(param, "opts", None) or []
    if hint and hint[0] not in message:
        return f"{hint[0]}: {message}"
    return message


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return lines[0][:300] if lines else "unknown error"


def main() -> None:
    logging.basicConfig(level=os.environ.get("MLOPS_LOG_LEVEL", "WARNING"),
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    sys.exit(run(sys.argv[1:]))
