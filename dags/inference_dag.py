"""Batch inference on a schedule: score a batch through the serving API.

One task calls `pipeline.stages.score_batch.score_batch` with the serving API's client
(`pipeline.serving_client`): it waits for `GET /ready`, reads the
batch (CSV or Parquet, local or s3://), posts it to `POST /predict` in chunks with
timeouts and retries, and writes every input row with its prediction and the model
version that produced it to one file per logical date. Re-running a date replaces
that file. The serving API always answers with the registry's Production model, so
this DAG needs no MLflow access of its own.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from _defaults import BATCH_INPUT, CARD, INFERENCE_SCHEDULE, SCORES_DIR, SERVING_URL
from airflow.sdk import Param, dag, get_current_context, task

from pipeline.gitops.card import load_card
from pipeline.serving_client import RetryPolicy, ServingClient
from pipeline.stages.datasets import load_spec
from pipeline.stages.score_batch import score_batch


@dag(
    dag_id="mlops_inference",
    schedule=INFERENCE_SCHEDULE,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    tags=["mlops", "inference"],
    params={
        "input": Param(BATCH_INPUT, type="string",
                       description="the batch: a CSV/Parquet path or an s3:// URI"),
        "output_dir": Param(SCORES_DIR, type="string",
                            description="folder or s3:// prefix; one file per logical date"),
        "serving_url": Param(SERVING_URL, type="string", description="the serving API"),
        "card": Param(CARD, type="string",
                      description="model_card.yaml: its dataset names the feature columns"),
        "chunk_size": Param(500, type="integer", minimum=1, maximum=10_000),
        "timeout_seconds": Param(30.0, type="number", exclusiveMinimum=0),
        "attempts": Param(4, type="integer", minimum=1, maximum=20),
        "backoff_seconds": Param(1.0, type="number", minimum=0),
    },
    doc_md=__doc__,
)
def mlops_inference() -> None:
    # No Airflow-level retries: the client already retries each call with backoff,
    # and retrying the whole task would multiply those waits.
    @task(retries=0)
    def score() -> dict[str, Any]:
        context = get_current_context()
        params = context["params"]
        dag_run = context["dag_run"]
        logical_date = context.get("logical_date") or dag_run.run_after
        spec = load_spec(load_card(Path(params["card"])).data.dataset)
        retry = RetryPolicy(attempts=params["attempts"], backoff_seconds=params["backoff_seconds"],
                            timeout_seconds=params["timeout_seconds"])
        client = ServingClient(params["serving_url"], retry=retry)
        result = score_batch(source=params["input"], output_dir=params["output_dir"],
                             logical_date=logical_date, scorer=client,
                             features=spec.feature_names, chunk_size=params["chunk_size"])
        return result.as_dict()

    score()


inference_dag = mlops_inference()
