"""The `mlops` command line: translation only (options in, a library call, words out).

Importing this package registers every command on `app`; `main` is the console script.
"""

from __future__ import annotations

from pipeline.cli import (  # noqa: F401 - registers
    card,
    data,
    gitops,
    monitor,
    registry,
    runs,
    score,
    serving,
    stack,
    train,
)
from pipeline.cli.app import app, main, run

__all__ = ["app", "main", "run"]
