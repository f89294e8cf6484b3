"""Request IDs and one structured access-log line per request.

The ID is the caller's `X-Request-ID` when it is a plausible one (1 to 128 characters
of letters, digits and `._:-`, so nothing can be injected into a log line), otherwise
a new one; either way it is returned in the response header, set on every log record
of the request (`request_id`) and used as the reference of a 500. asgi-correlation-id
keeps it in a context variable; the access log is written by `AccessLogMiddleware`.
"""

from __future__ import annotations

import logging
import re
import time

from asgi_correlation_id import CorrelationIdMiddleware, correlation_id
from asgi_correlation_id.log_filters import CorrelationIdFilter
from starlette.types import ASGIApp, Receive, Scope, Send

from serving.metrics import ResponseStatus

REQUEST_ID_HEADER = "X-Request-ID"
_PLAUSIBLE = re.compile(r"[A-Za-z0-9._:\-]{1,128}")

access_log = logging.getLogger("serving.access")

__all__ = ["REQUEST_ID_HEADER", "AccessLogMiddleware", "CorrelationIdMiddleware",
           "RequestIdFilter", "plausible_request_id", "request_id"]


def plausible_request_id(value: str) -> bool:
    return _PLAUSIBLE.fullmatch(value) is not None


def request_id() -> str | None:
    """The ID of the request being handled (None outside a request)."""
    return correlation_id.get()


class RequestIdFilter(CorrelationIdFilter):
    """Puts `request_id` on every log record (empty outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = correlation_id.get() or ""
        return True


class AccessLogMiddleware:
    """One line per request: method, path, status, duration, model version, request ID.

    The route that scored the request records the version in the request's state
    (`model_version`), so the line names the model that answered, not the one loaded
    by the time the line is written.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = ResponseStatus(send)
        try:
            await self.app(scope, receive, status.send)
        finally:
            if access_log.isEnabledFor(logging.INFO):
                state = scope.get("state") or {}
                access_log.info("%s %s %s", scope["method"], scope["path"], status.code,
                                extra={"method": scope["method"], "path": scope["path"],
                                       "status": status.code,
                                       "duration_ms": round(
                                           (time.perf_counter() - started) * 1000, 3),
                                       "model_version": state.get("model_version"),
                                       "request_id": correlation_id.get()})
