"""`mlops train`: one logged run on the card's dataset, optionally the first Production."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from pipeline import progress
from pipeline.cli.app import CardOption, app, say, settings_and_card, use_tracking_server
from pipeline.gitops import registry
from pipeline.stages import DEFAULT_ESTIMATOR


@app.command("train")
def train_command(
    estimator: Annotated[str, typer.Option(help="a built-in estimator (dummy, ridge or "
                                           "logistic, hist_gradient_boosting, random_forest, "
                                           "xgboost, lightgbm) or MODULE:FACTORY, a function "
                                           "importable from the current folder that returns "
                                           "an unfitted estimator")]
    = DEFAULT_ESTIMATOR,
    param: Annotated[list[str] | None, typer.Option(
        "--param", help="hyperparameter KEY=VALUE (repeatable)")] = None,
    register: Annotated[bool, typer.Option(help="register the model under model.name")] = False,
    promote: Annotated[bool, typer.Option(
        help="with --register: make it Production when the registry has none yet")] = False,
    registered_by: Annotated[str | None, typer.Option(
        help="with --register: who asked (a DAG run, a job), kept as the version's "
             "registered_by tag")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    card_path: CardOption = None,
) -> None:
    """Train one model on the card's dataset and log it as an MLflow run."""
    # scikit-learn (about 1 s) is imported by the commands that fit, not by every one
    from pipeline.jobs.training import train_and_register
    from pipeline.stages.train import parse_params

    settings, card = settings_and_card(card_path)
    params = parse_params(param or [])
    use_tracking_server(settings)
    with progress.shown_on_terminal(quiet=as_json):
        done = train_and_register(card, settings, estimator=estimator, params=params,
                                  register=register, promote=promote,
                                  registered_by=registered_by, root=Path.cwd(), say=say)
    result = done.result
    summary: dict[str, Any] = {"run_id": result.run_id, "estimator": estimator,
                               "metrics": result.metrics, "data_hash": result.data_hash}
    link = registry.run_url(settings.mlflow_tracking_uri, result.run_id)
    say(f"logged run {result.run_id}: {link}")
    say(f"trained {estimator}: "
        + ", ".join(f"{k}={v:.4g}" for k, v in result.metrics.items()))
    summary["twin"] = result.twin
    say("compiled twin: onnx, verified on the validation rows (promotion compiles it again "
        "from the registered model)" if result.twin == "onnx"
        else f"no compiled twin ({result.twin}): it would serve through its own runtime")
    if done.version is not None:
        summary["version"] = done.version.version
        say(f"registered {card.model.name} version {done.version.version}")
        if done.production:
            summary["production"] = done.version.version
            say(f"{card.model.name} version {done.version.version} is now Production "
                f"(alias {registry.PRODUCTION})")
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        typer.echo(result.run_id)
