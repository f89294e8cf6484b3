"""`mlops train`: one logged run on the card's dataset, optionally the first Production."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from pipeline import progress
from pipeline.cli.app import CardOption, app, say, settings_and_card, use_tracking_server
from pipeline.errors import MlopsError
from pipeline.gitops import registry
from pipeline.gitops.card import prepare_data
from pipeline.stages import DEFAULT_ESTIMATOR
from pipeline.stages.datasets import load_spec


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
    registered_by: Annotated[str | None, typer.Option(
        help="with --register: who asked (a DAG run, a job), kept as the version's "
             "registered_by tag")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    card_path: CardOption = None,
) -> None:
    """Train one model on the card's dataset and log it as an MLflow run."""
    # scikit-learn (about 1 s) is imported by the commands that fit, not by every one
    from pipeline.jobs.training import tag_registered_by
    from pipeline.stages.train import make_estimator, parse_params, train

    if promote and not register:
        raise MlopsError("--promote needs --register")
    if registered_by is not None and not register:
        raise MlopsError("--registered-by needs --register")
    settings, card = settings_and_card(card_path)
    spec = load_spec(card.data.dataset)
    params = parse_params(param or [])
    built = make_estimator(spec.task, estimator, params)
    mlflow_client = registry.client(settings.mlflow_tracking_uri)
    if promote:
        registry.refuse_if_production_exists(mlflow_client, card.model.name)
    use_tracking_server(settings)
    with progress.shown_on_terminal(quiet=as_json):
        with progress.stage("data: read, validate, cleanse, split"):
            data = prepare_data(card)
        say(f"data: {data.report.rows_in} rows read, {data.report.rows_out} kept after "
            f"cleansing, {len(data.train)} train / {len(data.validation)} validation / "
            f"{len(data.test)} test, sealed for the gate (hash {data.data_hash})")
        result = train(data=data, estimator=built, estimator_name=estimator, params=params,
                       experiment=settings.mlops_experiment,
                       twin_tolerance=card.model.twin_tolerance)
    summary: dict[str, Any] = {"run_id": result.run_id, "estimator": estimator,
                               "metrics": result.metrics, "data_hash": result.data_hash}
    link = registry.run_url(settings.mlflow_tracking_uri, result.run_id)
    say(f"logged run {result.run_id}: {link}")
    say(f"trained {estimator}: "
        + ", ".join(f"{k}={v:.4g}" for k, v in result.metrics.items()))
    summary["twin"] = result.twin
    say("compiled twin: onnx, verified on the validation rows (promotion compiles it again "
        "from the registered model)" if result.twin == "onnx"
        else f"no compiled twin ({result.twin}): it would serve through sklearn")
    if register and promote:
        from pipeline.stages.twin import derive

        version = registry.bootstrap_production(
            mlflow_client, card.model.name, result.run_id,
            tracking_uri=settings.mlflow_tracking_uri,
            derive_twin=lambda model, example: derive(
                model, data, tolerance=card.model.twin_tolerance, example=example))
    elif register:
        version = registry.register_run(mlflow_client, card.model.name, result.run_id)
    if register:
        if registered_by is not None:
            tag_registered_by(mlflow_client, card.model.name, version.version, registered_by)
        summary["version"] = version.version
        say(f"registered {card.model.name} version {version.version}")
        if promote:
            summary["production"] = version.version
            say(f"{card.model.name} version {version.version} is now Production "
                f"(alias {registry.PRODUCTION})")
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        typer.echo(result.run_id)


