"""Overload, deadlines and a scoring thread that hangs or dies: 503/504, never a hang or 500."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from serving.app import create_app
from serving.settings import ServingSettings
from tests.serving.helpers import (
    ROW,
    FakeClock,
    Hanging,
    Killing,
    Sleepy,
    loaded,
    ready_store,
)

pytestmark = pytest.mark.timeout(60)


def app_with(predictor: Any, **settings: Any) -> FastAPI:
    config = ServingSettings(model_uri="models:/toy/1", **settings)
    return create_app(ready_store(loaded(predictor)), settings=config, manage_store=False)


@asynccontextmanager
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client
    finally:
        app.state.batcher.close()


def body(count: int = 2) -> dict[str, Any]:
    return {"records": [{**ROW, "count": count}]}


async def predict_started(app: FastAPI) -> None:
    """Until the scoring thread is inside a predict (the test's timeout bounds the wait)."""
    while app.state.batcher._predict_started is None:
        await asyncio.sleep(0.01)


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


def test_overload_gets_503_with_retry_after_and_the_rest_succeed() -> None:
    app = app_with(Sleepy(0.2), serving_queue_max=2, serving_retry_after_seconds=3)

    async def scenario() -> tuple[list[httpx.Response], str]:
        async with http(app) as client:
            answers = await asyncio.wait_for(asyncio.gather(
                *(client.post("/predict", json=body()) for _ in range(16))), 30)
            return list(answers), (await client.get("/metrics")).text

    answers, metrics = asyncio.run(scenario())
    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(200) >= 2, "the queue's worth of requests is served"
    refused = [a for a in answers if a.status_code == 503]
    assert refused, "more clients than the queue holds are refused"
    for answer in refused:
        assert answer.headers["retry-after"] == "3"
        assert answer.json()["detail"][0]["type"] == "overloaded"
    assert metric(metrics, "serving_overloaded_total") == len(refused)


def test_overload_on_invocations_and_v2_answers_in_their_shapes() -> None:
    app = app_with(Sleepy(0.2), serving_queue_max=1)
    tensors = [{"name": k, "datatype": {str: "BYTES", int: "INT64"}.get(type(v), "FP64"),
                "shape": [1], "data": [v]} for k, v in ROW.items()]

    async def scenario() -> list[httpx.Response]:
        async with http(app) as client:
            calls = [client.post("/invocations", json={"inputs": [ROW]}) for _ in range(6)]
            calls += [client.post("/v2/models/toy/infer", json={"inputs": tensors})
                      for _ in range(6)]
            return list(await asyncio.wait_for(asyncio.gather(*calls), 30))

    answers = asyncio.run(scenario())
    assert {a.status_code for a in answers} <= {200, 503}
    for answer in answers:
        if answer.status_code != 503:
            continue
        path = answer.request.url.path
        if path == "/invocations":
            assert answer.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
        else:
            assert set(answer.json()) == {"error"}
        assert "retry-after" in answer.headers


def test_a_hung_predict_gets_504_and_the_next_request_is_served() -> None:
    model = Hanging()
    app = app_with(model, serving_deadline_seconds=1)
    clock = app.state.batcher.clock = FakeClock()

    async def scenario() -> None:
        async with http(app) as client:
            began = time.monotonic()
            hung = asyncio.ensure_future(client.post("/predict", json=body(13)))
            await predict_started(app)
            clock.advance(1)  # by its timeout the predict has held the thread all along
            answer = await hung
            assert answer.status_code == 504
            assert time.monotonic() - began < 5
            assert answer.json()["detail"][0]["type"] == "deadline"
            following = [await client.post("/predict", json=body(i)) for i in range(3)]
            assert [a.status_code for a in following] == [200, 200, 200]
            assert [a.json()["predictions"] for a in following] == [[500.0], [501.0], [502.0]]
            assert (await client.get("/ready")).status_code == 200
            metrics = (await client.get("/metrics")).text
            assert metric(metrics, "serving_deadline_exceeded_total") == 1
            assert metric(metrics, "serving_scoring_thread_restarts_total") == 1

    try:
        asyncio.run(scenario())
    finally:
        model.release.set()


def test_ready_fails_while_a_predict_is_stuck_and_recovers() -> None:
    model = Hanging()
    app = app_with(model, serving_deadline_seconds=1.5, serving_stuck_seconds=0.3)
    clock = app.state.batcher.clock = FakeClock()

    async def scenario() -> None:
        async with http(app) as client:
            hung = asyncio.ensure_future(client.post("/predict", json=body(13)))
            await predict_started(app)
            assert (await client.get("/ready")).status_code == 200, "a running predict is fine"
            clock.advance(0.6)  # the predict has now run past the stuck bound
            ready = await client.get("/ready")
            assert ready.status_code == 503
            assert "scoring thread" in ready.json()["reason"]
            assert (await client.get("/ready")).status_code == 200, "a new thread took over"
            assert (await client.post("/predict", json=body())).status_code == 200
            assert (await hung).status_code == 504
            metrics = (await client.get("/metrics")).text
            assert metric(metrics, "serving_abandoned_scoring_threads") == 1

    try:
        asyncio.run(scenario())
    finally:
        model.release.set()


@contextmanager
def quiet_thread_deaths() -> Iterator[None]:
    """The dying thread's traceback is expected here; pytest would warn about it."""
    import threading
    saved = threading.excepthook
    threading.excepthook = lambda _: None
    try:
        yield
    finally:
        threading.excepthook = saved


def test_a_dead_scoring_thread_fails_ready_once_and_is_restarted() -> None:
    app = app_with(Killing(), serving_deadline_seconds=5)

    async def scenario() -> None:
        async with http(app) as client:
            assert (await client.post("/predict", json=body())).status_code == 200
            began = time.monotonic()
            killed = await client.post("/predict", json=body(66))
            assert killed.status_code == 500, "answered at once, not after the deadline"
            assert time.monotonic() - began < 4
            await asyncio.sleep(0.1)
            ready = await client.get("/ready")
            assert ready.status_code == 503
            assert "died" in ready.json()["reason"]
            assert (await client.get("/ready")).status_code == 200
            assert (await client.post("/predict", json=body())).status_code == 200

    with quiet_thread_deaths():
        asyncio.run(scenario())


def test_a_dead_thread_is_restarted_by_the_next_request_too() -> None:
    app = app_with(Killing(), serving_deadline_seconds=5)

    async def scenario() -> None:
        async with http(app) as client:
            assert (await client.post("/predict", json=body(66))).status_code == 500
            await asyncio.sleep(0.1)
            answer = await client.post("/predict", json=body())
            assert answer.status_code == 200
            assert answer.json()["predictions"] == [502.0]

    with quiet_thread_deaths():
        asyncio.run(scenario())
