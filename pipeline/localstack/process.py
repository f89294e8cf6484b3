"""Background services of the local stack, managed by PID file.

A service is started detached (its own session), its PID written under `.mlops/`,
and stopped by that PID and its process group only, never by name, so `make down`
cannot touch anything it did not start.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import requests

from pipeline.errors import MlopsError


class ServiceError(MlopsError):
    """A service did not start or stop as asked."""


@dataclass(frozen=True)
class ManagedProcess:
    """One background service: its command's PID file, log file and health URL.

    `probe`, when given, replaces the HTTP check for services that do not speak HTTP
    (MariaDB) or do not answer 200 to anonymous requests (the S3 server).
    """

    name: str
    home: Path
    health_url: str
    env: tuple[tuple[str, str], ...] = ()
    probe: Callable[[], bool] | None = field(default=None, compare=False)

    @property
    def pidfile(self) -> Path:
        return self.home / f"{self.name}.pid"

    @property
    def logfile(self) -> Path:
        return self.home / f"{self.name}.log"

    def pid(self) -> int | None:
        """The PID from the PID file, if that process is still alive."""
        try:
            fields = self.pidfile.read_text().split()
            pid, started = int(fields[0]), fields[1] if len(fields) > 1 else None
        except (FileNotFoundError, ValueError, IndexError):
            return None
        if started is not None and _start_time(pid) != started:
            return None  # the PID was reused by another process: not ours
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        if _is_zombie(pid):
            return None
        return pid

    def healthy(self, timeout: float = 2.0) -> bool:
        if self.probe is not None:
            return self.probe()
        try:
            return requests.get(self.health_url, timeout=timeout).status_code == 200
        except requests.RequestException:
            return False

    def recorded_url(self) -> str | None:
        """The health URL the recorded process was started for (None in older PID files)."""
        try:
            fields = self.pidfile.read_text().split()
        except FileNotFoundError:
            return None
        return fields[2] if len(fields) > 2 else None

    def start(self, command: Sequence[str], *, env: Mapping[str, str] | None = None,
              wait_seconds: float = 90.0) -> bool:
        """Start unless already running and healthy; return True if it was started now.

        A process started here for another address (another port) is never stopped to
        make room: that is refused, naming where it runs. One started for this address
        that no longer answers is restarted.
        """
        pid = self.pid()
        recorded = self.recorded_url()
        if pid is not None and recorded is None and self.healthy():
            return False  # a PID file of an older version, and this address answers
        if pid is not None and recorded != self.health_url:
            where = recorded or "an address its PID file does not record"
            raise ServiceError(
                f"{self.name}: the one started here (PID {pid}, PID file {self.pidfile}) runs "
                f"for {where}, not {self.health_url}; it was left running: stop it first "
                "(`mlops stack down`) or ask for its address")
        if pid is not None and self.healthy():
            return False
        if pid is not None:
            self.stop()
        if self.healthy():
            raise ServiceError(
                f"{self.name}: something else already answers at {self.health_url}; "
                "stop it or choose another port"
            )
        self.home.mkdir(parents=True, exist_ok=True)
        with self.logfile.open("ab") as log:
            process = subprocess.Popen(
                list(command), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, **dict(self.env), **(env or {})}, start_new_session=True,
            )
        self.pidfile.write_text(f"{process.pid} {_start_time(process.pid)} {self.health_url}\n")
        self._wait_healthy(process, wait_seconds)
        return True

    def _wait_healthy(self, process: subprocess.Popen[bytes], wait_seconds: float) -> None:
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self.pidfile.unlink(missing_ok=True)
                raise ServiceError(
                    f"{self.name} exited with code {process.returncode}: {self.last_log_line()}"
                    f" (log: {self.logfile})"
                )
            if self.healthy():
                return
            time.sleep(0.3)
        self.stop()
        raise ServiceError(
            f"{self.name} did not answer {self.health_url} within {wait_seconds:.0f} s "
            f"(log: {self.logfile})"
        )

    def stop(self, *, wait_seconds: float = 15.0) -> bool:
        """Stop the process group of the recorded PID; return True if something was stopped."""
        pid = self.pid()
        if pid is None:
            self.pidfile.unlink(missing_ok=True)
            return False
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline and self.pid() is not None:
            time.sleep(0.2)
        if self.pid() is not None:
            _signal_group(pid, signal.SIGKILL)
        self.pidfile.unlink(missing_ok=True)
        return True

    def last_log_line(self) -> str:
        try:
            lines = [ln for ln in self.logfile.read_text(errors="replace").splitlines() if ln]
        except FileNotFoundError:
            return "no log"
        errors = [ln for ln in lines if _ERROR_LINE.search(ln)]
        return (errors or lines or ["no output"])[-1][:300]


_ERROR_LINE = re.compile(r"Error\b|\berror\b|\[ERROR\]|Fatal|FATAL")


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return
    except PermissionError:
        os.kill(pid, sig)


def _proc_stat(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, IndexError):
        return []


def _is_zombie(pid: int) -> bool:
    fields = _proc_stat(pid)
    return bool(fields) and fields[0] == "Z"


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot: PID plus this is unique."""
    fields = _proc_stat(pid)
    return fields[19] if len(fields) > 19 else "unknown"


# MLflow 3's server also starts a job runner with a dozen huey workers for GenAI
# features this product does not use; off, the server starts faster, uses less memory
def venv_bin(program: str) -> str:
    """A console script installed beside the running interpreter."""
    return str(Path(sys.executable).parent / program)


def free_port() -> int:
    """A port the kernel says is free on loopback now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers_http(url: str) -> bool:
    """Any HTTP answer counts: the S3 server says 403 to anonymous requests."""
    try:
        requests.get(url, timeout=2)
    except requests.RequestException:
        return False
    return True


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (it holds secrets)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    path.chmod(0o600)


