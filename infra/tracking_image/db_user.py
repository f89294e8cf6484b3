"""The application's own MySQL user: MLflow's two databases, nothing else.

RDS manages the master password and rotates it every 7 days; a server connected as the
master would fail its next new connection after a rotation. The entrypoint therefore uses
the master login once, at start, to create (or re-password) this user, and MLflow connects
as it. Its password is its own secret's; putting a new value there and starting a new task
rotates it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import sqlalchemy as sa

NAME = re.compile(r"^[A-Za-z0-9_]{1,32}$")


def ensure_app_user(master_uri: str, *, username: str, password: str,
                    databases: Sequence[str]) -> None:
    """Create the user if absent, set its password, grant it all of `databases` only."""
    for name in (username, *databases):
        if not NAME.match(name):
            raise ValueError(f"not a plain MySQL name: {name!r}")
    url = sa.make_url(master_uri)
    server = sa.create_engine(url.set(database=None))
    account = f"'{username}'@'%%'"  # '%' (any host), doubled for the driver's %s style
    try:
        with server.begin() as conn:
            conn.exec_driver_sql(
                f"CREATE USER IF NOT EXISTS {account} IDENTIFIED BY %s REQUIRE SSL", (password,))
            conn.exec_driver_sql(
                f"ALTER USER {account} IDENTIFIED BY %s REQUIRE SSL", (password,))
            for database in databases:
                conn.exec_driver_sql(
                    f"GRANT ALL PRIVILEGES ON `{database}`.* TO {account}", ())
    finally:
        server.dispose()
