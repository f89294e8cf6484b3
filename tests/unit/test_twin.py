"""Compiled twins: every estimator of the registry, on both tasks, predicts like its model.

The models are fitted on a sample of the demo data (diamonds as regression and as a
three-band classification, and the built-in rand_health classification), so the module
runs in seconds, and compared on validation rows (for diamonds with gaps added in
numbers and categories, the inputs the server accepts). A twin that does not match its
model is refused: at training and when the gate or promotion derives it
(`compile_twin`), and the gate says which runtime will serve (`twin_check`, `decide`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from modelio.twin import OnnxPredictor
from pipeline.gitops.card import PromotionPolicy
from pipeline.gitops.evaluation import twin_check
from pipeline.gitops.gate import Evaluation, TwinCheck, decide
from pipeline.stages import onnx_compat
from pipeline.stages import twin as twin_stage
from pipeline.stages.data import PreparedData, prepare
from pipeline.stages.datasets import Column, DatasetSpec, load_spec
from pipeline.stages.train import ESTIMATORS, fit, input_example, make_estimator
from pipeline.stages.twin import Twin, TwinRefused, compile_twin

TRAIN_ROWS, CHECK_ROWS = 2500, 1500


def _with_gaps(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    rng = np.random.default_rng(0)
    out.loc[rng.random(len(out)) < 0.05, "carat"] = np.nan
    out.loc[rng.random(len(out)) < 0.05, "cut"] = None
    out.loc[rng.random(len(out)) < 0.02, "color"] = "never-seen"
    return out


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """OpenMP's pool, on a busy 2-core machine, makes the boosting fits 30x slower."""
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def demo() -> dict[str, PreparedData]:
    """The demo data, as the regression it is and as a three-band classification."""
    full = prepare(load_spec("diamonds"))
    train = _with_gaps(full.train.sample(TRAIN_ROWS, random_state=0))
    validation = _with_gaps(full.validation.head(CHECK_ROWS))
    regression = dataclasses.replace(full, train=train, validation=validation)

    def band(frame: pd.DataFrame) -> pd.DataFrame:
        price = frame["price"]
        return frame.assign(band=np.select([price < 1000, price < 5000], ["low", "mid"],
                                           "high"))

    spec: DatasetSpec = dataclasses.replace(
        full.spec, task="classification",
        target=Column(name="band", kind="categorical", categories=("low", "mid", "high")))
    classification = dataclasses.replace(full, spec=spec, train=band(train),
                                         validation=band(validation))
    health = prepare(load_spec("rand_health"))  # the built-in classification demo
    rand_health = dataclasses.replace(health, train=health.train.sample(2500, random_state=0),
                                      validation=health.validation.head(CHECK_ROWS))
    return {"regression": regression, "classification": classification,
            "rand_health": rand_health}


@pytest.fixture(scope="module")
def boosting(demo: dict[str, PreparedData]) -> Pipeline:
    return fit(demo["regression"], make_estimator("regression", "hist_gradient_boosting", {}))


CASES = [(data, name) for data in ("regression", "classification", "rand_health")
         for name in ESTIMATORS["regression" if data == "regression" else "classification"]]


@pytest.mark.parametrize(("dataset", "name"), CASES, ids=[f"{d}-{n}" for d, n in CASES])
def test_every_estimator_gets_a_twin_that_predicts_like_it(demo: dict[str, PreparedData],
                                                           dataset: str, name: str) -> None:
    data = demo[dataset]
    task = data.spec.task
    assert len(data.validation) == CHECK_ROWS
    model = fit(data, make_estimator(task, name, {}))
    example = input_example(data)
    result = compile_twin(model, data.spec, data.x_validation, data.y_validation,
                          example=example)
    assert isinstance(result, Twin), getattr(result, "reason", "")
    assert result.parity.rows == CHECK_ROWS
    twin = OnnxPredictor(result.onnx_bytes)
    expected = model.predict(data.x_validation)
    recorded = twin.recorded  # what the server checks the twin against at start-up
    assert recorded is not None
    assert recorded.predictions == model.predict(example).tolist()
    if task == "regression":
        relative = onnx_compat.SINGLE_PRECISION_TOLERANCE \
            if onnx_compat.single_precision(model) else 1e-6  # XGBoost rounds to float32
        limit = relative * max(1.0, float(data.y_validation.abs().max()))
        assert np.max(np.abs(twin.predict(data.x_validation) - expected)) <= limit
        assert twin.tolerance == pytest.approx(limit)
        assert (recorded.probabilities, twin.classes) == (None, None)
    else:
        assert list(twin.predict(data.x_validation)) == list(expected)
        np.testing.assert_allclose(twin.predict_proba(data.x_validation),
                                   model.predict_proba(data.x_validation), atol=1e-6, rtol=0)
        assert twin.classes == tuple(model.classes_.tolist())
        assert recorded.probabilities == model.predict_proba(example).tolist()


def test_tree_models_are_not_scaled_and_categories_carry_a_missing_marker(
        demo: dict[str, PreparedData], boosting: Pipeline) -> None:
    data, trees = demo["regression"], boosting
    linear = fit(data, make_estimator("regression", "ridge", {}))
    numeric = {name: step for name, step, _ in trees.named_steps["features"].transformers_}
    assert [n for n, _ in numeric["numeric"].steps] == ["impute"]
    numeric = {name: step for name, step, _ in linear.named_steps["features"].transformers_}
    assert [n for n, _ in numeric["numeric"].steps] == ["impute", "scale"]
    assert list(numeric["categorical"].named_steps) == ["mark_missing", "impute", "encode"]


def _other_twin(data: PreparedData) -> bytes:
    """The twin of a different model (another seed and depth) of the same columns."""
    other = fit(data, make_estimator("regression", "hist_gradient_boosting",
                                     {"max_depth": 2, "max_iter": 20}))
    return twin_stage.convert(other, data.spec)


def test_a_twin_that_disagrees_is_refused_at_training(demo: dict[str, PreparedData],
                                                      boosting: Pipeline,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    data, model = demo["regression"], boosting
    wrong = _other_twin(data)
    monkeypatch.setattr(twin_stage, "convert", lambda *_: wrong)
    result = compile_twin(model, data.spec, data.x_validation, data.y_validation)
    assert isinstance(result, TwinRefused)
    assert result.reason.startswith("the twin disagrees with the model: max abs difference")
    assert result.parity is not None
    assert result.parity.rows == CHECK_ROWS


def test_a_model_that_cannot_be_converted_is_refused_in_one_line(
        demo: dict[str, PreparedData], monkeypatch: pytest.MonkeyPatch) -> None:
    data = demo["regression"]
    model = fit(data, make_estimator("regression", "ridge", {}))

    def broken(*_: object) -> bytes:
        raise RuntimeError("Unable to create node\n'TreeEnsembleRegressor'")

    monkeypatch.setattr(twin_stage, "convert", broken)
    result = compile_twin(model, data.spec, data.x_validation)
    assert isinstance(result, TwinRefused)
    assert result.reason == ("cannot convert to ONNX: RuntimeError: Unable to create node "
                             "'TreeEnsembleRegressor'")


def test_the_gate_says_which_runtime_its_own_twin_leaves_the_candidate(
        demo: dict[str, PreparedData], boosting: Pipeline,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The gate compiles the candidate's twin itself: one that agrees will serve after
    promotion; one that does not is never recorded, so the model serves through sklearn
    and the gate passes on the model's merits, saying so."""
    data, model = demo["regression"], boosting
    own = compile_twin(model, data.spec, data.x_validation, data.y_validation)
    assert isinstance(own, Twin)
    agrees = twin_check(own)
    wrong = _other_twin(data)
    monkeypatch.setattr(twin_stage, "convert", lambda *_: wrong)
    disagrees = twin_check(compile_twin(model, data.spec, data.x_validation,
                                        data.y_validation))
    assert agrees.ok
    assert not disagrees.ok

    policy = PromotionPolicy(metric="rmse", greater_is_better=False, floors={"r2": 0.9})
    candidate = Evaluation(run_id="c" * 32, version=None, metrics={"r2": 0.97})

    def decided(twin: TwinCheck | None, r2: float = 0.97) -> tuple[bool, tuple[str, ...]]:
        judged = decide(policy=policy, candidate=dataclasses.replace(
            candidate, metrics={"r2": r2}), production=None, interval=None,
            former_production=False, twin=twin)
        return judged.passed, judged.reasons

    passed, reasons = decided(agrees)
    assert passed
    assert reasons[-1].startswith("twin: compiled from the candidate, it agrees with "
                                  "the model (max abs difference")
    passed, reasons = decided(disagrees)
    assert passed
    assert reasons[-1].startswith("twin: none will serve (the twin disagrees with "
                                  "the model: max abs difference")
    assert reasons[-1].endswith("the model serves through sklearn")
    passed, reasons = decided(agrees, r2=0.5)
    assert not passed
    assert not any(reason.startswith("twin:") for reason in reasons)
    passed, reasons = decided(None)
    assert passed
    assert not any(reason.startswith("twin:") for reason in reasons)
    assert decided(TwinCheck(ok=False, detail="no converter"))[0]
