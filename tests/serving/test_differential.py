"""Ours and `mlflow models serve` on the same registered model, with the same payloads.

Every shape of MLflow's protocol (JSON split, records, instances, inputs; CSV) must give
identical predictions, and payloads both refuse must get the same status class. Where
we are deliberately stricter (docs/serving.md, "Input rules"), the case is not here.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
import requests

from pipeline.localstack.process import ManagedProcess
from tests.conftest import TrackingServer
from tests.serving.conftest import Models, Server, serve_version, validation_rows
from tests.utils import free_port

# one_backend: the subject is the protocol's shapes, not the registry's database (the
# backends' loading is tests/serving/test_integration.py's, on both).
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.one_backend]


@pytest.fixture(scope="module")
def mlflow_serve(tracking_server: TrackingServer, models: Models,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mlflow models serve` (one worker, this environment) on the first version."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = ManagedProcess(name="mlflow-serve", home=tmp_path_factory.mktemp("mlflow-serve"),
                             health_url=f"{url}/ping")
    bin_dir = str(Path(sys.executable).parent)
    try:
        process.start([sys.executable, "-m", "mlflow", "models", "serve", "-m",
                       f"models:/{models.name}/{models.first}", "--env-manager", "local",
                       "-h", "127.0.0.1", "-p", str(port), "-w", "1"], wait_seconds=180,
                      env={**tracking_server.env,
                           "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"})
        yield url
    finally:
        process.stop()


def bodies(rows: pd.DataFrame) -> dict[str, tuple[bytes, str]]:
    """The same rows in every shape of the protocol: name → (body, content type)."""
    json = "application/json"
    records = rows.to_dict(orient="records")
    split = rows.to_json(orient="split", index=False)
    return {
        "dataframe_split": (b'{"dataframe_split": ' + split.encode() + b"}", json),
        "dataframe_records": (orjson.dumps({"dataframe_records": records}), json),
        "instances": (orjson.dumps({"instances": records}), json),
        "inputs": (orjson.dumps({"inputs": {c: rows[c].tolist() for c in rows}}),
                   json),
        "csv": (rows.to_csv(index=False).encode(), "text/csv"),
    }


def bad_bodies(rows: pd.DataFrame) -> dict[str, tuple[bytes, str]]:
    json = "application/json"
    row = rows.to_dict(orient="records")[0]
    without_carat = {k: v for k, v in row.items() if k != "carat"}
    text_carat = {**row, "carat": "heavy"}
    return {
        "not JSON": (b"{", json),
        "no known key": (orjson.dumps({"rows": [row]}), json),
        "two keys": (orjson.dumps({"instances": [row], "inputs": [row]}), json),
        "missing column": (orjson.dumps({"dataframe_records": [without_carat]}),
                           json),
        "text in a number column": (
            orjson.dumps({"dataframe_records": [text_carat]}), json),
        "CSV with text in a number column": (
            rows.head(1).assign(carat="heavy").to_csv(index=False).encode(), "text/csv"),
        "unsupported media type": (b"carat=1", "text/plain"),
        "charset other than UTF-8": (rows.to_csv(index=False).encode(),
                                     "text/csv; charset=latin-1"),
    }


def post(url: str, body: bytes, content_type: str) -> requests.Response:
    return requests.post(url + "/invocations", data=body, timeout=60,
                         headers={"Content-Type": content_type})


def test_same_predictions_as_mlflow_models_serve(
        tracking_env: TrackingServer, models: Models, server: Server, mlflow_serve: str) -> None:
    serve_version(tracking_env, server, models, models.first)
    rows = validation_rows(models.card, 60)
    for shape, (body, content_type) in bodies(rows).items():
        theirs, ours = post(mlflow_serve, body, content_type), post(server.url, body,
                                                                    content_type)
        assert theirs.status_code == ours.status_code == 200, (shape, theirs.text, ours.text)
        assert set(ours.json()) == set(theirs.json()) == {"predictions"}
        # Ours serves the compiled twin: equal to sklearn within the twin's verified
        # tolerance, 1e-6 of the largest value (docs/serving.md, "The compiled twin").
        expected = np.asarray(theirs.json()["predictions"], dtype=float)
        np.testing.assert_allclose(ours.json()["predictions"], expected, rtol=0,
                                   atol=1e-6 * max(1.0, float(np.max(np.abs(expected)))),
                                   err_msg=shape)


def test_same_status_class_as_mlflow_models_serve_for_bad_payloads(
        tracking_env: TrackingServer, models: Models, server: Server, mlflow_serve: str) -> None:
    serve_version(tracking_env, server, models, models.first)
    rows = validation_rows(models.card, 3)
    seen: dict[str, tuple[tuple[int, str], tuple[int, str]]] = {}
    for case, (body, content_type) in bad_bodies(rows).items():
        theirs, ours = post(mlflow_serve, body, content_type), post(server.url, body,
                                                                    content_type)
        seen[case] = ((theirs.status_code, error_code(theirs)),
                      (ours.status_code, error_code(ours)))
    print("\n(mlflow models serve, ours):", seen)
    for case, (theirs_answer, ours_answer) in seen.items():
        assert ours_answer == theirs_answer, case
        assert 400 <= ours_answer[0] < 500, case


def error_code(answer: requests.Response) -> str:
    """MLflow's `error_code`, or "" for its plain-text answers (415)."""
    try:
        code: str = answer.json().get("error_code", "")
    except ValueError:
        return ""
    return code


def test_ping_and_version_answer_alike(server: Server, mlflow_serve: str) -> None:
    answers: list[Any] = []
    for url in (mlflow_serve, server.url):
        ping, version = (requests.get(url + path, timeout=10) for path in ("/ping", "/version"))
        answers.append((ping.status_code, ping.text, version.status_code, version.text))
    assert answers[0] == answers[1]
