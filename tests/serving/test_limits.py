"""A body's values are counted before anything is built from it, and large parses queue.

The counts (`serving.limits`) must be exact where they decide, or a crafted body could
slip through (an undercount) or a valid one be refused (an overcount): checked here
against the parsers themselves on generated JSON and CSV. Then, through the app: bodies
over the budget get the caller's error in every protocol; bodies that are large only
because their text holds separators pass; the row limit is refused before rows are
built; and a large body's parse is admitted by the batcher's queue and deadline.
"""

from __future__ import annotations

import asyncio
import csv
import io
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from serving.app import create_app
from serving.batching import DeadlineExceeded, MicroBatcher, Overloaded
from serving.limits import (
    _csv_cells_outside_quotes,
    _json_separators_outside_strings,
    value_budget,
)
from serving.settings import ServingSettings
from tests.serving.helpers import ROW, Sleepy, loaded, ready_store

pytestmark = pytest.mark.timeout(120)

MAX_BODY = 4 * 1024 * 1024
TRICKY = st.text(alphabet=st.sampled_from(list('ab,:[{}]"\\\n\r\t é')), max_size=12)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False) | TRICKY,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(TRICKY, children, max_size=5), max_leaves=30)


def separators(value: Any) -> int:
    """What a JSON text of `value` holds outside strings: `[` and `{` per container,
    `,` between items, `:` per key."""
    if isinstance(value, list):
        return 1 + max(len(value) - 1, 0) + sum(separators(v) for v in value)
    if isinstance(value, dict):
        return 1 + max(len(value) - 1, 0) + len(value) + sum(separators(v)
                                                              for v in value.values())
    return 0


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_json_values_are_counted_exactly_outside_strings(value: Any) -> None:
    text = orjson.dumps(value)
    assert _json_separators_outside_strings(text) == separators(value)
    spaced = orjson.dumps(value, option=orjson.OPT_INDENT_2)
    assert _json_separators_outside_strings(spaced) == separators(value)


CELLS = st.text(alphabet=st.sampled_from(list('ab1,"\n\r é')), max_size=8)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(CELLS, min_size=1, max_size=6), min_size=1, max_size=8),
       st.sampled_from(["\n", "\r\n"]))
def test_csv_cells_are_counted_as_the_csv_reader_reads_them(rows: list[list[str]],
                                                            ending: str) -> None:
    out = io.StringIO()
    csv.writer(out, lineterminator=ending).writerows(rows)
    text = out.getvalue()
    read = [row for row in csv.reader(io.StringIO(text, newline=""), strict=True) if row]
    assert _csv_cells_outside_quotes(text.encode()) == sum(len(row) for row in read)
    unended = text.removesuffix(ending)
    assert _csv_cells_outside_quotes(unended.encode()) == sum(len(row) for row in read)


def test_a_quote_inside_an_unquoted_field_cannot_be_counted() -> None:
    """The CSV reader takes it as text: what follows is not quoted, so nothing can be
    discounted (a body over the budget is then refused)."""
    assert _csv_cells_outside_quotes(b'a"b,"c,d"\n') is None
    assert _csv_cells_outside_quotes(b'"a","b""c",d\n"e\nf",g\n') == 5


@pytest.fixture
def client() -> Iterator[TestClient]:
    app = create_app(ready_store(loaded(max_rows=5)), max_body_bytes=MAX_BODY,
                     manage_store=False)
    with TestClient(app) as test_client:
        yield test_client


def over_budget_bodies() -> dict[str, tuple[str, dict[str, str], bytes]]:
    """Each format, a body with far more (tiny) values than 5 rows of 4 columns hold."""
    json = {"content-type": "application/json"}
    many = 200_000
    binary_header = orjson.dumps({"inputs": [{"name": "carat", "datatype": "FP64",
                                              "shape": [many],
                                              "parameters": {"binary_data_size": 8 * many}}]})
    return {
        "predict": ("/predict", json, b'{"records": [' + b",".join([b"{}"] * many) + b"]}"),
        "records": ("/invocations", json,
                    b'{"dataframe_records": [' + b",".join([b"{}"] * many) + b"]}"),
        "columns": ("/invocations", json,
                    b'{"inputs": {"carat": [' + b",".join([b"1"] * many) + b"]}}"),
        "split": ("/invocations", json, b'{"dataframe_split": {"columns": ["carat"], "data": ['
                  + b",".join([b"[1]"] * many) + b"]}}"),
        "csv": ("/invocations", {"content-type": "text/csv"}, b"carat\n" + b"1\n" * many),
        "v2": ("/v2/models/toy/infer", json, orjson.dumps({"inputs": [
            {"name": "carat", "datatype": "FP64", "shape": [many], "data": [1.0] * many}]})),
        "v2 binary": ("/v2/models/toy/infer",
                      {**json, "inference-header-content-length": str(len(binary_header))},
                      binary_header + struct.pack("<d", 1.0) * many),
    }


@pytest.mark.parametrize("name", list(over_budget_bodies()))
def test_a_body_over_the_value_budget_is_the_callers_error(client: TestClient,
                                                           name: str) -> None:
    path, headers, body = over_budget_bodies()[name]
    answer = client.post(path, content=body, headers=headers)
    assert answer.status_code == (422 if path == "/predict" else 400), answer.text
    text = answer.text
    assert "more values than 5 rows" in text or "at most 5 rows" in text, text


def test_large_text_full_of_separators_is_not_mistaken_for_many_values(
        client: TestClient) -> None:
    """A few rows whose text holds more separators than the budget, in JSON and CSV."""
    model = loaded(max_rows=5)
    noisy = ',:[{"\\\n' * (value_budget(model) // 4)
    rows = [{**ROW, "cut": noisy}, {**ROW, "cut": noisy[::-1]}]
    for path, body in (("/predict", {"records": rows}), ("/invocations", {"instances": rows}),
                       ("/invocations", {"inputs": {k: [r[k] for r in rows] for k in ROW}})):
        answer = client.post(path, content=orjson.dumps(body),
                             headers={"content-type": "application/json"})
        assert answer.status_code == 200, (path, answer.text[:200])
        assert answer.json()["predictions"] == [502.0, 502.0]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(list(ROW))
    writer.writerows([list(r.values()) for r in rows])
    answer = client.post("/invocations", content=out.getvalue().encode(),
                         headers={"content-type": "text/csv"})
    assert answer.status_code == 200, answer.text[:200]
    assert answer.json()["predictions"] == [502.0, 502.0]


@pytest.mark.parametrize(("body", "content_type", "where"), [
    ({"dataframe_records": [ROW] * 6}, "application/json", "dataframe_records: "),
    ({"inputs": {k: [v] * 6 for k, v in ROW.items()}}, "application/json", "inputs: "),
    ({"dataframe_split": {"columns": list(ROW), "data": [list(ROW.values())] * 6}},
     "application/json", "dataframe_split: "),
    ("carat,cut,depth,count\n" + "0.5,Ideal,61.0,2\n" * 6, "text/csv", "body: "),
])
def test_mlflow_shapes_over_the_row_limit_are_refused_in_one_line(
        client: TestClient, body: Any, content_type: str, where: str) -> None:
    content = body.encode() if isinstance(body, str) else orjson.dumps(body)
    answer = client.post("/invocations", content=content, headers={"content-type": content_type})
    assert answer.status_code == 400
    assert answer.json() == {"error_code": "BAD_REQUEST",
                             "message": where + "at most 5 rows per request"}


def test_binary_tensors_are_refused_by_their_shape_and_size_before_decoding(
        client: TestClient) -> None:
    def infer(rows: int, elements: int) -> Any:
        header = orjson.dumps({"inputs": [{"name": "carat", "datatype": "FP64",
                                           "shape": [rows],
                                           "parameters": {"binary_data_size": 8 * elements}}]})
        return client.post("/v2/models/toy/infer",
                           content=header + struct.pack("<d", 1.0) * elements,
                           headers={"content-type": "application/json",
                                    "inference-header-content-length": str(len(header))})

    assert infer(6, 6).json() == {"error": "body: at most 5 rows per request"}
    assert infer(2, 3).json() == {"error": "carat: the shape says 2 elements, the data has 3"}


# Parsing through the batcher's queue and deadline ----------------------------------------

def test_parses_share_the_queue_with_predictions_and_wait_in_order() -> None:
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def slow() -> str:
        started.set()
        release.wait(10)
        ran.append("slow")
        return "slow"

    def quick() -> str:
        ran.append("quick")
        return "quick"

    async def scenario() -> None:
        batcher = MicroBatcher(max_queue=1, deadline_seconds=5)
        try:
            first = asyncio.ensure_future(batcher.parse(slow))
            while not started.is_set():  # the parsing thread is inside it
                await asyncio.sleep(0.01)
            second = asyncio.ensure_future(batcher.parse(quick))
            while batcher.queue_depth < 1:
                await asyncio.sleep(0.01)
            with pytest.raises(Overloaded):  # one waits already: the queue is full
                await batcher.parse(quick)
            with pytest.raises(Overloaded):  # a prediction is refused by the same bound
                await batcher.predict(loaded(), [ROW])
            release.set()
            assert await first == "slow"
            assert await second == "quick"
            assert batcher.parses == 2
            assert batcher.overloaded == 2
        finally:
            release.set()
            batcher.close()

    asyncio.run(scenario())
    assert ran == ["slow", "quick"]


def test_a_parse_waiting_past_its_deadline_is_504_and_never_runs() -> None:
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def blocking_parse() -> bool:
        started.set()
        return release.wait(10)

    async def scenario() -> None:
        batcher = MicroBatcher(deadline_seconds=5)
        try:
            blocking = asyncio.ensure_future(batcher.parse(blocking_parse))
            while not started.is_set():
                await asyncio.sleep(0.01)
            began = time.monotonic()
            with pytest.raises(DeadlineExceeded):
                await batcher.parse(lambda: ran.append("late"), deadline=began + 0.2)
            with pytest.raises(DeadlineExceeded):  # already past: not even queued
                await batcher.parse(lambda: ran.append("past"), deadline=began - 1)
            release.set()
            await blocking
            await asyncio.sleep(0.1)
            assert batcher.expired == 1
            assert batcher.deadlines_exceeded == 2
        finally:
            release.set()
            batcher.close()

    asyncio.run(scenario())
    assert ran == []


def test_with_the_queue_full_a_large_body_is_refused_unparsed() -> None:
    config = ServingSettings(model_uri="models:/toy/1", serving_queue_max=2)
    app = create_app(ready_store(loaded(Sleepy(0.5), max_rows=2000)), settings=config,
                     max_body_bytes=MAX_BODY, manage_store=False)
    large = orjson.dumps({"records": [ROW] * 1500})
    assert len(large) > 32 * 1024, "parsed off the event loop"

    async def scenario() -> tuple[list[int], int, str]:
        import httpx

        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                def call() -> asyncio.Future[httpx.Response]:
                    return asyncio.ensure_future(http.post("/predict", json={"records": [ROW]}))

                busy = [call()]
                while app.state.batcher._predict_started is None:  # the thread is scoring it
                    await asyncio.sleep(0.01)
                busy += [call(), call()]  # two waiting: the queue is full
                while app.state.batcher.queue_depth < 2:
                    await asyncio.sleep(0.01)
                refused = await http.post("/predict", content=large,
                                          headers={"content-type": "application/json"})
                statuses = [(await b).status_code for b in busy]
                metrics = (await http.get("/metrics")).text
                return statuses, refused.status_code, metrics
        finally:
            app.state.batcher.close()

    statuses, refused, metrics = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert statuses == [200, 200, 200]
    assert refused == 503
    assert "serving_parses_total 0.0" in metrics
    assert "serving_overloaded_total 1.0" in metrics
