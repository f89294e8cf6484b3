"""A classifier answers class probabilities on request, in each protocol, from either runtime.

A real rand_health classifier (the built-in classification dataset), saved by MLflow with
the signature `mlops train` writes (it declares the `probabilities` param) and the twin
training compiles; loaded by the server's own `_check` + `_assemble`. The outside
clients (MLflow's `ScoringServerClient`, `tritonclient.http`) talk to it through uvicorn.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests
import tritonclient.http as triton
import uvicorn
from fastapi.testclient import TestClient
from mlflow.pyfunc.scoring_server.client import ScoringServerClient
from sklearn.pipeline import Pipeline

from pipeline.stages.data import PreparedData
from pipeline.stages.train import fit, make_estimator
from serving import scoring
from serving.app import create_app
from tests.serving.helpers import ROW, loaded, ready_store
from tests.serving.model_folders import load_folder, own_twin, sampled, save_like_training
from tests.utils import free_port, wait_for

PROBABILITY_TOLERANCE = 1e-6  # what the twin is verified to at training


pytestmark = pytest.mark.usefixtures("one_sklearn_thread")


@pytest.fixture(scope="module")
def data() -> PreparedData:
    return sampled("rand_health", train=2500, validation=400)


@pytest.fixture(scope="module")
def classifier(data: PreparedData) -> Pipeline:
    return fit(data, make_estimator("classification", "hist_gradient_boosting",
                                    {"max_iter": 20}))


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, classifier: Pipeline,
           data: PreparedData) -> Path:
    """The model folder `mlops train` logs: skops file, signature with params, twin."""
    return save_like_training(tmp_path_factory.mktemp("classifier"), classifier, data,
                              own_twin(classifier, data))


def _load(folder: Path, runtime: str) -> scoring.LoadedModel:
    return load_folder(folder, name="health", runtime=runtime, max_rows=500)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return frame.astype(object).where(frame.notna(), None).to_dict(orient="records")


@pytest.mark.parametrize("runtime", ["auto", "sklearn"])
def test_predict_answers_labels_and_probabilities_on_request(
        folder: Path, classifier: Pipeline, data: PreparedData, runtime: str) -> None:
    model = _load(folder, runtime)
    assert model.runtime == ("onnx" if runtime == "auto" else "sklearn")
    rows = data.x_validation.head(50)
    with TestClient(create_app(ready_store(model), manage_store=False)) as client:
        plain = client.post("/predict", json={"records": _records(rows)})
        asked = client.post("/predict?probabilities=true", json={"records": _records(rows)})
    assert plain.status_code == asked.status_code == 200, asked.text
    assert "probabilities" not in plain.json()
    answer = asked.json()
    assert answer["predictions"] == plain.json()["predictions"]
    assert answer["predictions"] == classifier.predict(rows).tolist()
    assert answer["classes"] == classifier.classes_.tolist()
    proba = np.asarray(answer["probabilities"])
    assert proba.shape == (50, len(classifier.classes_))
    np.testing.assert_allclose(proba, classifier.predict_proba(rows),
                               atol=PROBABILITY_TOLERANCE, rtol=0)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)


class Counting:
    """Counts the calls of one method of the object it wraps; the rest passes through."""

    def __init__(self, wrapped: Any, method: str) -> None:
        self.wrapped, self.method, self.calls = wrapped, method, 0

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.wrapped, name)
        if name != self.method:
            return attribute

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return attribute(*args, **kwargs)

        return counted


@pytest.mark.parametrize("runtime", ["auto", "sklearn"])
def test_labels_and_probabilities_come_from_one_call(
        folder: Path, classifier: Pipeline, data: PreparedData, runtime: str) -> None:
    """The twin runs its graph once for both outputs; sklearn transforms the rows once."""
    model = _load(folder, runtime)
    predictor: Any = model.predictor
    if runtime == "auto":
        counter = predictor.session = Counting(predictor.session, "run")
    else:
        name, transformer = predictor.estimator.steps[0]
        counter = Counting(transformer, "transform")
        predictor.estimator.steps[0] = (name, counter)
    rows = data.x_validation.head(30)
    with TestClient(create_app(ready_store(model), manage_store=False)) as client:
        counter.calls = 0
        answer = client.post("/predict?probabilities=true", json={"records": _records(rows)})
        assert counter.calls == 1, f"{counter.calls} calls for one probabilities request"
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == classifier.predict(rows).tolist()
    np.testing.assert_allclose(np.asarray(answer.json()["probabilities"]),
                               classifier.predict_proba(rows), atol=PROBABILITY_TOLERANCE, rtol=0)


def test_invocations_follows_the_signature_params_as_mlflow_does(
        folder: Path, classifier: Pipeline, data: PreparedData) -> None:
    model = _load(folder, "auto")
    rows = data.x_validation.head(20)
    split = {"columns": list(rows.columns),
             "data": [list(r.values()) for r in _records(rows)]}
    with TestClient(create_app(ready_store(model), manage_store=False)) as client:
        def invoke(**extra: Any) -> requests.Response:
            return client.post("/invocations", json={"dataframe_split": split, **extra})

        proba = invoke(params={"probabilities": True})
        labels = invoke(params={"probabilities": False})
        unknown = invoke(params={"temperature": 0.5})  # not declared: ignored, as MLflow
        wrong = invoke(params={"probabilities": "yes"})
        not_an_object = invoke(params=["probabilities"])
    assert proba.status_code == 200, proba.text
    np.testing.assert_allclose(np.asarray(proba.json()["predictions"]),
                               classifier.predict_proba(rows), atol=PROBABILITY_TOLERANCE, rtol=0)
    assert labels.json()["predictions"] == unknown.json()["predictions"] \
        == classifier.predict(rows).tolist()
    assert wrong.status_code == 400
    assert wrong.json() == {"error_code": "INVALID_PARAMETER_VALUE",
                            "message": "params.probabilities: expected a boolean value"}
    assert not_an_object.status_code == 400
    assert not_an_object.json()["message"].startswith("params: must be an object")


def test_a_regressor_refuses_probabilities_in_one_line() -> None:
    with TestClient(create_app(ready_store(loaded()), manage_store=False)) as client:
        asked = client.post("/predict?probabilities=true", json={"records": [ROW]})
        garbled = client.post("/predict?probabilities=maybe", json={"records": [ROW]})
        infer = client.post("/v2/models/toy/infer", json={
            "inputs": [{"name": k, "datatype": "FP64" if isinstance(v, float) else
                        "INT64" if isinstance(v, int) else "BYTES", "shape": [1], "data": [v]}
                       for k, v in ROW.items()],
            "outputs": [{"name": "probabilities"}]})
    assert asked.status_code == 422
    assert asked.json()["message"] == ("query.probabilities: this model is a regressor: it has "
                                       "no class probabilities")
    assert garbled.status_code == 422
    assert garbled.json()["detail"][0]["loc"] == ["query", "probabilities"]
    assert infer.status_code == 400
    assert infer.json() == {"error": "outputs[0]: unknown output: this model has predictions"}


@pytest.fixture(scope="module")
def served(folder: Path) -> Iterator[str]:
    """The classifier behind a real uvicorn, on loopback."""
    port = free_port()
    app = create_app(ready_store(_load(folder, "auto")), manage_store=False)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, what="uvicorn to start", seconds=30, interval=0.05)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_mlflows_own_client_gets_probabilities_through_params(
        served: str, classifier: Pipeline, data: PreparedData) -> None:
    host, port = served.split(":")
    client = ScoringServerClient(host, int(port))
    client.wait_server_ready(timeout=30)
    rows = data.x_validation.head(10)
    answer = client.invoke(rows, params={"probabilities": True})
    np.testing.assert_allclose(np.asarray(answer.get_predictions(predictions_format="ndarray")),
                               classifier.predict_proba(rows), atol=PROBABILITY_TOLERANCE, rtol=0)
    labels = client.invoke(rows).get_predictions(predictions_format="ndarray")
    assert np.asarray(labels).ravel().tolist() == classifier.predict(rows).tolist()


def test_triton_client_asks_for_the_probabilities_output(
        served: str, classifier: Pipeline, data: PreparedData) -> None:
    client = triton.InferenceServerClient(url=served)
    assert client.is_server_ready()
    metadata = client.get_model_metadata("health")
    assert [o["name"] for o in metadata["outputs"]] == ["predictions", "probabilities"]
    rows = data.x_validation.head(10)
    inputs = []
    for spec in metadata["inputs"]:
        column = rows[spec["name"]]
        if spec["datatype"] == "BYTES":
            values = np.array([v if isinstance(v, str) else "" for v in column], dtype=object)
        else:
            values = column.to_numpy(dtype=np.float64)
        tensor = triton.InferInput(spec["name"], [len(rows)], spec["datatype"])
        tensor.set_data_from_numpy(values, binary_data=False)
        inputs.append(tensor)
    result = client.infer("health", inputs, outputs=[
        triton.InferRequestedOutput("predictions", binary_data=False),
        triton.InferRequestedOutput("probabilities", binary_data=False)])
    proba = result.as_numpy("probabilities")
    assert proba.shape == (10, len(classifier.classes_))
    np.testing.assert_allclose(proba, classifier.predict_proba(rows),
                               atol=PROBABILITY_TOLERANCE, rtol=0)
    labels = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("predictions")]
    assert labels == [str(v) for v in classifier.predict(rows)]
    classes = result.get_output("probabilities")["parameters"]["classes"]
    assert classes.split(",") == [str(c) for c in classifier.classes_]
