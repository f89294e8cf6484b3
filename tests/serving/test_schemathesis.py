"""Property-based: whatever the OpenAPI allows (and more), the app never answers 5xx.

On the toy model; on a real scaler + one-hot + ridge pipeline, where finite extremes
(1e308) overflow inside the model; and on the default models as training logs them and
the server loads them (the default estimator of each task, served by its compiled twin):
the diamonds regressor and the rand_health classifier, whose `/predict` also takes
`probabilities`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode

from pipeline.stages import DEFAULT_ESTIMATOR
from pipeline.stages.train import fit, make_estimator
from serving.app import create_app
from tests.serving.helpers import loaded, ready_store, ridge_pipeline
from tests.serving.model_folders import load_folder, own_twin, sampled, save_like_training

app = create_app(ready_store(loaded(max_rows=50)), max_body_bytes=64 * 1024,
                 manage_store=False)
schema = schemathesis.openapi.from_asgi("/openapi.json", app)
ridge_app = create_app(ready_store(loaded(ridge_pipeline(carat_spread=0.1), max_rows=50)),
                       max_body_bytes=64 * 1024, manage_store=False)
ridge_schema = schemathesis.openapi.from_asgi("/openapi.json", ridge_app)
FUZZ = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@schema.parametrize()
@FUZZ
def test_no_server_error(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=[not_a_server_error])


@ridge_schema.include(method="POST").parametrize()
@settings(FUZZ, max_examples=150)
def test_no_server_error_on_a_ridge_pipeline(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=[not_a_server_error])


def default_model_schema(dataset: str, root: Path) -> Any:
    """The app serving the dataset's default model, loaded from its folder (twin and all)."""
    data = sampled(dataset, train=2000, validation=300)
    model = fit(data, make_estimator(data.spec.task, DEFAULT_ESTIMATOR, {"max_iter": 30}))
    served = load_folder(save_like_training(root, model, data, own_twin(model, data)),
                         name=dataset, max_rows=50)
    assert served.runtime == "onnx", served.twin
    app = create_app(ready_store(served), max_body_bytes=64 * 1024, manage_store=False)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def fuzz_every_post_operation(schema: Any, examples: int) -> list[str]:
    """Each POST operation, `examples` cases of valid and of invalid input, no 5xx.

    The plain Hypothesis form (`as_strategy`) rather than `from_fixture`: the models
    are built by fixtures, and schemathesis' lazy schema does not run on pytest 9.
    """
    fuzzed = []
    for result in schema.include(method="POST").get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(FUZZ, max_examples=examples)
            def fuzz(case: schemathesis.Case) -> None:
                case.call_and_validate(checks=[not_a_server_error])

            fuzz()
        fuzzed.append(operation.label)
    return fuzzed


POST_OPERATIONS = {"POST /predict", "POST /invocations", "POST /v2/models/{name}/infer",
                   "POST /v2/models/{name}/versions/{version}/infer"}


@pytest.mark.parametrize("dataset", ["diamonds", "rand_health"])
def test_no_server_error_on_the_default_models(dataset: str, tmp_path: Path) -> None:
    assert set(fuzz_every_post_operation(default_model_schema(dataset, tmp_path), 150)) \
        == POST_OPERATIONS
