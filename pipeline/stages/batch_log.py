"""Batch scoring's rows into the prediction log: the record the server writes, by the
server's own writer (`serving.prediction_log`), so `mlops monitor` reads both alike.

The `local` and `spark` engines log the rows they score in-process; the `api` engine
does not, since the server that scores its rows logs them (logging them here too would
count each row twice). Each batch (or Spark partition part) is one "request" of the
log: a request ID of its own, rows numbered from 0 within it, and the caller's ID of
each row when the input has the card's ID column.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pandas as pd

from pipeline.stages.batch_model import PROBABILITY_PREFIX
from serving.prediction_log import ModelInfo, PredictionLog


@contextmanager
def batch_log(destination: str | None, *, engine: str) -> Iterator[PredictionLog | None]:
    """The log of one scoring job (None when `destination` is empty), closed at the end:
    every row scored so far is written, even when the job fails afterwards."""
    if not destination:
        yield None
        return
    # Batch scoring waits for room instead of dropping rows: no request waits on it.
    with PredictionLog(destination, source=f"score:{engine}", block=True,
                       max_queue_rows=200_000, flush_rows=50_000) as log:
        yield log


def log_scores(log: PredictionLog, *, features: pd.DataFrame, scores: pd.DataFrame,
               runtime: str, ids: Sequence[Any] | None = None) -> None:
    """Queue one scored batch: `scores` as the engines build them (prediction, any
    `probability_<label>` columns, model name, version and run ID)."""
    if scores.empty:
        return
    probability_columns = [c for c in scores.columns if c.startswith(PROBABILITY_PREFIX)]
    model = ModelInfo(name=str(scores["model_name"].iloc[0]),
                      version=str(scores["model_version"].iloc[0]),
                      run_id=str(scores["model_run_id"].iloc[0]), runtime=runtime,
                      classes=tuple(c.removeprefix(PROBABILITY_PREFIX)
                                    for c in probability_columns) or None)
    probabilities = scores[probability_columns].to_numpy() if probability_columns else None
    log.record(model, f"batch-{uuid.uuid4().hex}", features.reset_index(drop=True),
               scores["prediction"].to_numpy(), probabilities, ids=ids)
