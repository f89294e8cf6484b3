"""Micro-batching: concurrent requests share a predict call, never a model or an error."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pandas as pd
import pytest

from serving import scoring
from serving.batching import MicroBatcher
from tests.serving.helpers import ROW, Linear, loaded


class Picky(Linear):
    """Fails on any frame holding a row with count 13."""

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        if (frame["count"] == 13).any():
            raise ValueError("13")
        return super().predict(frame)


class Doubling(Linear):
    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return super().predict(frame) * 2


def rows(model: scoring.LoadedModel, count: int, size: int = 1) -> list[Any]:
    records = [{**ROW, "count": count}] * size
    return scoring.rows_from_predict_body(
        scoring.orjson.dumps({"records": records}), model)


def test_each_request_gets_its_own_predictions_from_its_own_model() -> None:
    old, new = loaded(Linear(), version="1"), loaded(Doubling(), version="2", max_rows=50)

    async def scenario() -> list[Any]:
        batcher = MicroBatcher()
        try:
            jobs = [batcher.predict(old if i % 2 else new, rows(new, i, size=1 + i % 3))
                    for i in range(30)]
            return await asyncio.gather(*jobs)
        finally:
            batcher.close()

    results = asyncio.run(scenario())
    for i, predictions in enumerate(results):
        expected = (500.0 + i) * (1 if i % 2 else 2)
        assert list(predictions) == [expected] * (1 + i % 3)


def test_a_failing_request_does_not_fail_the_batch() -> None:
    model = loaded(Picky())

    async def scenario() -> list[Any]:
        batcher = MicroBatcher()
        try:
            jobs = [batcher.predict(model, rows(model, i)) for i in range(10, 17)]
            return await asyncio.gather(*jobs, return_exceptions=True)
        finally:
            batcher.close()

    results = asyncio.run(scenario())
    for count, result in zip(range(10, 17), results, strict=True):
        if count == 13:
            assert isinstance(result, scoring.ModelFailure)
        else:
            assert list(result) == [500.0 + count]


def test_frame_errors_are_model_failures_not_crashes() -> None:
    model = loaded()

    async def scenario() -> Any:
        batcher = MicroBatcher()
        try:
            return await batcher.predict(model, [object()])
        finally:
            batcher.close()

    with pytest.raises(scoring.ModelFailure):
        asyncio.run(scenario())
