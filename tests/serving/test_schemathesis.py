"""Property-based: whatever the OpenAPI allows (and more), the app never answers 5xx.

Twice: on the toy model, and on a real scaler + one-hot + ridge pipeline, where finite
extremes (1e308) overflow inside the model.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from serving.app import create_app
from tests.serving.helpers import loaded, ready_store, ridge_pipeline

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
