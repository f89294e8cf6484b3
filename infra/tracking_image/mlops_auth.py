"""The tracking server's request check: MLflow's basic auth plus three rules of our own.

Both deployments configure `authenticate_request` as `authorization_function` in their
basic_auth.ini (the cloud image and the local mysql stack, which puts this folder on the
server's PYTHONPATH), so every rule answers before any MLflow handler runs. It imports
only MLflow and Flask: it runs inside `mlflow server`, not in our packages.

1. **Paths.** MLflow refuses `..` in artifact paths, but on POSIX it accepts backslashes
   and stores them as literal characters of the S3 key (`..\\x.txt`). Such a key becomes a
   path traversal on any Windows client that downloads it, and a missing one is answered
   with a 500. Refused with a 400.
2. **Creating.** MLflow lets every logged-in user create experiments, registered models
   (and prompts, which are registered models) and gateway secrets unless workspaces are
   on. Here creating needs a grant to create, MLflow's own notion of it: a workspace-wide
   grant that can `USE` (a role in the default workspace holding `workspace * USE`).
   Admins keep it. A read-only user therefore changes nothing, it only reads.
3. **The production pointer.** MLflow's EDIT (`can_update`) on a registered model covers
   registering versions *and* moving its aliases, stages and version tags. Here moving an
   alias, transitioning a stage, renaming the model and writing any version tag but
   `registered_by` need MANAGE on the model: training registers versions with EDIT,
   promotion (MANAGE) alone moves `production` and writes the manifest the server
   verifies.

Refusals are MLflow's own 403 (`PERMISSION_DENIED`), so clients report them as any other.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from urllib.parse import unquote

from flask import Response, g, request
from mlflow.server.auth import authenticate_request_basic_auth
from werkzeug.datastructures import Authorization

AUTHORIZATION_FUNCTION = "mlops_auth:authenticate_request"
_PATH_ARGUMENTS = ("path", "artifact_path")
WRITER_TAGS = frozenset({"registered_by"})
"""Version tags a model's EDIT holder may write (the training DAG's audit tag); every
other version tag (the manifest, verdicts, promotion's audit tags) is MANAGE's."""
_CHECKING = "mlops_auth_checking"  # flask.g: a rule is being evaluated for this request


def unsafe_path(path: str) -> bool:
    """A path (decoded up to three times) with a backslash or a `..` segment."""
    for _ in range(3):
        if "\\" in path or ".." in path.split("/"):
            return True
        decoded = unquote(path)
        if decoded == path:
            return False
        path = decoded
    return True  # still encoded after three rounds: no honest client sends that


@cache
def _routes() -> tuple[frozenset[tuple[str, str]], frozenset[tuple[str, str]]]:
    """(creating routes, production-pointer routes) as (path, method), from MLflow's own
    route table, so the REST and the UI (ajax) paths of each operation are both covered."""
    from mlflow.protos.model_registry_pb2 import (
        CreateRegisteredModel,
        DeleteModelVersionTag,
        DeleteRegisteredModelAlias,
        ModelRegistryService,
        RenameRegisteredModel,
        SetModelVersionTag,
        SetRegisteredModelAlias,
        TransitionModelVersionStage,
    )
    from mlflow.protos.service_pb2 import CreateExperiment, CreateGatewaySecret, MlflowService
    from mlflow.server.handlers import get_service_endpoints

    creating = {CreateExperiment, CreateRegisteredModel, CreateGatewaySecret}
    pointer = {SetRegisteredModelAlias, DeleteRegisteredModelAlias, TransitionModelVersionStage,
               RenameRegisteredModel, SetModelVersionTag, DeleteModelVersionTag}
    endpoints = [*get_service_endpoints(MlflowService, lambda message: message),
                 *get_service_endpoints(ModelRegistryService, lambda message: message)]

    def of(kinds: set[type]) -> frozenset[tuple[str, str]]:
        return frozenset((path, method) for path, message, methods in endpoints
                         if message in kinds for method in methods)

    return of(creating), of(pointer)


def _forbidden(message: str) -> Response:
    return Response(f'{{"error_code": "PERMISSION_DENIED", "message": "{message}"}}',
                    status=403, mimetype="application/json")


def may_create(username: str) -> bool:
    """An admin, or a user holding a workspace-wide grant that can USE (MLflow's grant to
    create). With workspaces on, MLflow checks exactly this itself."""
    from mlflow.environment_variables import MLFLOW_ENABLE_WORKSPACES
    from mlflow.server.auth import store
    from mlflow.server.auth.permissions import RESOURCE_TYPE_WORKSPACE, GrantLoadKey
    from mlflow.server.auth.requirements import fold_grants_for_key
    from mlflow.utils.workspace_utils import DEFAULT_WORKSPACE_NAME

    if MLFLOW_ENABLE_WORKSPACES.get():
        return True
    user = store.get_user(username)
    if user.is_admin:
        return True
    grants = store.list_grants(user.id, DEFAULT_WORKSPACE_NAME, ())
    permission = fold_grants_for_key(grants, GrantLoadKey(RESOURCE_TYPE_WORKSPACE, "*"))
    return permission is not None and permission.can_use


def may_move_pointer(username: str) -> bool:
    """An admin, or MANAGE on the model the request names. A request naming no existing
    model is left to MLflow's own check (it answers 404 or 403)."""
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth import _get_registered_model_permission, _get_request_param, store

    if store.get_user(username).is_admin:
        return True
    if (request.path.endswith("/model-versions/set-tag") or request.path.endswith(
            "/model-versions/delete-tag")) and _get_request_param("key") in WRITER_TAGS:
        return True
    try:
        return _get_registered_model_permission(_get_request_param("name")).can_manage
    except MlflowException:
        return True


def _rule(authorization: Authorization) -> Response | None:
    """The refusal of rule 2 or 3 for this request, or None."""
    creating, pointer = _routes()
    route = (request.path, request.method)
    username = authorization.username or ""
    checks: list[tuple[Callable[[str], bool], str]] = []
    if route in creating:
        checks.append((may_create, "creating needs a grant to create (workspace USE)"))
    if route in pointer:
        checks.append((may_move_pointer, "aliases, stages and version tags need MANAGE "
                                         "on the model"))
    for allowed, reason in checks:
        setattr(g, _CHECKING, authorization)
        try:
            if not allowed(username):
                return _forbidden(f"Permission denied: {reason}")
        finally:
            delattr(g, _CHECKING)
    return None


def authenticate_request() -> Authorization | Response:
    """Authenticate first (an anonymous caller learns nothing), then the rules."""
    checking = getattr(g, _CHECKING, None)
    if checking is not None:  # MLflow's permission helpers ask who is calling
        return checking  # type: ignore[no-any-return]
    authorization = authenticate_request_basic_auth()
    if isinstance(authorization, Response):
        return authorization
    candidates = [request.path, *(request.args.get(key, "") for key in _PATH_ARGUMENTS)]
    if any(unsafe_path(candidate) for candidate in candidates):
        return Response('{"error_code": "INVALID_PARAMETER_VALUE", "message": "Invalid path"}',
                        status=400, mimetype="application/json")
    return _rule(authorization) or authorization
