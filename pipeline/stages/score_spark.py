"""Batch scoring on Apache Spark: `mapInPandas` over the input, the model checked where
it is loaded.

The driver ships the model's files to the executors (`SparkContext.addFile`); each
executor process verifies them against the manifest and the data-only rules
(`BatchModel.load`, the server's rules) before reading the estimator, once per process.
Spark writes the output to a staging folder beside the target, which is renamed into
place only after the job succeeded, so a failed or killed job leaves nothing where
readers look. For an `s3://` target on a cluster, where the executors share no disk
with the driver, the staging folder is a hidden prefix beside the target in the same
bucket, copied into place with `_SUCCESS` last. `local[*]` here; any master
(`--spark-master`) by setting, or `submit` for the one `spark-submit` set (EMR).
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import fsspec
import pandas as pd

from modelio import files as modelfiles
from modelio.identity import ModelIdentity
from pipeline.errors import DataError, RegistryError
from pipeline.stages.batch_files import (
    check_columns,
    discard,
    file_format,
    publish,
    staging_dir,
)
from pipeline.stages.batch_log import batch_log, log_scores
from pipeline.stages.batch_model import BatchModel
from pipeline.stages.score_batch import ScoreResult, key_columns

_LOADED: dict[str, BatchModel] = {}  # per executor process: verified and read once


SUBMITTED = "submit"
"""The master `spark-submit` launched this process with (EMR Serverless runs the job
that way): the session sets none of its own."""


ARROW_BATCH_ROWS = 50_000


def spark_session(master: str) -> Any:
    """A session with Arrow on and the UI off (the caller sets PYSPARK_PYTHON)."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder
    if master != SUBMITTED:
        builder = builder.master(master)
    return (builder.appName("mlops-score")
            .config("spark.ui.enabled", "false")
            .config("spark.sql.execution.arrow.pyspark.enabled", "true")
            # The local engine's batch: fewer, larger hand-overs from the JVM to Python.
            .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(ARROW_BATCH_ROWS))
            .config("spark.sql.session.timeZone", "UTC")
            .getOrCreate())


def _executor_model(folder_name: str, identity: dict[str, str],
                    manifest: dict[str, str] | None, runtime: str) -> BatchModel:
    from pyspark import SparkFiles

    key = f"{folder_name}:{runtime}"
    if key not in _LOADED:
        # One task per core: the model's own thread pools would only compete with the
        # other tasks on the same machine.
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
        folder = Path(SparkFiles.get(folder_name))
        _LOADED[key] = BatchModel.load(folder, identity=ModelIdentity(**identity),
                                       manifest=manifest, runtime=runtime, threads=1)
    return _LOADED[key]


def _ship(spark: Any, folder: Path) -> str:
    """Send the model's files to the executors under a name of their content.

    One process can score with several models in turn (an Airflow worker, the tests):
    Spark keeps every file it was given for the life of the session and refuses a second,
    different one under the same name, and the executors cache the model by that name.
    """
    digest = hashlib.sha256(
        modelfiles.dump_manifest(modelfiles.manifest(folder)).encode()).hexdigest()[:16]
    named = folder.parent / f"model-{digest}"
    if not named.exists():
        shutil.copytree(folder, named)
    spark.sparkContext.addFile(str(named), recursive=True)
    return named.name


def _read(spark: Any, source: str) -> Any:
    """The input, in at least as many partitions as cores (a shuffle only when needed)."""
    cores = spark.sparkContext.defaultParallelism
    if file_format(source) == "parquet":
        frame = spark.read.parquet(source)
        spread = spreads_by_itself(frame.inputFiles(), cores)
    else:
        frame = spark.read.option("header", "true").option("inferSchema", "true").csv(source)
        spread = len(frame.inputFiles()) >= cores
    return frame if spread else frame.repartition(cores)


def spreads_by_itself(files: Sequence[str], cores: int) -> bool:
    """Whether Spark's own splits keep every core busy without a shuffle.

    An input of at least as many files as cores does. Spark splits a Parquet file by
    row group: one file of one row group (what pandas writes up to a million rows)
    would be scored by one task, while a file of many row groups is spread. Reads the
    footers only, and only of an input of fewer files than cores.
    """
    if len(files) >= cores:
        return True
    import pyarrow.parquet as pq

    groups = 0
    for name in files:
        fs, path = fsspec.core.url_to_fs(name.replace("s3a://", "s3://", 1))
        with fs.open(path, "rb") as handle:
            groups += pq.ParquetFile(handle).metadata.num_row_groups
    return groups >= cores


def score_with_spark(*, source: str, output: str, model: BatchModel, master: str = "local[*]",
                     keys: Sequence[str] | None = None, log: str | None = None,
                     log_id: str | None = None) -> ScoreResult:
    """Score `source` on Spark with the verified `model`; publish the output folder.

    With `log` (a folder or an s3:// prefix the executors can reach), each executor
    queues the rows it scores to the prediction log (`batch_log`); a retried task logs
    its rows again.
    """
    spark = spark_session(master)
    frame = _read(spark, source)
    types = {field.name: _arrow_name(field.dataType.simpleString()) for field in frame.schema}
    check_columns(frame.columns, types, model.columns, source=source)
    kept = key_columns(frame.columns, model.feature_names, keys)
    sample = frame.limit(5).toPandas()
    if sample.empty:
        raise DataError(f"score: {source} has no rows")
    out_schema = spark.createDataFrame(
        pd.concat([sample[kept], model.predict(sample)], axis=1)).schema
    shipped = _ship(spark, model.folder)
    folder_name, identity, manifest = shipped, asdict(model.identity), model.manifest
    runtime = "sklearn" if model.twin is None else "auto"  # what the driver chose

    destination = log if not log or log.startswith("s3://") else str(Path(log).resolve())

    def score_partition(parts: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        executor = _executor_model(folder_name, identity, manifest, runtime)
        with batch_log(destination, engine="spark") as prediction_log:
            for part in parts:
                scores = executor.predict(part.reset_index(drop=True))
                if prediction_log is not None:
                    log_scores(prediction_log, features=part[executor.feature_names],
                               scores=scores, runtime=executor.runtime,
                               ids=part[log_id].tolist() if log_id in part.columns else None)
                yield pd.concat([part[kept].reset_index(drop=True), scores], axis=1)

    # In local mode the executors share this machine's disk; on a cluster they do not.
    staging = staging_dir(output, shared=not spark.sparkContext.master.startswith("local"))
    try:
        scored = frame.mapInPandas(score_partition, schema=out_schema)
        try:
            scored.write.mode("overwrite").parquet(staging)
        except Exception as err:  # a failure inside an executor comes back as Spark's error
            raise _job_failure(err) from err
        # Counted from what was written (Parquet footers only: no second scoring pass).
        rows = spark.read.parquet(staging).count()
        publish(staging, output)
    except BaseException:
        discard(staging)
        raise
    # One verified model scores every row of a Spark job: its version is the only one.
    return ScoreResult(output=output, rows=rows, engine="spark",
                       model_versions=[model.version], runtime=model.runtime)


def _job_failure(err: Exception) -> Exception:
    """Our own one-line error when an executor raised one (a refused model, bad rows)."""
    text = str(err)
    for kind in (RegistryError, DataError):
        marker = f"{kind.__name__}: "
        if marker in text:
            line = text.split(marker, 1)[1].splitlines()[0].strip()
            return kind(f"score: on a Spark executor: {line}")
    first = next((line.strip() for line in text.splitlines() if line.strip()), "failed")
    return DataError(f"score: the Spark job failed: {first[:200]}")


def _arrow_name(spark_type: str) -> str:
    """Spark's type names in the vocabulary `check_columns` reads (text vs numbers)."""
    return "string" if spark_type == "string" else spark_type
