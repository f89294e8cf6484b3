"""Background services by PID file: never stop what was not started for this address."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pipeline.cli import run
from pipeline.localstack.process import ManagedProcess, ServiceError
from tests.utils import free_port


def _web(home: Path, port: int) -> tuple[ManagedProcess, list[str]]:
    """A small HTTP server as a managed service named like the serving API's, whose
    /health (a file in the folder it serves) answers 200 as the server's does."""
    (home / "health").write_text("ok")
    service = ManagedProcess(name="serving", home=home,
                             health_url=f"http://127.0.0.1:{port}/health")
    return service, [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                     "--directory", str(home)]


def test_a_service_running_on_another_port_is_left_running(tmp_path: Path) -> None:
    first_port, second_port = free_port(), free_port()
    running, command = _web(tmp_path, first_port)
    assert running.start(command, wait_seconds=30)
    pid = running.pid()
    try:
        other, other_command = _web(tmp_path, second_port)
        with pytest.raises(ServiceError, match=f"runs for http://127.0.0.1:{first_port}/health, "
                                               "not .*; it was left running"):
            other.start(other_command, wait_seconds=30)
        assert running.pid() == pid
        assert running.healthy()
        assert running.start(command) is False  # the same address: already running
    finally:
        running.stop()
    assert running.pid() is None


def test_mlops_serve_background_on_another_port_says_so_and_stops_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """What `mlops serve --background` did without SERVING_PORT: stop the server started on
    another port and start one on 8000. It refuses now, in one line, and stops nothing."""
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    running, command = _web(home, port)
    assert running.start(command, wait_seconds=30)
    pid = running.pid()
    try:
        monkeypatch.setenv("MLOPS_HOME", str(home))
        monkeypatch.setenv("MODEL_NAME", "any")
        monkeypatch.delenv("SERVING_PORT", raising=False)
        assert run(["serve", "--background", "--port", str(free_port())]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        assert f"runs for http://127.0.0.1:{port}/health" in err[0]
        assert "it was left running" in err[0]
        assert running.pid() == pid
    finally:
        running.stop()
