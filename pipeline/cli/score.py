"""`mlops score INPUT OUTPUT`: a batch file through the model, on one of three engines.

`local` scores in this process in bounded-memory batches; `api` sends the rows to the
serving API; `spark` runs on Apache Spark (local mode by default). The model (Production,
or `--model-uri`) is checked like the server checks it, wherever it is loaded.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from pipeline import progress
from pipeline.cli.app import CardOption, ServingUrlOption, app, say, settings_and_card
from pipeline.serving_client import DEFAULT_URL

if TYPE_CHECKING:
    from pipeline.stages.score_batch import ScoreResult


class Runtime(StrEnum):
    auto = "auto"
    sklearn = "sklearn"


class Engine(StrEnum):
    local = "local"
    api = "api"
    spark = "spark"


@app.command("score")
def score_command(
    source: Annotated[str, typer.Argument(help="CSV/Parquet file or folder, local or s3://")],
    output: Annotated[str, typer.Argument(help="output folder of Parquet parts")],
    engine: Annotated[Engine, typer.Option(help="local, api or spark")] = Engine.local,
    model_uri: Annotated[str | None, typer.Option(
        "--model-uri", help="models:/NAME/V, models:/NAME@ALIAS or runs:/ID/model "
        "(default: the card's model at its production alias)")] = None,
    key: Annotated[list[str] | None, typer.Option(
        "--key", help="input column to keep beside the scores (repeatable; default: the "
        "columns that are not features)")] = None,
    batch_rows: Annotated[int, typer.Option(min=1, max=5_000_000,
                                            help="rows per batch (bounds memory)")] = 50_000,
    spark_master: Annotated[str, typer.Option(
        "--spark-master", envvar="MLOPS_SPARK_MASTER",
        help="spark: the master URL, or `submit` for the one spark-submit set (EMR)")]
    = "local[*]",
    runtime: Annotated[Runtime, typer.Option(
        help="local, spark: auto scores with the version's verified compiled twin when it "
        "has one (as the server does), sklearn always with sklearn")] = Runtime.auto,
    prediction_log: Annotated[str, typer.Option(
        "--prediction-log", envvar="PREDICTION_LOG",
        help="local, spark: also log every scored row to this folder or s3:// prefix, as "
        "the server does, for `mlops monitor` (api: the server logs them)")] = "",
    url: ServingUrlOption = DEFAULT_URL,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    card_path: CardOption = None,
) -> None:
    """Score a batch file with the Production model (or --model-uri); write Parquet."""
    from pipeline.jobs.scoring import score, spark_python

    settings, card = settings_and_card(card_path)
    if engine is Engine.spark:
        # Spark starts its Python workers from PYSPARK_PYTHON: this interpreter, whose
        # packages (the model's loader among them) the workers need.
        os.environ.update(spark_python())
    with _progress(as_json) as on_rows:
        result = score(engine=engine.value, source=source, output=output, card=card,
                       tracking_uri=settings.mlflow_tracking_uri, model_uri=model_uri,
                       serving_url=url, keys=key, batch_rows=batch_rows,
                       spark_master=spark_master, runtime=runtime.value, progress=on_rows,
                       announce=say, prediction_log=prediction_log.strip() or None)
    _report(result, as_json)


@contextmanager
def _progress(quiet: bool) -> Iterator[Callable[[int], None] | None]:
    """Rows scored so far, on a terminal only: CI logs and --json stay line-oriented.

    The model's download (a stage of its own) is drawn by the same display.
    """
    if quiet or not progress.on_terminal():
        yield None
        return
    with progress.shown_on_terminal(), progress.steps("rows scored", None) as advance:
        yield advance


def _report(result: ScoreResult, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(result.as_dict()))
        return
    runtime = f" on {result.runtime}" if result.runtime else ""
    typer.echo(f"scored {result.rows:,} rows with the {result.engine} engine{runtime} "
               f"(model version(s) {', '.join(result.model_versions)}) into {result.output}")
