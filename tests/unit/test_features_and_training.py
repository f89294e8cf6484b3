"""Features, the estimator registry, hyperparameters, and the task's metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import skops.io

from pipeline.errors import ConfigError
from pipeline.stages.data import PreparedData, cleanse, split, validate
from pipeline.stages.datasets import Column, DatasetSpec
from pipeline.stages.evaluate import evaluate
from pipeline.stages.features import build_model
from pipeline.stages.train import ESTIMATORS, fit, make_estimator, parse_params, trusted_types


def _prepared(spec: DatasetSpec, frame: pd.DataFrame) -> PreparedData:
    clean, report = cleanse(validate(frame, spec), spec)
    train, validation, test = split(clean, validation_fraction=0.2, test_fraction=0.25)
    return PreparedData(spec=spec, train=train, validation=validation, test=test, report=report,
                        data_hash="x")


def test_the_model_takes_raw_columns_with_gaps_and_new_categories(
    tiny_spec: DatasetSpec, tiny_frame: pd.DataFrame
) -> None:
    data = _prepared(tiny_spec, tiny_frame)
    model = fit(data, make_estimator("regression", "ridge", {}))
    raw = pd.DataFrame({"size": [np.nan, 50.0], "grade": ["never-seen", None]})
    assert np.isfinite(model.predict(raw)).all()


def test_the_strong_default_beats_the_dummy_baseline(tiny_spec: DatasetSpec,
                                                     tiny_frame: pd.DataFrame) -> None:
    data = _prepared(tiny_spec, tiny_frame)
    scores = {
        name: evaluate(fit(data, make_estimator("regression", name, {})), data.x_validation,
                       data.y_validation, task="regression")
        for name in ("dummy", "hist_gradient_boosting")
    }
    assert scores["hist_gradient_boosting"]["rmse"] < scores["dummy"]["rmse"] / 3
    assert scores["dummy"]["r2"] <= 0.01
    assert set(scores["dummy"]) == {"rmse", "mae", "r2"}


def test_classification_reports_probability_metrics() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=300)
    frame = pd.DataFrame({"x": x, "kind": rng.choice(["p", "q"], 300),
                          "label": np.where(x > 0, "yes", "no")})
    spec = DatasetSpec(name="clf", task="classification",
                       target=Column(name="label", kind="categorical", categories=("yes", "no")),
                       features=(Column(name="x", kind="numeric"),
                                 Column(name="kind", kind="categorical")))
    data = _prepared(spec, frame)
    model = fit(data, make_estimator("classification", "logistic", {}))
    scores = evaluate(model, data.x_validation, data.y_validation, task="classification")
    assert scores["accuracy"] > 0.9
    assert scores["roc_auc"] > 0.95
    assert {"f1_macro", "balanced_accuracy", "log_loss"} <= set(scores)


def test_every_registered_estimator_is_constructible() -> None:
    for task, names in ESTIMATORS.items():
        assert "dummy" in names
        for name in names:
            assert make_estimator(task, name, {}) is not None


def test_unknown_estimator_names_the_choices() -> None:
    with pytest.raises(ConfigError, match="--estimator 'xgb': unknown for regression; choose"):
        make_estimator("regression", "xgb", {})


def test_unknown_parameter_is_named() -> None:
    with pytest.raises(ConfigError, match=r"--param max_dept: .* has no such parameter"):
        make_estimator("regression", "hist_gradient_boosting", {"max_dept": 3})


def test_invalid_parameter_value_fails_at_fit_with_sklearn_reason(
    tiny_spec: DatasetSpec, tiny_frame: pd.DataFrame
) -> None:
    data = _prepared(tiny_spec, tiny_frame)
    estimator = make_estimator("regression", "hist_gradient_boosting", {"max_iter": -1})
    with pytest.raises(ConfigError, match="'max_iter' parameter"):
        fit(data, estimator)


def test_params_are_parsed_as_typed_scalars() -> None:
    assert parse_params(["a=3", "b=0.5", "c=true", "d=squared_error", "e=null"]) == {
        "a": 3, "b": 0.5, "c": True, "d": "squared_error", "e": None,
    }
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_params(["novalue"])


def test_trusted_types_are_exactly_what_skops_needs_to_load(
    tiny_spec: DatasetSpec, tiny_frame: pd.DataFrame
) -> None:
    data = _prepared(tiny_spec, tiny_frame)
    model = build_model(tiny_spec, make_estimator("regression", "random_forest",
                                                  {"n_estimators": 3}))
    model.fit(data.x_train, data.y_train)
    blob = skops.io.dumps(model)
    loaded = skops.io.loads(blob, trusted=trusted_types(model))
    np.testing.assert_allclose(loaded.predict(data.x_validation), model.predict(data.x_validation))


def test_signature_sample_marks_columns_with_gaps_optional(
    tiny_spec: DatasetSpec, tiny_frame: pd.DataFrame
) -> None:
    from mlflow.models import infer_signature

    from pipeline.stages.train import signature_sample

    x = tiny_frame[["size", "grade"]].copy()
    x.loc[250, "size"] = np.nan  # a gap far from the first rows
    inputs = infer_signature(signature_sample(x, rows=10)).inputs
    required = {spec.name: spec.required for spec in inputs.inputs}
    assert required == {"size": False, "grade": True}
