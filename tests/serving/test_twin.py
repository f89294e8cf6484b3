"""The server prefers a version's compiled twin, verified like every file, else sklearn.

Real model folders written by MLflow (skops) with the twin `mlops train` would log next
to the skops file; loaded by the server's own `_check` + `_assemble` (no registry).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import mlflow.sklearn
import numpy as np
import pytest
from fastapi.testclient import TestClient
from mlflow.models import infer_signature
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from pipeline.stages.data import PreparedData, prepare
from pipeline.stages.datasets import load_spec
from pipeline.stages.train import fit, make_estimator, trusted_types
from pipeline.stages.twin import Twin, compile_twin, convert
from serving import modelfiles, scoring
from serving.app import create_app
from serving.loader import Refused, _assemble, _check
from serving.scoring import ModelRef
from tests.serving.helpers import ready_store


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def data() -> PreparedData:
    full = prepare(load_spec("diamonds"))
    return dataclasses.replace(full, train=full.train.sample(2000, random_state=0),
                               validation=full.validation.head(500))


def _fit(data: PreparedData, **params: object) -> Pipeline:
    return fit(data, make_estimator("regression", "hist_gradient_boosting",
                                    {"max_iter": 30, **params}))


@pytest.fixture(scope="module")
def model(data: PreparedData) -> Pipeline:
    return _fit(data)


def _folder(root: Path, model: Pipeline, data: PreparedData, twin_bytes: bytes | None) -> Path:
    folder = root / "model"
    sample = data.x_train.head(50)
    mlflow.sklearn.save_model(model, str(folder), serialization_format="skops",
                              signature=infer_signature(sample, model.predict(sample)),
                              input_example=data.x_train.head(5), pip_requirements=["sklearn"],
                              skops_trusted_types=trusted_types(model))
    if twin_bytes is not None:
        (folder / modelfiles.TWIN_FILE).write_bytes(twin_bytes)
    return folder


def _own_twin(model: Pipeline, data: PreparedData) -> bytes:
    twin = compile_twin(model, data.spec, data.x_validation, data.y_validation)
    assert isinstance(twin, Twin)
    return twin.onnx_bytes


def _load(folder: Path, *, manifest: dict[str, str] | None = None,
          runtime: str = "auto") -> scoring.LoadedModel:
    ref = ModelRef(name="m", version="1", run_id="r", uri="models:/m/1",
                   manifest=modelfiles.dump_manifest(manifest or modelfiles.manifest(folder)),
                   verify=True)
    loaded, _ = _assemble(ref, _check(ref, folder), max_rows=100, runtime=runtime)
    return loaded


def test_a_verified_twin_serves_and_predicts_like_the_model(
        tmp_path: Path, model: Pipeline, data: PreparedData) -> None:
    folder = _folder(tmp_path, model, data, _own_twin(model, data))
    loaded = _load(folder)
    assert (loaded.runtime, loaded.twin) == ("onnx", None)
    head = data.x_validation.head(100)
    rows = head.astype(object).where(head.notna(), None)
    frame = scoring.frame_from_records(rows.to_dict(orient="records"), loaded)
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
    loaded = _load(_folder(tmp_path, model, data, other))
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
    without = _load(_folder(tmp_path / "a", model, data, None))
    assert (without.runtime, without.twin) == ("sklearn", "this version has no compiled twin")
    off = _load(_folder(tmp_path / "b", model, data, _own_twin(model, data)), runtime="sklearn")
    assert (off.runtime, off.twin) == ("sklearn", "turned off (SERVING_RUNTIME=sklearn)")


def test_a_twin_the_manifest_does_not_cover_is_refused_before_loading(
        tmp_path: Path, model: Pipeline, data: PreparedData) -> None:
    folder = _folder(tmp_path, model, data, None)
    gated = modelfiles.manifest(folder)
    (folder / modelfiles.TWIN_FILE).write_bytes(_own_twin(model, data))  # added after the gate
    with pytest.raises(Refused) as refused:
        _load(folder, manifest=gated)
    assert (refused.value.rule, refused.value.file) == ("manifest", modelfiles.TWIN_FILE)

    swapped = tmp_path / "swapped"
    folder = _folder(swapped, model, data, _own_twin(model, data))
    gated = modelfiles.manifest(folder)
    (folder / modelfiles.TWIN_FILE).write_bytes(convert(_fit(data, max_iter=5), data.spec))
    with pytest.raises(Refused) as refused:
        _load(folder, manifest=gated)
    assert refused.value.file == modelfiles.TWIN_FILE
