"""Batch scoring: read a file in batches, score each, publish the output once.

Every engine that scores in this process goes through `score_files`: the rows are
scored by a `Predict` the caller passes in (a model loaded here, or the serving API's
client through `api_predict`), so this stage knows no HTTP. Guarantees:

- every input row gets exactly one score and the model version that produced it (a
  model swapped mid-batch shows up as two versions, never as a silent mix);
- the output is written to a staging folder and published into place only once it is
  complete, so re-running the same logical date replaces it and a failed run leaves
  nothing half-written;
- memory is bounded by the batch size, whatever the file's.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import DataError
from pipeline.stages.batch_files import (
    InputColumn,
    arrow_types,
    batches,
    check_columns,
    discard,
    open_dataset,
    publish,
    staging_dir,
)
from pipeline.stages.batch_log import log_scores
from pipeline.stages.batch_model import PROBABILITY_PREFIX, model_inputs
from serving.prediction_log import PredictionLog

SCORE_COLUMNS = ("prediction", "model_name", "model_version", "model_run_id")


class Scorer(Protocol):
    """What scores rows: `pipeline.serving_client.ServingClient` is one."""

    def wait_ready(self) -> dict[str, Any]: ...

    def score(self, rows: pd.DataFrame
              ) -> tuple[list[Any], dict[str, str], dict[str, list[float]]]:
        """Predictions for the rows, the model that made them (name, version, run ID),
        and a classifier's probabilities by class label when asked (else empty)."""
        ...


# --- the pure core ---------------------------------------------------------------------


def chunk_bounds(rows: int, size: int) -> Iterator[tuple[int, int]]:
    """[start, stop) of consecutive chunks covering `rows` rows."""
    if size < 1:
        raise ValueError("chunk size must be at least 1")
    for start in range(0, rows, size):
        yield start, min(start + size, rows)


def select_features(frame: pd.DataFrame, features: Sequence[str] | None) -> pd.DataFrame:
    """The columns the model takes, in its order; a missing one is the batch's fault."""
    if features is None:
        return frame
    missing = [name for name in features if name not in frame.columns]
    if missing:
        raise DataError(f"batch: missing feature column(s) {', '.join(missing)}")
    return frame[list(features)]


def date_key(logical_date: dt.datetime) -> str:
    """A file-system and S3 safe key of a logical date, in UTC: 20261127T000000Z."""
    if logical_date.tzinfo is None:
        raise ValueError("logical_date must be timezone-aware")
    return logical_date.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def dated_output(output_dir: str, logical_date: dt.datetime) -> str:
    """The folder of parts of one logical date's scores (every engine), replaced on
    re-runs."""
    return f"{output_dir.rstrip('/')}/logical_date={date_key(logical_date)}/scores"


# --- scoring through the API -------------------------------------------------------------------


def score_frame(frame: pd.DataFrame, *, scorer: Scorer,
                features: Sequence[str] | None = None, chunk_size: int = 500) -> pd.DataFrame:
    """The input rows plus one prediction each (and a classifier's probabilities, when
    the scorer answers them) and the model that produced it."""
    inputs = select_features(frame, features)
    parts: list[pd.DataFrame] = []
    for start, stop in chunk_bounds(len(inputs), chunk_size):
        predictions, model, probabilities = scorer.score(inputs.iloc[start:stop])
        part = pd.DataFrame({"prediction": predictions,
                             **{f"{PROBABILITY_PREFIX}{label}": values
                                for label, values in probabilities.items()}},
                            index=frame.index[start:stop])
        for key, value in model.items():
            part[key] = value
        parts.append(part)
    scores = pd.concat(parts)
    out = frame.copy()
    for column in score_columns(scores):
        out[column] = scores[column]
    return out.reset_index(drop=True)


def score_columns(scores: pd.DataFrame) -> list[str]:
    """The prediction, any probabilities, then the model: the order every engine writes."""
    probabilities = [c for c in scores.columns if c.startswith(PROBABILITY_PREFIX)]
    return ["prediction", *probabilities, *SCORE_COLUMNS[1:]]


@dataclass(frozen=True)
class ScoreResult:
    """What `mlops score` reports: where, how many rows, which model versions."""

    output: str
    rows: int
    engine: str
    model_versions: list[str]
    runtime: str | None = None
    """onnx or sklearn for the engines that load the model (local, spark); None for api,
    where the server chooses (its `/model` says which)."""

    def as_dict(self) -> dict[str, Any]:
        return {"output": self.output, "rows": self.rows, "engine": self.engine,
                "model_versions": self.model_versions, "runtime": self.runtime}


Predict = Callable[[pd.DataFrame], pd.DataFrame]
"""Rows in, prediction and model columns out (same index): a BatchModel, or the API."""


def _version_order(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (10**9, version)


def key_columns(names: Sequence[str], features: Sequence[str],
                keys: Sequence[str] | None) -> list[str]:
    """The input columns to keep beside the scores: the given keys, else every column
    that is not a feature (ids, dates), else all of them (so rows stay identifiable)."""
    if keys:
        missing = [key for key in keys if key not in names]
        if missing:
            raise DataError(f"score: --key {missing[0]}: no such column in the input")
        return list(keys)
    others = [name for name in names if name not in features]
    return others or list(names)


def score_files(*, source: str, output: str, predict: Predict, columns: Sequence[InputColumn],
                engine: str, keys: Sequence[str] | None = None, batch_rows: int = 50_000,
                progress: Callable[[int], None] | None = None,
                runtime: str | None = None, workers: int = 1,
                log: PredictionLog | None = None, log_id: str | None = None) -> ScoreResult:
    """Read in batches, score each, write Parquet parts; publish only a finished output.

    With `workers` > 1, that many batches are scored at once in threads (the twin and
    Arrow release the GIL), while this thread reads the next and writes the finished
    ones in input order: at most `workers` + 2 batches are held, so memory stays bounded
    by the batch size. With `log`, every scored row is also queued to the prediction
    log (`batch_log`), with the `log_id` column's value as the row's ID when present.
    """
    dataset = open_dataset(source)
    names = dataset.schema.names
    check_columns(names, arrow_types(dataset.schema), columns, source=source)
    kept = key_columns(names, [c.name for c in columns], keys)

    def scored_table(batch: pa.RecordBatch) -> pa.Table:
        frame = batch.to_pandas()
        scores = predict(frame)
        if log is not None:
            log_scores(log, features=frame[[c.name for c in columns]], scores=scores,
                       runtime=runtime or "unknown",
                       ids=frame[log_id].tolist() if log_id in frame.columns else None)
        return pa.Table.from_pandas(pd.concat([frame[kept], scores], axis=1),
                                    preserve_index=False)

    staging = staging_dir(output)
    Path(staging).mkdir(parents=True, exist_ok=True)
    rows, writer = 0, None
    versions: set[str] = set()
    try:
        for table in _in_order(scored_table, batches(dataset, rows=batch_rows), workers):
            if writer is None:
                writer = pq.ParquetWriter(str(Path(staging) / "part-00000.parquet"),
                                          table.schema)
            writer.write_table(table)
            rows += table.num_rows
            versions.update(str(v) for v in table.column("model_version").unique().to_pylist())
            if progress is not None:
                progress(table.num_rows)
        if writer is not None:
            writer.close()
            writer = None
        if rows == 0:
            raise DataError(f"score: {source} has no rows")
        publish(staging, output)
    except BaseException:
        if writer is not None:
            writer.close()
        discard(staging)
        raise
    return ScoreResult(output=output, rows=rows, engine=engine,
                       model_versions=sorted(versions, key=_version_order), runtime=runtime)


def _in_order(work: Callable[[Any], Any], items: Iterator[Any], workers: int) -> Iterator[Any]:
    """`work` of each item, in the items' order, with up to `workers` running at once."""
    if workers <= 1:
        yield from map(work, items)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="score") as pool:
        running: deque[Future[Any]] = deque()
        try:
            for item in items:
                running.append(pool.submit(work, item))
                if len(running) > workers:
                    yield running.popleft().result()
            while running:
                yield running.popleft().result()
        finally:
            for future in running:
                future.cancel()


def api_predict(scorer: Scorer, columns: Sequence[InputColumn], *, chunk_rows: int) -> Predict:
    """The serving API as a `Predict`: chunks of the features to `/predict`."""

    def predict(frame: pd.DataFrame) -> pd.DataFrame:
        scored = score_frame(model_inputs(frame, columns), scorer=scorer,
                             chunk_size=chunk_rows)
        return scored[score_columns(scored)].set_axis(frame.index)

    return predict
