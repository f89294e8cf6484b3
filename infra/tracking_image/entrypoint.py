"""Start the MLflow tracking server inside the tracking image.

ECS fills the environment: DB_HOST, DB_PORT, DB_NAME, and from Secrets Manager DB_USERNAME
and DB_PASSWORD (the RDS-managed master secret), MLFLOW_AUTH_ADMIN_PASSWORD and
MLFLOW_FLASK_SERVER_SECRET_KEY (the key that signs the UI's CSRF tokens, the same in every
task). This script builds the backend store URI (TLS to RDS), prepares the basic-auth user
store in its own database on the same server (auth_store.py: MLflow's first auth migration
fails on MySQL), writes the config that points at it, and replaces itself with
`mlflow server ARGS...`. The passwords are read by MLflow from the environment and never
written to disk.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from urllib.parse import quote

from auth_store import auth_database_name, prepare_auth_store

REQUIRED = (
    "DB_HOST",
    "DB_PORT",
    "DB_NAME",
    "DB_USERNAME",
    "DB_PASSWORD",
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


def backend_store_uri(env: Mapping[str, str], *, ca_bundle: str = RDS_CA_BUNDLE) -> str:
    """`mysql+pymysql://` URI with the credentials quoted and TLS verified against RDS's CA."""
    user = quote(env["DB_USERNAME"], safe="")
    password = quote(env["DB_PASSWORD"], safe="")
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


def prepare(env: Mapping[str, str], *, config_path: Path,
            store: Callable[..., str] = prepare_auth_store) -> dict[str, str]:
    """Prepare the user store, write the auth config and return the environment
    `mlflow server` runs with."""
    missing = missing_settings(env)
    if missing:
        raise EntrypointError(f"missing environment: {', '.join(missing)} (set by the ECS task)")
    uri = backend_store_uri(env)
    auth_uri = store(uri, database=auth_database_name(env["DB_NAME"]))
    config_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    config_path.write_text(
        auth_config(database_uri=auth_uri, admin_username=env["MLFLOW_AUTH_ADMIN_USERNAME"])
    )
    config_path.chmod(0o600)
    run_env = {name: value for name, value in env.items() if name != "DB_PASSWORD"}
    run_env["MLFLOW_BACKEND_STORE_URI"] = uri
    run_env["MLFLOW_AUTH_CONFIG_PATH"] = str(config_path)
    return run_env


def main(argv: Sequence[str]) -> None:
    try:
        run_env = prepare(os.environ, config_path=Path(AUTH_CONFIG_PATH))
    except EntrypointError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    os.execvpe("mlflow", ["mlflow", "server", *argv], run_env)  # noqa: S606 - argv, no shell


if __name__ == "__main__":
    main(sys.argv[1:])
