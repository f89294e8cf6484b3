"""The server prefers a version's compiled twin, verified like every file, else sklearn.

Real model folders written by MLflow (skops) with the twin `mlops train` would log next
to the skops file; loaded by the server's own `_check` + `_assemble` (no registry).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sklearn.pipeline import Pipeline

from pipeline.stages.data import PreparedData
from pipeline.stages.train import fit, make_estimator
from pipeline.stages.twin import convert
from serving import modelfiles, scoring
from serving.app import create_app
from serving.loader import Refused
from serving.schema import ColumnBatch
from tests.serving.helpers import ready_store
from tests.serving.model_folders import load_folder, own_twin, sampled, save_like_training

pytestmark = pytest.mark.usefixtures("one_sklearn_thread")


@pytest.fixture(scope="module")
def data() -> PreparedData:
    return sampled("diamonds", train=2000, validation=500)


def _fit(data: PreparedData, **params: object) -> Pipeline:
    return fit(data, make_estimator("regression", "hist_gradient_boosting",
                                    {"max_iter": 30, **params}))


@pytest.fixture(scope="module")
def model(data: PreparedData) -> Pipeline:
    return _fit(data)


def test_a_verified_twin_serves_and_predicts_like_the_model(
        tmp_path: Path, model: Pipeline, data: PreparedData) -> None:
    folder = save_like_training(tmp_path, model, data, own_twin(model, data))
    loaded = load_folder(folder)
    assert (loaded.runtime, loaded.twin) == ("onnx", None)
    head = data.x_validation.head(100)
    rows = head.astype(object).where(head.notna(), None)
    frame = scoring.inputs_from_records(rows.to_dict(orient="records"), loaded)
    assert isinstance(frame, ColumnBatch)  # the twin takes column arrays, not a frame
    served = scoring.run(loaded, frame)
    limit = 1e-6 * max(1.0, float(data.y_validation.abs().max()))
    assert np.max(np.abs(served - model.predict(data.x_validation.head(100)))) <= limit

    app = create_app(ready_store(loaded), manage_store=False)
    with TestClient(app) as client:
        status = client.get("/model").json()
        assert (status["runtime"], status["twin"]) == ("onnx", None)
        assert 'runtime="onnx"' in client.get("/metrics").text


def test_a_twin_that_disagrees_is_not_served_and_model_says_why(
        tmp_path: Path, model: Pipeline, data: PreparedData) -> None:
    other = convert(_fit(data, max_depth=2, max_iter=10), data.spec)
    loaded = load_folder(save_like_training(tmp_path, model, data, other))
    assert loaded.runtime == "sklearn"
    assert loaded.twin is not None
    assert loaded.twin.startswith(
        "refused: the twin disagrees with the model on the input example: max abs difference")
    app = create_app(ready_store(loaded), manage_store=False)
    with TestClient(app) as client:
        assert client.get("/model").json()["runtime"] == "sklearn"
        assert 'runtime="sklearn"' in client.get("/metrics").text


def test_a_version_without_twin_or_with_the_runtime_turned_off_serves_sklearn(
        tmp_path: Path, model: Pipeline, data: PreparedData) -> None:
    without = load_folder(save_like_training(tmp_path / "a", model, data, None))
    assert (without.runtime, without.twin) == ("sklearn", "this version has no compiled twin")
    off = load_folder(save_like_training(tmp_path / "b", model, data, own_twin(model, data)),
                      runtime="sklearn")
    assert (off.runtime, off.twin) == ("sklearn", "turned off (SERVING_RUNTIME=sklearn)")


def test_a_twin_the_manifest_does_not_cover_is_refused_before_loading(
        tmp_path: Path, model: Pipeline, data: PreparedData) -> None:
    folder = save_like_training(tmp_path, model, data, None)
    gated = modelfiles.manifest(folder)
    (folder / modelfiles.TWIN_FILE).write_bytes(own_twin(model, data))  # added after the gate
    with pytest.raises(Refused) as refused:
        load_folder(folder, manifest=gated)
    assert (refused.value.rule, refused.value.file) == ("manifest", modelfiles.TWIN_FILE)

    swapped = tmp_path / "swapped"
    folder = save_like_training(swapped, model, data, own_twin(model, data))
    gated = modelfiles.manifest(folder)
    (folder / modelfiles.TWIN_FILE).write_bytes(convert(_fit(data, max_iter=5), data.spec))
    with pytest.raises(Refused) as refused:
        load_folder(folder, manifest=gated)
    assert refused.value.file == modelfiles.TWIN_FILE
