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

from modelio import files as modelfiles
from modelio.identity import ModelIdentity
from pipeline.stages.batch_model import BatchModel, model_inputs
from pipeline.stages.data import PreparedData
from pipeline.stages.score_batch import score_files
from pipeline.stages.train import fit, make_estimator
from pipeline.stages.twin import convert
from serving import scoring
from tests.serving.model_folders import load_folder, own_twin, sampled, save_like_training

IDENTITY = ModelIdentity(name="m", version="1", run_id="r", uri="models:/m/1")


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


def test_categories_with_gaps_and_unseen_values_score_as_the_server_scores_them(
        tmp_path: Path, regression: tuple[PreparedData, Pipeline]) -> None:
    """Batches convert text through its distinct values, the server's column lists
    value by value: a gap (None or NaN) and a value training never saw must reach the
    twin the same way on both paths, and score as sklearn scores them."""
    data, model = regression
    folder = save_like_training(tmp_path, model, data, own_twin(model, data))
    rows = data.x_validation.head(60).copy()
    rows["cut"] = rows["cut"].astype(object)
    rows.loc[rows.index[:10], "cut"] = None
    rows.loc[rows.index[10:20], "cut"] = np.nan
    rows.loc[rows.index[20:30], "cut"] = "Never seen"
    rows.loc[rows.index[30:40], "color"] = None
    batch = _load(folder)
    scored = batch.predict(rows)
    assert batch.twin is not None
    as_lists = {name: rows[name].tolist() for name in rows.columns}  # the server's shape
    x = model_inputs(rows, batch.columns)
    by_values, by_lists = batch.twin.feeds(x), batch.twin.feeds(as_lists)
    assert by_values.keys() == by_lists.keys()
    for name, values in by_values.items():
        np.testing.assert_array_equal(values, by_lists[name], err_msg=name)
    assert "" in by_values["cut"]
    assert "Never seen" in by_values["cut"]
    limit = 1e-6 * max(1.0, float(data.y_validation.abs().max()))
    assert np.max(np.abs(scored["prediction"] - model.predict(rows))) <= limit


def test_batches_scored_in_parallel_are_written_in_input_order(
        tmp_path: Path, regression: tuple[PreparedData, Pipeline]) -> None:
    data, model = regression
    batch = _load(save_like_training(tmp_path, model, data, own_twin(model, data)))
    rows = data.x_validation.reset_index(drop=True)
    rows.insert(0, "id", np.arange(len(rows)))
    rows.to_parquet(tmp_path / "in.parquet", index=False)
    outputs = {}
    for workers in (1, 2):
        result = score_files(source=str(tmp_path / "in.parquet"),
                             output=str(tmp_path / f"out-{workers}"), predict=batch.predict,
                             columns=batch.columns, engine="local", batch_rows=7,
                             workers=workers)
        assert result.rows == len(rows)
        outputs[workers] = pd.read_parquet(tmp_path / f"out-{workers}")
    assert outputs[2]["id"].tolist() == list(range(len(rows)))
    pd.testing.assert_frame_equal(outputs[2], outputs[1])
    np.testing.assert_array_equal(outputs[2]["prediction"], batch.predict(rows)["prediction"])
