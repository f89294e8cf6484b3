"""Clients no one here wrote, against a real uvicorn serving a real registry model.

MLflow's `ScoringServerClient` (the one `mlflow models serve`'s own tests use) and
Triton's `tritonclient.http.InferenceServerClient` (the Open Inference Protocol v2),
used as they come: their answers must equal `/predict`'s for the same rows.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests
import tritonclient.http as triton
from mlflow.pyfunc.scoring_server.client import ScoringServerClient
from tritonclient.utils import InferenceServerException

from tests.conftest import TrackingServer
from tests.serving.conftest import Models, Server, serve_version, validation_rows

# one_backend: the subject is the protocols, not the registry's database (the backends' loading is
# tests/serving/test_integration.py's, on both).
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.one_backend]


def predicted(server: Server, rows: pd.DataFrame) -> list[float]:
    answer = server.predict(rows.to_dict(orient="records"))
    assert answer.status_code == 200, answer.text
    predictions: list[float] = answer.json()["predictions"]
    return predictions


def test_mlflow_scoring_server_client_works_unchanged(
        tracking_env: TrackingServer, models: Models, server: Server) -> None:
    serve_version(tracking_env, server, models, models.first)
    address = urlsplit(server.url)
    client = ScoringServerClient(address.hostname, address.port)
    client.wait_server_ready(timeout=30)
    assert client.get_version() == mlflow.__version__
    rows = validation_rows(models.card, 50)

    result = client.invoke(rows)
    expected = predicted(server, rows)
    np.testing.assert_allclose(result.get_predictions().iloc[:, 0].to_numpy(), expected,
                               rtol=1e-12)

    csv = requests.post(server.url + "/invocations", data=rows.to_csv(index=False),
                        headers={"Content-Type": "text/csv"}, timeout=30)
    assert csv.status_code == 200, csv.text
    np.testing.assert_allclose(csv.json()["predictions"], expected, rtol=1e-12)


def test_mlflow_client_sees_bad_input_as_mlflow_reports_it(
        tracking_env: TrackingServer, models: Models, server: Server) -> None:
    serve_version(tracking_env, server, models, models.first)
    address = urlsplit(server.url)
    client = ScoringServerClient(address.hostname, address.port)
    rows = validation_rows(models.card, 2).drop(columns=["carat"])
    with pytest.raises(Exception, match=r"error code 400.*INVALID_PARAMETER_VALUE"):
        client.invoke(rows)


def tensors(rows: pd.DataFrame, metadata: dict[str, object], *,
            binary: bool) -> list[triton.InferInput]:
    inputs = []
    for spec in metadata["inputs"]:  # type: ignore[attr-defined]
        name, datatype = spec["name"], spec["datatype"]
        values = rows[name].to_numpy(dtype=object if datatype == "BYTES" else
                                     {"FP64": np.float64, "INT64": np.int64}[datatype])
        tensor = triton.InferInput(name, [len(rows)], datatype)
        tensor.set_data_from_numpy(values, binary_data=binary)
        inputs.append(tensor)
    return inputs


def test_triton_client_speaks_open_inference_protocol_v2(
        tracking_env: TrackingServer, models: Models, server: Server) -> None:
    serve_version(tracking_env, server, models, models.first)
    client = triton.InferenceServerClient(url=urlsplit(server.url).netloc)
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready(models.name)
        assert client.is_model_ready(models.name, model_version=models.first)
        assert not client.is_model_ready(models.name, model_version=models.second)
        metadata = client.get_model_metadata(models.name)
        assert metadata["name"] == models.name
        assert metadata["versions"] == [models.first]
        rows = validation_rows(models.card, 40)
        assert [i["name"] for i in metadata["inputs"]] == list(rows.columns)
        assert metadata["outputs"][0]["datatype"] == "FP64"
        expected = predicted(server, rows)

        for binary in (True, False):
            result = client.infer(models.name, tensors(rows, metadata, binary=binary),
                                  request_id="req-1")
            np.testing.assert_allclose(result.as_numpy("predictions"), expected, rtol=1e-12)
            assert result.get_response()["id"] == "req-1"
        versioned = client.infer(models.name, tensors(rows, metadata, binary=True),
                                 model_version=models.first)
        assert versioned.get_response()["model_version"] == models.first

        with pytest.raises(InferenceServerException, match="no model named"):
            client.get_model_metadata("no-such-model")
        bad = tensors(rows, metadata, binary=False)[1:]  # the first column left out
        with pytest.raises(InferenceServerException, match="missing"):
            client.infer(models.name, bad)
    finally:
        client.close()
