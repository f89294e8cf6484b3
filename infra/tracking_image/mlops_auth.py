"""The tracking server's request check: MLflow's basic auth plus one path rule.

MLflow refuses `..` in artifact paths, but on POSIX it accepts backslashes and stores
them as literal characters of the S3 key (`..\\x.txt`). Such a key becomes a path
traversal on any Windows client that downloads it, and a missing one is answered with a
500. Both deployments configure this function as `authorization_function` in their
basic_auth.ini (the cloud image and the local mysql stack, which puts this folder on the
server's PYTHONPATH), so the server refuses such paths with a 400 before any handler runs.
It imports only MLflow and Flask: it runs inside `mlflow server`, not in our packages.
"""

from __future__ import annotations

from urllib.parse import unquote

from flask import Response, request
from mlflow.server.auth import authenticate_request_basic_auth
from werkzeug.datastructures import Authorization

AUTHORIZATION_FUNCTION = "mlops_auth:authenticate_request"
_PATH_ARGUMENTS = ("path", "artifact_path")


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


def authenticate_request() -> Authorization | Response:
    """Authenticate first (an anonymous caller learns nothing), then check the paths."""
    authorization = authenticate_request_basic_auth()
    if isinstance(authorization, Response):
        return authorization
    candidates = [request.path, *(request.args.get(key, "") for key in _PATH_ARGUMENTS)]
    if any(unsafe_path(candidate) for candidate in candidates):
        return Response('{"error_code": "INVALID_PARAMETER_VALUE", "message": "Invalid path"}',
                        status=400, mimetype="application/json")
    return authorization
