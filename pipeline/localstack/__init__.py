"""The services `mlops stack` runs on this machine: the embedded default (SQLite) and
the production-like backend (MariaDB, S3 protocol, basic auth), each by PID file."""

from __future__ import annotations

from enum import StrEnum


class Backend(StrEnum):
    """Where the tracking server keeps runs and artifacts."""

    sqlite = "sqlite"  # the embedded default: SQLite file, local artifact folder
    mysql = "mysql"  # production-like: MariaDB, S3 protocol artifacts, basic auth


BACKENDS = tuple(b.value for b in Backend)
