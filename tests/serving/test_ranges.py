"""Finite inputs a real scaler+ridge pipeline cannot take: 4xx naming the row, not 500 or null."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

from serving import scoring
from serving.app import create_app
from serving.batching import MicroBatcher
from serving.protocols.native import rows_of_body
from tests.serving.helpers import ROW, loaded, ready_store, ridge_pipeline


@pytest.fixture(params=[0.1, 1e4], ids=["scaler overflows", "prediction overflows"])
def client(request: pytest.FixtureRequest) -> Iterator[TestClient]:
    model = loaded(ridge_pipeline(carat_spread=request.param), max_rows=50)
    with TestClient(create_app(ready_store(model), manage_store=False)) as test_client:
        yield test_client


EXTREMES = [1e308, -1.7e308, 1.7976931348623157e308]


@pytest.mark.parametrize("carat", EXTREMES)
def test_extreme_finite_input_is_422_naming_the_row(client: TestClient, carat: float) -> None:
    records = [ROW, {**ROW, "carat": carat}]
    answer = client.post("/predict", json={"records": records})
    assert answer.status_code == 422, answer.text
    message = answer.json()["message"]
    assert message.startswith("[1]"), message
    assert "out of the model's range" in message
    assert str(carat) not in answer.text
    assert client.post("/predict", json={"records": [ROW]}).status_code == 200


@pytest.mark.parametrize("carat", EXTREMES)
def test_extreme_input_on_the_other_protocols_is_400(client: TestClient, carat: float) -> None:
    row = {**ROW, "carat": carat}
    invocations = client.post("/invocations", json={"dataframe_records": [row]})
    assert invocations.status_code == 400, invocations.text
    assert invocations.json()["error_code"] == "BAD_REQUEST"
    tensors = [{"name": k, "datatype": {str: "BYTES", int: "INT64"}.get(type(v), "FP64"),
                "shape": [1], "data": [v]} for k, v in row.items()]
    v2 = client.post("/v2/models/toy/infer", json={"inputs": tensors})
    assert v2.status_code == 400, v2.text
    assert "out of the model's range" in v2.json()["error"]


def test_the_scaler_case_names_the_column() -> None:
    model = loaded(ridge_pipeline(carat_spread=0.1), max_rows=50)
    with TestClient(create_app(ready_store(model), manage_store=False)) as client:
        answer = client.post("/predict", json={"records": [{**ROW, "carat": -1.7e308}]})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == [0, "carat"]


def test_a_request_out_of_range_does_not_fail_the_batch_it_shares() -> None:
    model = loaded(ridge_pipeline(carat_spread=0.1), max_rows=50)

    def rows(carat: float) -> list[Any]:
        body = orjson.dumps({"records": [{**ROW, "carat": carat}]})
        return rows_of_body(body, model)

    async def scenario() -> list[Any]:
        batcher = MicroBatcher()
        try:
            return await asyncio.gather(*(batcher.predict(model, rows(1e308 if i == 3 else 0.5))
                                          for i in range(8)), return_exceptions=True)
        finally:
            batcher.close()

    results = asyncio.run(scenario())
    assert isinstance(results[3], scoring.InputError)
    good = [r for i, r in enumerate(results) if i != 3]
    assert all(isinstance(r, scoring.Outputs) and np.isfinite(r.predictions).all() for r in good)
