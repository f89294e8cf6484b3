"""The `mlops` app: its command groups, the shared options, and the one place where
failures become one line and an exit code.

Commands (in the sibling modules) only translate: they parse options, call library
functions and print what happened. Exit codes: 0 success, 1 a negative verdict, 2 bad
input or a failed precondition, 3 an unexpected failure (the line carries a reference
to the traceback in the log), 130 interrupted.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
import uuid
from pathlib import Path
from typing import Annotated

import typer

from pipeline import progress
from pipeline.errors import EXIT_BAD_INPUT, EXIT_UNEXPECTED, MlopsError, first_line
from pipeline.gitops.card import ModelCard, load_card
from pipeline.settings import Settings, load_settings

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
ServingUrlOption = Annotated[str, typer.Option(
    "--url", envvar="MLOPS_SERVING_URL", help="serving API base URL ($MLOPS_SERVING_URL)")]


def say(message: str) -> None:
    """Progress for people goes to stderr, so stdout stays clean for --json and run IDs.

    While a progress display is drawn, the line goes above it (else the two garble).
    """
    if not progress.line(message):
        typer.echo(message, err=True)


def settings_and_card(card_path: Path | None) -> tuple[Settings, ModelCard]:
    """The CLI's settings and the card they (or --card) name, read now."""
    settings = load_settings()
    return settings, load_card(card_path or settings.mlops_card)


def use_tracking_server(settings: Settings) -> None:
    """Point MLflow's fluent API at the tracking server: done here, at the edge, only."""
    import mlflow  # seconds to import: only the commands that talk to MLflow pay for it

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)


def run(argv: list[str]) -> int:
    """Run the CLI and translate every failure into one line and an exit code."""
    try:
        result = app(args=argv, prog_name="mlops", standalone_mode=False)
    except MlopsError as err:
        typer.echo(f"error: {err}", err=True)
        return err.exit_code
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        return 130
    except typer.TyperException as err:  # typer's own click: bad options and arguments
        message = _usage_message(err)
        if message:  # empty when the help was shown for a bare `mlops`
            typer.echo(f"error: {message}", err=True)
        return EXIT_BAD_INPUT
    except Exception as err:
        mlflow_message = _mlflow_message(err)
        if mlflow_message is not None:
            typer.echo(f"error: MLflow: {first_line(mlflow_message)}", err=True)
            return EXIT_BAD_INPUT
        return _unexpected(err)
    return result if isinstance(result, int) else 0


def _mlflow_message(err: Exception) -> str | None:
    """MLflow's own message when `err` is an MlflowException, else None.

    Checked without importing MLflow (seconds): if no command imported it, no
    MlflowException can have been raised.
    """
    exceptions = sys.modules.get("mlflow.exceptions")
    if exceptions is None or not isinstance(err, exceptions.MlflowException):
        return None
    return str(err.message)


def _unexpected(err: Exception) -> int:
    """One line with a reference; the traceback goes to the log file, not the terminal."""
    reference = uuid.uuid4().hex[:12]
    try:
        log_path = load_settings().mlops_home / "mlops-errors.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("a", encoding="utf-8") as handle:
            handle.write(f"--- ref {reference}: mlops {' '.join(sys.argv[1:])}\n")
            handle.write("".join(traceback.format_exception(err)))
        where = f"traceback in {log_path}"
    except (OSError, MlopsError):
        where = "set MLOPS_LOG_LEVEL=DEBUG for the traceback"
    log.debug("unexpected failure (ref %s)", reference, exc_info=err)
    typer.echo(f"error: unexpected {type(err).__name__}: {first_line(err)} "
               f"(ref {reference}; {where})", err=True)
    return EXIT_UNEXPECTED


def _usage_message(err: Exception) -> str:
    """`--backend: 'bogus' is not one of ...` from a click-style usage error."""
    text = str(getattr(err, "format_message", lambda: str(err))()).strip()
    if not text:
        return ""
    message = first_line(text)
    param = getattr(err, "param", None)
    hint = getattr(param, "opts", None) or []
    if hint and hint[0] not in message:
        return f"{hint[0]}: {message}"
    return message


def main() -> None:
    logging.basicConfig(level=os.environ.get("MLOPS_LOG_LEVEL", "WARNING"),
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    # MLflow reads these from the environment; the CLI's output is ours to shape.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    sys.exit(run(sys.argv[1:]))
