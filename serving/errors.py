"""The server's domain errors, and the status and message each is answered with.

Parsers and the scoring core raise these and know nothing of HTTP. Each protocol's
router renders them in its own shape (`serving.protocols`); the status and the words
are decided here, once. Messages name the column and the rule and never repeat the
values that were sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

MAX_PROBLEMS = 20


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input: where (`loc`), which rule (`type`), and why."""

    loc: tuple[str | int, ...]
    msg: str
    type: str

    def as_dict(self) -> dict[str, Any]:
        return {"loc": list(self.loc), "msg": self.msg, "type": self.type}

    def line(self) -> str:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in self.loc)
        return f"{where.lstrip('.') or 'body'}: {self.msg}"


class InputError(Exception):
    """The caller's mistake (4xx)."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)[:MAX_PROBLEMS]
        super().__init__(self.problems[0].line() if self.problems else "invalid input")


def input_error(loc: tuple[str | int, ...], message: str, kind: str) -> InputError:
    """An `InputError` of one problem."""
    return InputError([Problem(loc, message, kind)])


class ModelFailure(Exception):
    """The model raised or returned nonsense on valid input: our fault (5xx)."""


class BodyTooLarge(Exception):
    """The body is over the configured size (413)."""


class NoModel(Exception):
    """No verified model loaded yet (503)."""


class UnsupportedMediaType(Exception):
    """A body that is neither JSON nor CSV, or not UTF-8 (415, as MLflow)."""


class Overloaded(Exception):
    """The queue is full (503 with Retry-After)."""


class DeadlineExceeded(Exception):
    """No answer within the request deadline (504)."""


class NotFound(Exception):
    """No such model or version here (404)."""


@dataclass(frozen=True)
class Refusal:
    """How one domain error is answered: its status, its kind, and its words."""

    status: int
    kind: str
    message: str | None = None  # None: the error's own message


REFUSALS: dict[type[Exception], Refusal] = {
    BodyTooLarge: Refusal(413, "too_large",
                          "the body is larger than this server accepts (SERVING_MAX_BODY_BYTES)"),
    NoModel: Refusal(503, "not_ready", "no model loaded yet; see /model"),
    Overloaded: Refusal(503, "overloaded", "too many requests are waiting; retry after a moment"),
    DeadlineExceeded: Refusal(504, "deadline",
                              "no prediction within the deadline (SERVING_DEADLINE_SECONDS)"),
    UnsupportedMediaType: Refusal(415, "media_type", "this server accepts application/json "
                                  "and text/csv bodies, UTF-8 only"),
    NotFound: Refusal(404, "not_found"),
}


def problems_of(err: ValidationError, prefix: tuple[str | int, ...] = ()) -> list[Problem]:
    """pydantic's errors without the input values (`include_input=False`)."""
    problems = []
    for item in err.errors(include_input=False, include_url=False, include_context=False):
        loc = tuple(short(p) for p in item["loc"])
        problems.append(Problem(loc=prefix + loc, msg=_rule(item["type"], item["msg"]),
                                type=item["type"]))
    return problems


def _rule(kind: str, msg: str) -> str:
    if kind == "extra_forbidden":
        return "unknown column: not in the model signature"
    if kind == "missing":
        return "missing: required by the model signature"
    if kind == "json_invalid":
        return "the body is not valid JSON"
    return msg


def short(part: str | int) -> str | int:
    """A key from the payload names the column; a long one is cut, never echoed whole."""
    return part if isinstance(part, int) else part[:64]
