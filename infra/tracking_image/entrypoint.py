"""Start the MLflow tracking server inside the tracking image.

ECS fills the environment: DB_HOST, DB_PORT, DB_NAME, DB_APP_USERNAME, MLOPS_EXPERIMENT,
MLOPS_MODEL_NAME, MLOPS_LOGINS, and from Secrets Manager DB_USERNAME and DB_PASSWORD (the
RDS-managed master secret), DB_APP_PASSWORD (the application user's), the admin's
MLFLOW_AUTH_ADMIN_PASSWORD and MLFLOW_FLASK_SERVER_SECRET_KEY (the key that signs the UI's
CSRF tokens, the same in every task). In order, this script:

1. makes the application user (`db_user.py`) with the master login: its own password, the
   two databases of MLflow and nothing else. The server connects as it, so the weekly
   rotation of the master password by RDS changes nothing for a running server; a new
   application password (put in its secret) takes effect on the next task start;
2. prepares the basic-auth user store in its own database (auth_store.py: MLflow's first
   auth migration fails on MySQL) and runs `mlflow db upgrade`, so a newer MLflow migrates
   the schema before the server starts instead of failing its health check;
3. writes the auth config, forks the login keeper (`logins.py`: once the server answers,
   the declared logins and grants are made and read back; a disagreement stops the
   server) and replaces itself with `mlflow server ARGS...`.

The passwords reach MLflow through its environment and are never written to disk.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from urllib.parse import quote

import logins
from auth_store import auth_database_name, prepare_auth_store
from db_user import ensure_app_user

REQUIRED = (
    "DB_HOST",
    "DB_PORT",
    "DB_NAME",
    "DB_USERNAME",
    "DB_PASSWORD",
    "DB_APP_USERNAME",
    "DB_APP_PASSWORD",
    "MLFLOW_AUTH_ADMIN_USERNAME",
    "MLFLOW_AUTH_ADMIN_PASSWORD",
    "MLFLOW_FLASK_SERVER_SECRET_KEY",
)
AUTHORIZATION_FUNCTION = "mlops_auth:authenticate_request"
"""MLflow's basic auth plus the path rule (mlops_auth.py), as in the local mysql stack."""
RDS_CA_BUNDLE = "/etc/ssl/certs/rds-global-bundle.pem"
AUTH_CONFIG_PATH = "/tmp/mlflow-auth/basic_auth.ini"  # noqa: S108 - private to the container


class EntrypointError(Exception):
    """The container was started without what it needs; the message is one line."""


def missing_settings(env: Mapping[str, str]) -> list[str]:
    return [name for name in REQUIRED if not env.get(name)]


def backend_store_uri(env: Mapping[str, str], *, ca_bundle: str = RDS_CA_BUNDLE,
                      login: str = "DB_APP") -> str:
    """`mysql+pymysql://` URI with the credentials quoted and TLS verified against RDS's CA;
    `login` names the environment pair (`DB_APP`: the application user, `DB`: the master)."""
    user = quote(env[f"{login}_USERNAME"], safe="")
    password = quote(env[f"{login}_PASSWORD"], safe="")
    return (
        f"mysql+pymysql://{user}:{password}@{env['DB_HOST']}:{env['DB_PORT']}/{env['DB_NAME']}"
        f"?charset=utf8mb4&ssl_ca={quote(ca_bundle)}"
    )


def auth_config(*, database_uri: str, admin_username: str) -> str:
    """The basic-auth app's config: users in MySQL, nobody may read anything by default."""
    # configparser interpolates '%', which the quoted URI contains: escape it.
    escaped = database_uri.replace("%", "%%")
    return (
        "[mlflow]\n"
        "default_permission = NO_PERMISSIONS\n"
        f"database_uri = {escaped}\n"
        f"admin_username = {admin_username}\n"
        f"authorization_function = {AUTHORIZATION_FUNCTION}\n"
        # Checking a password costs a deliberately slow hash (~1 s on half a vCPU); a
        # known one is trusted for a minute per worker, as on the local stack.
        "auth_cache_ttl_seconds = 60\n"
    )


def upgrade_schema(uri: str) -> None:
    """`mlflow db upgrade`: the tracking schema migrated to this MLflow before it serves."""
    done = subprocess.run(["mlflow", "db", "upgrade", uri], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise EntrypointError(f"mlflow db upgrade failed: {last}")


def prepare(env: Mapping[str, str], *, config_path: Path,
            store: Callable[..., str] = prepare_auth_store,
            app_user: Callable[..., None] = ensure_app_user,
            upgrade: Callable[[str], None] = upgrade_schema) -> dict[str, str]:
    """Make the application user, prepare the user store, upgrade the schema, write the
    auth config and return the environment `mlflow server` runs with."""
    missing = missing_settings(env)
    if missing:
        raise EntrypointError(f"missing environment: {', '.join(missing)} (set by the ECS task)")
    auth_database = auth_database_name(env["DB_NAME"])
    app_user(backend_store_uri(env, login="DB"), username=env["DB_APP_USERNAME"],
             password=env["DB_APP_PASSWORD"], databases=(env["DB_NAME"], auth_database))
    uri = backend_store_uri(env)
    auth_uri = store(uri, database=auth_database)
    upgrade(uri)
    config_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    config_path.write_text(
        auth_config(database_uri=auth_uri, admin_username=env["MLFLOW_AUTH_ADMIN_USERNAME"])
    )
    config_path.chmod(0o600)
    run_env = {name: value for name, value in env.items()
               if name not in {"DB_PASSWORD", "DB_APP_PASSWORD"}}
    run_env["MLFLOW_BACKEND_STORE_URI"] = uri
    run_env["MLFLOW_AUTH_CONFIG_PATH"] = str(config_path)
    return run_env


def local_uri(argv: Sequence[str]) -> str:
    """The server as the task itself reaches it: loopback, on the port of `--port`."""
    port = argv[list(argv).index("--port") + 1] if "--port" in argv else "5000"
    return f"http://localhost:{port}"


def keep_logins(run_env: Mapping[str, str], uri: str, *,
                wait_seconds: float = 600.0) -> None:
    """In a child process: once the server answers, apply the declared logins; on failure,
    say why in one line and stop the server (ECS then replaces the task)."""
    import requests

    declared = logins.parse_logins(run_env.get("MLOPS_LOGINS", ""))
    os.environ["MLFLOW_TRACKING_USERNAME"] = run_env["MLFLOW_AUTH_ADMIN_USERNAME"]
    os.environ["MLFLOW_TRACKING_PASSWORD"] = run_env["MLFLOW_AUTH_ADMIN_PASSWORD"]
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            if requests.get(f"{uri}/health", timeout=5).status_code == 200:
                break
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise logins.LoginsError(f"the server did not answer {uri}/health")
        time.sleep(1)
    created = logins.apply(uri, declared, experiment=run_env["MLOPS_EXPERIMENT"],
                           model=run_env["MLOPS_MODEL_NAME"],
                           write_secret=logins.secrets_manager_writer())
    print(f"logins: {len(declared)} checked, created: {', '.join(created) or 'none'}",
          file=sys.stderr, flush=True)


def _fork_login_keeper(run_env: Mapping[str, str], uri: str) -> None:
    server_pid = os.getpid()
    if os.fork() != 0:
        return
    if os.fork() != 0:  # the grandchild is reparented to the init process, which reaps it
        os._exit(0)
    try:
        keep_logins(run_env, uri)
    except Exception as error:
        print(f"error: logins: {error}", file=sys.stderr, flush=True)
        os.kill(server_pid, signal.SIGTERM)
        os._exit(1)
    os._exit(0)


def main(argv: Sequence[str]) -> None:
    try:
        run_env = prepare(os.environ, config_path=Path(AUTH_CONFIG_PATH))
        if run_env.get("MLOPS_LOGINS"):
            logins.parse_logins(run_env["MLOPS_LOGINS"])  # refuse a bad table before starting
    except (EntrypointError, logins.LoginsError) as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    if run_env.get("MLOPS_LOGINS"):
        _fork_login_keeper(run_env, local_uri(argv))
    os.execvpe("mlflow", ["mlflow", "server", *argv], run_env)  # noqa: S606 - argv, no shell


if __name__ == "__main__":
    main(sys.argv[1:])
