"""Micro-batching: concurrent requests share a predict call, never a model or an error."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest

from serving import scoring
from serving.batching import MicroBatcher
from serving.protocols.native import rows_of_body
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
    return rows_of_body(orjson.dumps({"records": records}), model)


def test_each_request_gets_its_own_predictions_from_its_own_model() -> None:
    old, new = loaded(Linear(), version="1"), loaded(Doubling(), version="2", max_rows=50)

    async def scenario() -> list[Any]:
        batcher = MicroBatcher()
        try:
            jobs = [batcher.predict(old if i % 2 else new, rows(new, i, size=1 + i % 3))
                    for i in range(30)]
            return [outputs.predictions for outputs in await asyncio.gather(*jobs)]
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
            assert isinstance(result, scoring.Outputs)
            assert list(result.predictions) == [500.0 + count]


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


class ThreadRecording(Linear):
    """A twin-like predictor (takes column arrays) that records which thread scored."""

    takes_columns = True

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.threads: list[str] = []

    def predict(self, frame: Any) -> np.ndarray:
        import threading
        import time

        self.threads.append(threading.current_thread().name)
        time.sleep(self.delay)
        return np.asarray(frame["carat"]) * 1000 + np.asarray(frame["count"])


def test_a_small_twin_request_on_an_idle_batcher_is_scored_on_the_loop() -> None:
    twin = ThreadRecording()
    model = loaded(twin, max_rows=50)

    async def scenario() -> tuple[list[Any], list[Any]]:
        batcher = MicroBatcher(inline_rows=4)
        try:
            small = await batcher.predict(model, rows(model, 1, size=4))
            large = await batcher.predict(model, rows(model, 2, size=5))
            return [small.predictions, large.predictions], [
                batcher.inline, batcher.batches, batcher.batched_requests]
        finally:
            batcher.close()

    (small, large), counts = asyncio.run(scenario())
    assert list(small) == [501.0] * 4
    assert list(large) == [502.0] * 5
    assert twin.threads == ["MainThread", "scoring-1"]  # 5 rows > inline_rows: the thread
    assert counts == [1, 2, 2]


def test_while_the_thread_scores_small_twin_requests_queue_and_share_a_predict() -> None:
    twin = ThreadRecording(delay=0.2)
    model = loaded(twin, max_rows=50)

    async def scenario() -> list[Any]:
        batcher = MicroBatcher(inline_rows=4)
        try:
            busy = asyncio.ensure_future(batcher.predict(model, rows(model, 1, size=10)))
            while batcher._predict_started is None:  # the thread is inside its predict
                await asyncio.sleep(0.01)
            waiting = [batcher.predict(model, rows(model, i)) for i in range(2, 6)]
            return await asyncio.gather(busy, *waiting)
        finally:
            batcher.close()

    results = asyncio.run(scenario())
    assert [list(r.predictions) for r in results[1:]] == [[500.0 + i] for i in range(2, 6)]
    assert "MainThread" not in twin.threads
    assert len(twin.threads) == 2  # the long predict, then the four queued ones together


def test_sklearn_requests_never_score_on_the_loop() -> None:
    model = loaded(max_rows=50)  # Linear: no takes_columns

    async def scenario() -> int:
        batcher = MicroBatcher()
        try:
            await batcher.predict(model, rows(model, 1))
            return batcher.inline
        finally:
            batcher.close()

    assert asyncio.run(scenario()) == 0
