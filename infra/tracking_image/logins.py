"""One MLflow login per consumer, with the least permission, created and checked at start.

The stack declares the logins (`MLOPS_LOGINS`: username, role, the Secrets Manager secret
its consumer reads); this module says what each role may do, and `apply` makes the
server agree, as the admin, through MLflow's own clients:

- the experiment and the registered model exist (pre-created, so no login needs to
  create anything: the auth plugin refuses creating without a grant to create);
- each login exists; a new one gets a generated password, written to its secret first
  (the task may write these secrets, never read them: only the consumer reads its own);
- each login holds exactly its role's grants, read back from the server (`check`).

| role | experiment | model | logged models | who |
|---|---|---|---|---|
| reader | READ | READ | - | serving, the gate, the image test, drift, scoring |
| trainer | EDIT | EDIT | - | MWAA, the EMR training job |
| promoter | READ | MANAGE | EDIT | promote and rollback |

EDIT on the model registers versions; aliases, stages and promotion's tags need MANAGE
(the auth plugin). The promoter's logged-model EDIT writes the twin it compiles into the
version's model folder.

Nothing here reads a password but the admin's; the process exits non-zero (and the
entrypoint stops the server) when the server and the table disagree.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

EXPERIMENT = "experiment"
MODEL = "registered_model"
LOGGED_MODELS = "logged_model"


@dataclass(frozen=True)
class Grant:
    resource_type: str
    permission: str


ROLES: dict[str, dict[str, str]] = {
    "reader": {EXPERIMENT: "READ", MODEL: "READ"},
    "trainer": {EXPERIMENT: "EDIT", MODEL: "EDIT"},
    "promoter": {EXPERIMENT: "READ", MODEL: "MANAGE", LOGGED_MODELS: "EDIT"},
}
"""role -> resource type -> permission. Logged-model grants are wildcard-only in MLflow
3.17; with READ on one experiment only, the promoter writes the logged models of that
experiment (the registered versions' folders) and no run of it."""


class LoginsError(Exception):
    """The server disagrees with the declared logins; the message is one line."""


@dataclass(frozen=True)
class Login:
    username: str
    role: str
    secret: str  # the Secrets Manager ARN its consumer reads

    def grants(self) -> dict[str, str]:
        return ROLES[self.role]


def parse_logins(text: str) -> list[Login]:
    """`MLOPS_LOGINS`: a JSON list of {"username", "role", "secret"}."""
    try:
        items = json.loads(text or "[]")
        logins = [Login(str(i["username"]), str(i["role"]), str(i["secret"])) for i in items]
    except (ValueError, TypeError, KeyError) as err:
        raise LoginsError(f"MLOPS_LOGINS is not a list of username/role/secret: {err}") from None
    unknown = sorted({login.role for login in logins} - set(ROLES))
    if unknown:
        raise LoginsError(f"MLOPS_LOGINS names unknown roles {unknown}; known: {sorted(ROLES)}")
    return logins


SecretWriter = Callable[[str, str], None]
"""(secret ARN, value) -> None: writes a new version of a secret (boto3 in the task)."""


def secrets_manager_writer() -> SecretWriter:
    import boto3

    client = boto3.client("secretsmanager")

    def put(arn: str, value: str) -> None:
        client.put_secret_value(SecretId=arn, SecretString=value)

    return put


def resource_ids(*, experiment_id: str, model: str) -> dict[str, str]:
    return {EXPERIMENT: experiment_id, MODEL: model, LOGGED_MODELS: "*"}


def ensure_resources(tracking_uri: str, *, experiment: str, model: str) -> str:
    """Create the experiment and the registered model if absent; the experiment's ID."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    try:
        client.get_registered_model(model)
    except MlflowException:
        client.create_registered_model(model)
    return str(experiment_id)


def ensure_user(auth: object, login: Login, write_secret: SecretWriter) -> bool:
    """Create the user if absent (password to its secret first); True when created."""
    from mlflow.exceptions import RestException

    try:
        auth.get_user(login.username)  # type: ignore[attr-defined]
        return False
    except RestException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
    password = secrets.token_urlsafe(30)
    write_secret(login.secret, json.dumps({"username": login.username, "password": password}))
    auth.create_user(login.username, password)  # type: ignore[attr-defined]
    return True


def _effective(auth: object, username: str, resource_type: str, resource_id: str) -> str:
    return str(auth.get_user_permission(  # type: ignore[attr-defined]
        username, resource_type, resource_id).permission)


def ensure_grants(auth: object, login: Login, ids: Mapping[str, str]) -> None:
    """Grant the role's permissions; a grant that differs is replaced."""
    from mlflow.exceptions import RestException

    for resource_type, permission in login.grants().items():
        resource = ids[resource_type]
        try:
            auth.grant_user_permission(  # type: ignore[attr-defined]
                login.username, resource_type, resource, permission)
        except RestException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            if _effective(auth, login.username, resource_type, resource) == permission:
                continue
            auth.revoke_user_permission(  # type: ignore[attr-defined]
                login.username, resource_type, resource)
            auth.grant_user_permission(  # type: ignore[attr-defined]
                login.username, resource_type, resource, permission)


def check(auth: object, logins: Sequence[Login], ids: Mapping[str, str]) -> None:
    """Read each login's effective permission on what its role names back."""
    for login in logins:
        for resource_type, want in login.grants().items():
            got = _effective(auth, login.username, resource_type, ids[resource_type])
            if got != want:
                raise LoginsError(f"login {login.username}: {got} on {resource_type} "
                                  f"{ids[resource_type]}, declared {want}")


def apply(tracking_uri: str, logins: Sequence[Login], *, experiment: str, model: str,
          write_secret: SecretWriter) -> list[str]:
    """Make the server hold exactly the declared logins (as the admin: MLflow reads the
    admin's credentials from MLFLOW_TRACKING_USERNAME/PASSWORD); the usernames created."""
    from mlflow.server.auth.client import AuthServiceClient

    ids = resource_ids(experiment_id=ensure_resources(tracking_uri, experiment=experiment,
                                                      model=model), model=model)
    auth = AuthServiceClient(tracking_uri)
    created = [login.username for login in logins if ensure_user(auth, login, write_secret)]
    for login in logins:
        ensure_grants(auth, login, ids)
    check(auth, logins, ids)
    return created
