"""Fixtures that start real services on loopback and stop what they started."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.stack import ManagedProcess, mlflow_server
from tests.utils import free_port


@dataclass(frozen=True)
class TrackingServer:
    """A running MLflow server and the environment a client needs to use it."""

    uri: str
    env: dict[str, str]
    home: Path


@pytest.fixture(scope="session")
def tracking_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrackingServer]:
    """A real `mlflow server` process (SQLite backend, local artifacts) for the session."""
    home = tmp_path_factory.mktemp("mlflow-sqlite")
    port = free_port()
    service, command = mlflow_server(home=home, host="127.0.0.1", port=port)
    service.start(command, wait_seconds=120)
    uri = f"http://127.0.0.1:{port}"
    try:
        yield TrackingServer(uri=uri, env={"MLFLOW_TRACKING_URI": uri}, home=home)
    finally:
        service.stop()


@pytest.fixture
def tracking_env(tracking_server: TrackingServer,
                 monkeypatch: pytest.MonkeyPatch) -> TrackingServer:
    """Point this process's MLflow client at the session's server."""
    for key, value in tracking_server.env.items():
        monkeypatch.setenv(key, value)
    return tracking_server


@pytest.fixture(autouse=True)
def _no_stray_tracking(monkeypatch: pytest.MonkeyPatch) -> None:
    """A test that forgets its server must fail loudly, not write to ./mlruns."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")


__all__ = ["ManagedProcess", "TrackingServer"]
