"""MLflow's full scoring protocol and the Open Inference Protocol v2, in-process (ASGI)."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import mlflow
import orjson
import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from tests.serving.helpers import ROW, loaded, ready_store

SECRET = "S3CRET-payload-value"
HEADER = "carat,cut,depth,count\n"


@pytest.fixture
def client() -> Iterator[TestClient]:
    app = create_app(ready_store(loaded()), max_body_bytes=4096, manage_store=False)
    with TestClient(app) as test_client:
        yield test_client


def csv_post(client: TestClient, body: str | bytes,
             content_type: str = "text/csv") -> Any:
    return client.post("/invocations", content=body, headers={"content-type": content_type})


def test_ping_and_version_answer_as_mlflow_models_serve(client: TestClient) -> None:
    ping = client.get("/ping")
    assert (ping.status_code, ping.text) == (200, "\n")
    version = client.get("/version")
    assert (version.status_code, version.text) == (200, mlflow.__version__)


def test_csv_body_scores_like_json(client: TestClient) -> None:
    answer = csv_post(client, HEADER + "0.5,Ideal,61.0,2\n1.0,Good,,5\n")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"predictions": [502.0, 1005.0]}
    with_charset = csv_post(client, HEADER + "0.5,Ideal,61.0,2\n", "text/csv; charset=utf-8")
    assert with_charset.json() == {"predictions": [502.0]}


@pytest.mark.parametrize(("body", "where"), [
    (HEADER + "heavy,Ideal,61.0,2\n", "[0].carat"),             # not a number
    (HEADER + "0.5,Ideal,61.0,2.5\n", "[0].count"),             # not an integer
    (HEADER + "nan,Ideal,61.0,2\n", "[0].carat"),               # NaN, as in JSON
    (HEADER + "1e999,Ideal,61.0,2\n", "[0].carat"),             # infinite
    (HEADER + ",Ideal,61.0,2\n", "[0].carat"),                  # missing, required
    (HEADER + "0.5,Ideal,61.0,99999999999999999999\n", "[0].count"),  # out of range
    ("carat,cut,depth,count,colour\n0.5,Ideal,61.0,2,E\n", "[0].colour"),  # unknown
    ("carat,cut,depth\n0.5,Ideal,61.0\n", "[0].count"),          # missing column
    (HEADER + "0.5,Ideal\n", "[0]"),                            # short row
    (HEADER, "body"),                                           # no rows
    (HEADER + "0.5,Ideal,61.0,2\n" * 6, "body"),                # over max_rows (5)
    ("", "body"),                                               # no header
    ('carat,"cut\n0.5,"Ide', "body"),                           # not CSV
])
def test_bad_csv_is_400_like_json_naming_the_cell(client: TestClient, body: str,
                                                  where: str) -> None:
    answer = csv_post(client, body)
    assert answer.status_code == 400, answer.text
    code = "INVALID_PARAMETER_VALUE" if "missing" in answer.json()["message"] else "BAD_REQUEST"
    assert answer.json()["error_code"] == code
    assert answer.json()["message"].startswith(where), answer.json()["message"]


def test_csv_has_the_json_body_limit(client: TestClient) -> None:
    answer = csv_post(client, HEADER + "0.5,Ideal,61.0,2\n" * 300)
    assert answer.status_code == 413
    assert answer.json()["error_code"] == "RESOURCE_LIMIT_EXCEEDED"


@pytest.mark.parametrize("content_type", [
    "text/plain", "application/xml", "text/csv; charset=latin-1",
    "application/json; format=pandas-split",
])
def test_other_media_types_are_415_like_mlflow(client: TestClient, content_type: str) -> None:
    answer = csv_post(client, HEADER + "0.5,Ideal,61.0,2\n", content_type)
    assert answer.status_code == 415
    assert answer.headers["content-type"].startswith("text/plain"), "as MLflow answers 415"
    assert "text/csv" in answer.text


def test_csv_errors_never_echo_the_payload(client: TestClient) -> None:
    for body in (HEADER + f"{SECRET},Ideal,61.0,2\n", HEADER + f"0.5,Ideal,61.0,{SECRET}\n",
                 b"carat\n\xff" + SECRET.encode()):
        answer = csv_post(client, body)
        assert answer.status_code == 400
        assert SECRET not in answer.text


# The Open Inference Protocol v2 --------------------------------------------------------

def tensors(**overrides: Any) -> list[dict[str, Any]]:
    columns = {"carat": ("FP64", [0.5, 1.0]), "cut": ("BYTES", ["Ideal", "Good"]),
               "depth": ("FP64", [61.0, 62.0]), "count": ("INT64", [2, 5])}
    columns.update(overrides)
    return [{"name": name, "datatype": datatype, "shape": [len(data)], "data": data}
            for name, (datatype, data) in columns.items()]


def infer(client: TestClient, body: Any, path: str = "/v2/models/toy/infer",
          headers: dict[str, str] | None = None) -> Any:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.post(path, content=content,
                       headers={"content-type": "application/json", **(headers or {})})


def test_v2_server_and_model_metadata(client: TestClient) -> None:
    assert client.get("/v2").json()["extensions"] == []
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200
    for path in ("/v2/models/toy", "/v2/models/toy/versions/1"):
        meta = client.get(path).json()
        assert meta["name"] == "toy"
        assert meta["versions"] == ["1"]
        assert meta["inputs"] == [
            {"name": "carat", "datatype": "FP64", "shape": [-1]},
            {"name": "cut", "datatype": "BYTES", "shape": [-1]},
            {"name": "depth", "datatype": "FP64", "shape": [-1]},
            {"name": "count", "datatype": "INT64", "shape": [-1]},
        ]
        assert meta["outputs"][0]["name"] == "predictions"
        assert client.get(path + "/ready").status_code == 200


def test_v2_infer_equals_predict(client: TestClient) -> None:
    answer = infer(client, {"id": "r1", "inputs": tensors()})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["model_name"], body["model_version"], body["id"]) == ("toy", "1", "r1")
    assert body["outputs"] == [{"name": "predictions", "datatype": "FP64", "shape": [2],
                                "data": [502.0, 1005.0]}]
    records = [ROW, {**ROW, "carat": 1.0, "cut": "Good", "depth": 62.0, "count": 5}]
    predicted = client.post("/predict", json={"records": records}).json()["predictions"]
    assert body["outputs"][0]["data"] == predicted
    versioned = infer(client, {"inputs": tensors()}, "/v2/models/toy/versions/1/infer")
    assert versioned.json()["outputs"][0]["data"] == predicted


def test_v2_infer_with_binary_tensors(client: TestClient) -> None:
    """The binary extension: a JSON header, then each tensor's raw little-endian bytes."""
    parts = {
        "carat": ("FP64", struct.pack("<2d", 0.5, 1.0)),
        "cut": ("BYTES", b"".join(struct.pack("<I", len(s)) + s for s in (b"Ideal", b"Good"))),
        "depth": ("FP64", struct.pack("<2d", 61.0, 62.0)),
        "count": ("INT64", struct.pack("<2q", 2, 5)),
    }
    header = orjson.dumps({"inputs": [
        {"name": name, "datatype": datatype, "shape": [2, 1],
         "parameters": {"binary_data_size": len(raw)}}
        for name, (datatype, raw) in parts.items()]})
    body = header + b"".join(raw for _, raw in parts.values())
    answer = infer(client, body, headers={"inference-header-content-length": str(len(header))})
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"][0]["data"] == [502.0, 1005.0]


@pytest.mark.parametrize(("body", "fragment"), [
    ({"inputs": tensors(carat=("BYTES", ["0.5", "1.0"]))}, "carat: datatype must be FP64"),
    ({"inputs": tensors(colour=("BYTES", ["E", "F"]))}, "colour: unknown input"),
    ({"inputs": tensors(count=("INT64", [2]))}, "count: every input must have the same"),
    ({"inputs": tensors(count=("INT64", [2, 2.5]))}, "count: expected integers"),
    ({"inputs": tensors(cut=("BYTES", ["Ideal", 7]))}, "cut: expected strings"),
    ({"inputs": [t for t in tensors() if t["name"] != "carat"]}, "[0].carat: missing"),
    ({"inputs": [{**tensors()[0], "shape": [1, 2]}]}, "carat: shape must be"),
    ({"inputs": [{**tensors()[0], "shape": [3]}]}, "carat: the shape says 3"),
    ({"inputs": []}, "body: expected a JSON object"),
    ({"inputs": tensors(carat=("FP64", [0.5] * 6), cut=("BYTES", ["a"] * 6),
                        depth=("FP64", [1.0] * 6), count=("INT64", [1] * 6))}, "body:"),
    (b"{not json", "body: the body is not valid JSON"),
])
def test_v2_bad_infer_is_400_with_error(client: TestClient, body: Any, fragment: str) -> None:
    answer = infer(client, body)
    assert answer.status_code == 400, answer.text
    assert set(answer.json()) == {"error"}
    assert fragment in answer.json()["error"], answer.json()["error"]


@pytest.mark.parametrize("path", [
    "/v2/models/other", "/v2/models/toy/versions/2", "/v2/models/other/ready",
])
def test_v2_unknown_model_or_version_is_404(client: TestClient, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 404
    assert set(answer.json()) == {"error"}
    assert infer(client, {"inputs": tensors()}, path.removesuffix("/ready") + "/infer"
                 ).status_code == 404


def test_v2_binary_sizes_that_do_not_fit_are_400(client: TestClient) -> None:
    header = orjson.dumps({"inputs": [{"name": "carat", "datatype": "FP64", "shape": [1],
                                       "parameters": {"binary_data_size": 64}}]})
    for declared in (str(len(header)), "0", str(len(header) + 100), "x"):
        answer = infer(client, header + b"\0" * 8,
                       headers={"inference-header-content-length": declared})
        assert answer.status_code == 400, (declared, answer.text)
        assert set(answer.json()) == {"error"}


def test_v2_errors_never_echo_the_payload(client: TestClient) -> None:
    for body in ({"inputs": tensors(carat=("FP64", [SECRET, 1.0]))},
                 {"inputs": tensors(cut=("BYTES", [SECRET, [SECRET]]))},
                 {"inputs": tensors(), "id": [SECRET]}):
        answer = infer(client, body)
        assert answer.status_code == 400
        assert SECRET not in answer.text
