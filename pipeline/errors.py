"""Domain errors with the exit code they map to.

The CLI translates these in one place (`pipeline.cli.app.run`), so library code raises
with a one-line message and never prints or exits itself.
"""

from __future__ import annotations

from typing import Any

EXIT_OK = 0
EXIT_NEGATIVE = 1  # a verdict: gate failed, drift found
EXIT_BAD_INPUT = 2  # bad input or a failed precondition
EXIT_UNEXPECTED = 3  # a bug or an outside failure we did not foresee: the line has a reference


class MlopsError(Exception):
    """A failure the user can act on; `str(err)` is the one line they see."""

    exit_code = EXIT_BAD_INPUT


class DataError(MlopsError):
    """The data does not match its declared schema or cannot be read."""


class DataProblems(DataError):
    """Every problem found in the data; the one line names the first and how many more."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = tuple(problems)
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(problems[0] + more)


class ConfigError(MlopsError):
    """A configuration file or option is invalid."""


class RegistryError(MlopsError):
    """The registry is unreachable or not in the state an operation requires."""


class NegativeVerdict(MlopsError):
    """A check ran and said no (gate failed, drift found)."""

    exit_code = EXIT_NEGATIVE


class ServingError(MlopsError):
    """The serving API is unreachable, not ready, or answered something unusable."""


def first_line(text: object, *, limit: int = 300, default: str = "unknown error") -> str:
    """The first non-blank line of a message, cut to `limit`: what a one-line error shows."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0][:limit] if lines else default


def format_validation_error(err: Any) -> str:
    """`field.path: reason` for each problem of a pydantic ValidationError, on one line."""
    parts = []
    for problem in err.errors():
        where = ".".join(str(p) for p in problem["loc"]) or "(top level)"
        parts.append(f"{where}: {problem['msg']}")
    return "; ".join(parts)
