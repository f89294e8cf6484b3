"""Batch scoring (local engine, Spark executors) takes a version's twin as the server does.

Real model folders as `mlops train` logs them (MLflow's skops file, the signature, the
input example, the compiled twin), loaded by `BatchModel.load` and by the server's own
loader: a verified twin scores the batch and its rows equal the server's; a twin that
disagrees with its model is refused and sklearn scores instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from pipeline.stages.batch_model import BatchModel, ModelIdentity
from pipeline.stages.data import PreparedData
from pipeline.stages.train import fit, make_estimator
from pipeline.stages.twin import convert
from serving import modelfiles, scoring
from tests.serving.model_folders import load_folder, own_twin, sampled, save_like_training

IDENTITY = ModelIdentity(name="m", version="1", run_id="r")


def _load(folder: Path, runtime: str = "auto") -> BatchModel:
    return BatchModel.load(folder, identity=IDENTITY, manifest=modelfiles.manifest(folder),
                           runtime=runtime, threads=2)


def _served(folder: Path, rows: pd.DataFrame, *, probabilities: bool = False) -> np.ndarray:
    """What the server's loaded model answers for `rows`, through its request path."""
    model = load_folder(folder, max_rows=len(rows))
    assert model.runtime == "onnx"
    records = rows.astype(object).where(rows.notna(), None).to_dict(orient="records")
    inputs = scoring.inputs_from_records(records, model)
    if probabilities:
        return np.asarray(model.predictor.predict_proba(inputs))
    return np.asarray(scoring.run(model, inputs))


@pytest.fixture(scope="module")
def regression() -> tuple[PreparedData, Pipeline]:
    data = sampled("diamonds", train=2000, validation=300)
    return data, fit(data, make_estimator("regression", "hist_gradient_boosting",
                                          {"max_iter": 30}))


def test_a_verified_twin_scores_the_batch_and_answers_what_the_server_does(
        tmp_path: Path, regression: tuple[PreparedData, Pipeline]) -> None:
    data, model = regression
    folder = save_like_training(tmp_path, model, data, own_twin(model, data))
    batch = _load(folder)
    assert (batch.runtime, batch.why_no_twin) == ("onnx", None)
    rows = data.x_validation
    scored = batch.predict(rows)
    np.testing.assert_array_equal(scored["prediction"].to_numpy(), _served(folder, rows))
    limit = 1e-6 * max(1.0, float(data.y_validation.abs().max()))
    assert np.max(np.abs(scored["prediction"] - model.predict(rows))) <= limit

    off = _load(folder, runtime="sklearn")
    assert (off.runtime, off.why_no_twin) == ("sklearn", "turned off (--runtime sklearn)")
    np.testing.assert_array_equal(off.predict(rows)["prediction"], model.predict(rows))


def test_a_twin_that_disagrees_with_its_model_is_refused_and_sklearn_scores(
        tmp_path: Path, regression: tuple[PreparedData, Pipeline]) -> None:
    data, model = regression
    other = convert(fit(data, make_estimator("regression", "hist_gradient_boosting",
                                             {"max_iter": 5, "max_depth": 2})), data.spec)
    batch = _load(save_like_training(tmp_path, model, data, other))
    assert batch.runtime == "sklearn"
    assert batch.why_no_twin is not None
    assert batch.why_no_twin.startswith(
        "refused: the twin disagrees with the model on the input example")
    rows = data.x_validation.head(100)
    np.testing.assert_array_equal(batch.predict(rows)["prediction"], model.predict(rows))


def test_a_classifiers_batch_labels_and_probabilities_come_from_its_twin(
        tmp_path: Path) -> None:
    data = sampled("rand_health", train=2500, validation=300)
    model = fit(data, make_estimator("classification", "hist_gradient_boosting",
                                     {"max_iter": 20}))
    folder = save_like_training(tmp_path, model, data, own_twin(model, data))
    batch = _load(folder)
    assert batch.runtime == "onnx"
    rows = data.x_validation
    scored = batch.predict(rows)
    labels = [str(label) for label in model.classes_]
    columns = [f"probability_{label}" for label in labels]
    assert [c for c in scored.columns if c.startswith("probability_")] == columns
    np.testing.assert_array_equal(scored[columns].to_numpy(),
                                  _served(folder, rows, probabilities=True))
    assert (scored["prediction"].astype(str).to_numpy() ==
            model.predict(rows).astype(str)).all()
    np.testing.assert_allclose(scored[columns].to_numpy(), model.predict_proba(rows),
                               rtol=0, atol=1e-6)
