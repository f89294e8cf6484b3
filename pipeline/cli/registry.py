"""`mlops status` and `mlops propose`: the registry's state and the card's candidate."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from pipeline.cli.app import CardOption, app, settings_and_card
from pipeline.gitops import registry
from pipeline.gitops.card import write_candidate_run_id
from pipeline.settings import load_settings


@app.command("status")
def status_command(
    card_path: CardOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Show the registered model, its Production version, run ID and metrics."""
    settings, card = settings_and_card(card_path)
    state = registry.describe(registry.reader(settings.mlflow_tracking_uri), card.model.name)
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
    path = card_path or load_settings().mlops_card
    write_candidate_run_id(path, run_id)
    typer.echo(f"{path}: candidate_run_id is now {run_id}")
