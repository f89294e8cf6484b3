"""The path rule the tracking server's auth check adds to MLflow's (pure function)."""

from __future__ import annotations

import pytest

from tests.security.conftest import mlops_auth

unsafe_path = mlops_auth.unsafe_path


@pytest.mark.parametrize("path", [
    "../x", "a/../../x", "..\\x", "a\\b", "..%5cx", "%2e%2e%2fx", "%252e%252e%252fx",
    "%25252525252e",
])
def test_traversal_and_backslashes_are_unsafe(path: str) -> None:
    assert unsafe_path(path)


@pytest.mark.parametrize("path", [
    "/api/2.0/mlflow-artifacts/artifacts/1/models/m-1/artifacts/MLmodel",
    "model/data/model.skops", "a..b/c", "report 100%.md", "",
])
def test_ordinary_paths_are_safe(path: str) -> None:
    assert not unsafe_path(path)
