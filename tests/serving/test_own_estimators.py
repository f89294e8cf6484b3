"""Estimators beyond the built-ins, as the server loads them: a twin where a converter
exists and its parity is proven, the model's own runtime otherwise, and `/model` says which.

Each model is fitted as training fits it (the card's features, then the estimator) on a
sample of the demo data, saved as training logs it, and loaded by the server's own
loader against a manifest of its files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sklearn.compose import TransformedTargetRegressor
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
)
from sklearn.linear_model import Ridge
from sklearn.neighbors import KNeighborsRegressor
from sklearn.svm import SVR

from pipeline.stages.data import PreparedData
from pipeline.stages.train import fit, make_estimator
from pipeline.stages.twin import Twin, compile_twin
from serving import scoring
from serving.app import create_app
from tests.serving.helpers import ready_store
from tests.serving.model_folders import load_folder, own_twin, sampled, save_like_training

pytestmark = pytest.mark.usefixtures("one_sklearn_thread")


@pytest.fixture(scope="module")
def diamonds() -> PreparedData:
    return sampled("diamonds", train=1500, validation=400)


@pytest.fixture(scope="module")
def health() -> PreparedData:
    return sampled("rand_health", train=1500, validation=400)


def served(loaded: scoring.LoadedModel, data: PreparedData, rows: int = 100) -> Any:
    head = data.x_validation.head(rows)
    records = head.astype(object).where(head.notna(), None).to_dict(orient="records")
    return scoring.run(loaded, scoring.inputs_from_records(records, loaded))


def quick(name: str, task: str) -> Any:
    """A built-in with fewer rounds: the same estimator, quicker to fit."""
    return make_estimator(task, name, {"n_estimators": 60})


WITH_TWIN = {
    "extra_trees": lambda task: (ExtraTreesRegressor if task == "regression"
                                 else ExtraTreesClassifier)(n_estimators=20, random_state=0),
    "gradient_boosting": lambda task: (GradientBoostingRegressor if task == "regression"
                                       else GradientBoostingClassifier)(n_estimators=30),
    "xgboost": lambda task: quick("xgboost", task),
    "lightgbm": lambda task: quick("lightgbm", task),
}


@pytest.mark.parametrize("task", ["regression", "classification"])
@pytest.mark.parametrize("name", sorted(WITH_TWIN))
def test_an_estimator_with_a_converter_is_served_by_its_twin(
        name: str, task: str, diamonds: PreparedData, health: PreparedData,
        tmp_path: Path) -> None:
    data = diamonds if task == "regression" else health
    model = fit(data, WITH_TWIN[name](task))
    loaded = load_folder(save_like_training(tmp_path, model, data, own_twin(model, data)))
    assert (loaded.runtime, loaded.twin) == ("onnx", None)
    expected = model.predict(data.x_validation.head(100))
    if task == "regression":
        np.testing.assert_allclose(served(loaded, data), expected, rtol=1e-5)
    else:
        assert list(served(loaded, data)) == list(expected)


WITHOUT_TWIN = {
    "knn": KNeighborsRegressor(n_neighbors=5),  # its graph loops (Scan): refused
    "log_target": TransformedTargetRegressor(regressor=Ridge(), func=np.log1p,
                                             inverse_func=np.expm1),  # no converter
}


@pytest.mark.parametrize("name", sorted(WITHOUT_TWIN))
def test_an_estimator_without_a_converter_serves_on_its_own_runtime_and_model_says_why(
        name: str, diamonds: PreparedData, tmp_path: Path) -> None:
    estimator = WITHOUT_TWIN[name]
    model = fit(diamonds, estimator)
    refused = compile_twin(model, diamonds.spec, diamonds.x_validation, diamonds.y_validation)
    assert not isinstance(refused, Twin)
    loaded = load_folder(save_like_training(tmp_path, model, diamonds, None))
    assert loaded.runtime == "sklearn"
    np.testing.assert_allclose(served(loaded, diamonds),
                               model.predict(diamonds.x_validation.head(100)), rtol=1e-9)
    with TestClient(create_app(ready_store(loaded), manage_store=False)) as client:
        status = client.get("/model").json()
    assert status["runtime"] == "sklearn"
    assert status["twin"].startswith("this version has no compiled twin")
    assert f"{type(estimator).__name__} serves on its own runtime (scikit-learn)" in \
        status["twin"]


@pytest.mark.parametrize("name", ["xgboost", "lightgbm"])
def test_a_booster_without_its_twin_serves_on_its_own_library(
        name: str, diamonds: PreparedData, tmp_path: Path) -> None:
    model = fit(diamonds, quick(name, "regression"))
    loaded = load_folder(save_like_training(tmp_path, model, diamonds, None))
    assert loaded.runtime == "sklearn"
    assert loaded.twin is not None
    assert loaded.twin.endswith(f"serves on its own runtime ({name})")
    np.testing.assert_allclose(served(loaded, diamonds),
                               model.predict(diamonds.x_validation.head(100)), rtol=1e-9)


def test_svr_serves_on_scikit_learn_its_graph_being_refused(diamonds: PreparedData,
                                                          tmp_path: Path) -> None:
    """skl2onnx converts SVR to `ai.onnx.ml.SVMRegressor`, which the served graphs'
    allowlist does not admit (yet): the model serves itself, as it trained."""
    model = fit(diamonds, SVR(C=1000.0))
    twin = compile_twin(model, diamonds.spec, diamonds.x_validation, diamonds.y_validation)
    assert not isinstance(twin, Twin)
    assert "uses operator ai.onnx.ml.SVMRegressor" in twin.reason
    loaded = load_folder(save_like_training(tmp_path, model, diamonds, None))
    assert loaded.runtime == "sklearn"
    np.testing.assert_allclose(served(loaded, diamonds),
                               model.predict(diamonds.x_validation.head(100)), rtol=1e-9)
