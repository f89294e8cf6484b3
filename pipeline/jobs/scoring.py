"""Batch scoring: one `score` for every engine, by hand or on a schedule.

`mlops score` and the inference DAG both call `score`, so a batch scored by hand and
one scored on a schedule go through the same path: `local` and `spark` fetch and verify
the model here (the version's manifest, the data-only loading rules) and score it with
the same runtime as the server; `api` sends the rows to the serving API. Every engine
checks the input's columns, bounds memory by the batch, and publishes its output only
once it is complete.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from mlflow.tracking import MlflowClient

import modelio
from pipeline.errors import RegistryError
from pipeline.gitops import registry
from pipeline.gitops.card import ModelCard
from pipeline.serving_client import DEFAULT_URL, RetryPolicy, ServingClient
from pipeline.stages.batch_files import InputColumn
from pipeline.stages.batch_log import batch_log
from pipeline.stages.batch_model import BatchModel
from pipeline.stages.datasets import load_spec
from pipeline.stages.score_batch import ScoreResult, api_predict, score_files
from pipeline.stages.score_spark import SUBMITTED

ENGINES = ("local", "api", "spark")
API_CHUNK_ROWS = 1000
"""Rows per `/predict` call of the api engine (the server's limit is higher)."""


def score(*, engine: str, source: str, output: str, card: ModelCard, tracking_uri: str,
          model_uri: str | None = None, serving_url: str = DEFAULT_URL,
          retry: RetryPolicy | None = None, keys: Sequence[str] | None = None,
          batch_rows: int = 50_000, chunk_rows: int = API_CHUNK_ROWS,
          spark_master: str = "local[*]", runtime: str = "auto",
          progress: Callable[[int], None] | None = None,
          announce: Callable[[str], None] | None = None,
          prediction_log: str | None = None) -> ScoreResult:
    """`source` scored into `output` on `engine` with the card's Production model (or
    `model_uri`); with `prediction_log`, every row the local and spark engines score is
    recorded there too (the api engine's rows are recorded by the server)."""
    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r}: choose one of {', '.join(ENGINES)}")
    if engine == "api":
        spec = load_spec(card.data.dataset)
        columns = [InputColumn(c.name, "double" if c.kind == "numeric" else "string")
                   for c in spec.features]
        return score_through_api(source=source, output=output, url=serving_url,
                                 columns=columns,
                                 probabilities=spec.task == "classification", retry=retry,
                                 keys=keys, batch_rows=batch_rows, chunk_rows=chunk_rows,
                                 progress=progress)
    return score_with_model(registry.client(tracking_uri), card.model.name, source=source,
                            output=output, engine=engine, tracking_uri=tracking_uri,
                            model_uri=model_uri, keys=keys, batch_rows=batch_rows,
                            spark_master=spark_master, runtime=runtime, progress=progress,
                            announce=announce, prediction_log=prediction_log,
                            log_id=card.monitoring.id_column)


def score_through_api(*, source: str, output: str, url: str, columns: Sequence[InputColumn],
                      probabilities: bool = False, retry: RetryPolicy | None = None,
                      keys: Sequence[str] | None = None, batch_rows: int = 50_000,
                      chunk_rows: int = API_CHUNK_ROWS,
                      progress: Callable[[int], None] | None = None) -> ScoreResult:
    """The api engine: the serving API must be ready before a row is read, then each
    batch goes to `/predict` in chunks (a classifier's probabilities asked for when
    `probabilities`); each row is written with the version that answered it."""
    client = ServingClient(url, retry=retry or RetryPolicy(), probabilities=probabilities)
    client.wait_ready()
    return score_files(source=source, output=output, engine="api", keys=keys,
                       predict=api_predict(client, columns, chunk_rows=chunk_rows),
                       columns=columns, batch_rows=batch_rows, progress=progress)


def score_with_model(mlflow_client: MlflowClient, model_name: str, *, source: str,
                     output: str, engine: str, tracking_uri: str, model_uri: str | None = None,
                     keys: Sequence[str] | None = None, batch_rows: int = 50_000,
                     spark_master: str = "local[*]", runtime: str = "auto",
                     progress: Callable[[int], None] | None = None,
                     announce: Callable[[str], None] | None = None,
                     prediction_log: str | None = None,
                     log_id: str | None = None) -> ScoreResult:
    """Production (or `model_uri`) scores `source` into `output` on `engine`; every
    scored row goes to `prediction_log` too (a folder or an s3:// prefix) when given."""
    if engine not in ("local", "spark"):
        raise ValueError(f"engine {engine!r}: the model is loaded here by local or spark")
    with tempfile.TemporaryDirectory(prefix="mlops-score-") as tmp:
        uri = model_uri or f"models:/{model_name}@{registry.PRODUCTION}"
        wanted = registry.resolve(mlflow_client, uri, name=model_name)
        opened = registry.fetch_model(mlflow_client, wanted, Path(tmp) / "model",
                                      tracking_uri=tracking_uri)
        # One twin thread per batch, a batch per core: faster than every core on one batch.
        try:
            model = BatchModel.of(opened, runtime=runtime, threads=1)
        except modelio.ModelRefused as err:
            raise RegistryError(f"{opened.identity.label}: model refused: {err}") from err
        if announce is not None:
            who = opened.identity
            announce(f"score: {who.label} (run {who.run_id}), verified, on the {engine} "
                     f"engine with {_runtime_line(model)}")
        if engine == "spark":
            from pipeline.stages.score_spark import score_with_spark

            return score_with_spark(source=source, output=output, model=model,
                                    master=spark_master, keys=keys, log=prediction_log,
                                    log_id=log_id)
        with batch_log(prediction_log, engine="local") as log:
            return score_files(source=source, output=output, engine="local",
                               predict=model.predict, columns=model.columns, keys=keys,
                               batch_rows=batch_rows, progress=progress,
                               runtime=model.runtime, workers=os.cpu_count() or 1,
                               log=log, log_id=log_id)


def _runtime_line(model: BatchModel) -> str:
    if model.twin is not None:
        return "its compiled twin (onnxruntime)"
    return f"sklearn ({model.why_no_twin})"


def spark_python() -> dict[str, str]:
    """What Spark's Python workers need in the environment: this interpreter (set by the
    caller, at its edge: a command or a DAG task)."""
    return {"PYSPARK_PYTHON": os.environ.get("PYSPARK_PYTHON") or sys.executable}


def production_model_uri(mlflow_client: MlflowClient, model_name: str) -> str:
    """`models:/NAME/V` of Production now: a job submitted elsewhere scores this version
    even if the alias moves while it waits for capacity."""
    version = registry.production_version(mlflow_client, model_name)
    if version is None:
        raise RegistryError(f"{model_name} has no {registry.PRODUCTION} version to "
                                     "score with")
    return f"models:/{model_name}/{version.version}"


def spark_job_arguments(*, source: str, output: str, model_uri: str, card: str) -> list[str]:
    """The `mlops score` command line a remote Spark job (EMR Serverless) runs: the same
    command, checks and engine as on this machine."""
    return ["score", source, output, "--engine", "spark", "--model-uri", model_uri,
            "--spark-master", SUBMITTED, "--card", card, "--json"]
