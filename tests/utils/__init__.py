"""Helpers shared by the test layers: ports, the CLI as a subprocess, small cards."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.localstack.process import ManagedProcess

REPO = Path(__file__).resolve().parents[2]
MLOPS = str(Path(sys.executable).parent / "mlops")


def missing_service(reason: str) -> None:
    """Skip a test whose service is absent, or fail it where nothing may be left out.

    `.ci/run` sets MLOPS_REQUIRE_ALL=1 (and GitHub sets CI): there `make test` has
    installed and started every service, so an absent one is a failure, not a skip.
    """
    import pytest  # the helpers are imported by scripts too; pytest only here

    if os.environ.get("MLOPS_REQUIRE_ALL") == "1" or os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], bool], *, what: str, seconds: float = 90,
             interval: float = 0.1, process: ManagedProcess | None = None) -> float:
    """Poll `condition` until true; return how long it took. A bound, not a timing check:
    on giving up it fails naming `what`, with the last log line of `process` if given."""
    begin = time.monotonic()
    while not condition():
        if time.monotonic() - begin > seconds:
            log = process.last_log_line() if process else ""
            raise AssertionError(f"gave up waiting for {what} after {seconds} s {log}".rstrip())
        time.sleep(interval)
    return time.monotonic() - begin


def run_mlops(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
              timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the installed `mlops` console script the way a workflow step does."""
    return subprocess.run(
        [MLOPS, *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})}, cwd=cwd or REPO, check=False,
    )


class JsonHandler(BaseHTTPRequestHandler):
    """Base of the small real HTTP servers that stand in for outside APIs in tests."""

    def log_message(self, *args: Any) -> None:
        pass

    def send_json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
