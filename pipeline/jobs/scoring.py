"""Batch scoring with a registry model: fetch, verify, then one of the engines.

`mlops score` and the inference DAG both call `score_with_model`, so a batch scored by
hand and one scored on a schedule go through the same checks: the version's manifest,
the data-only loading rules, the input's columns, and an output published only once it
is complete.
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
from pipeline.stages.batch_log import batch_log
from pipeline.stages.batch_model import BatchModel
from pipeline.stages.score_batch import ScoreResult, score_files
from pipeline.stages.score_spark import SUBMITTED

ENGINES = ("local", "spark")
"""The engines that load the model themselves (the `api` engine asks the server)."""


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
    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r}: choose one of {', '.join(ENGINES)}")
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
