"""The basic-auth user store on MySQL: its own database, created so MLflow's migrations run.

MLflow's first auth migration (8606fa83a998) names the foreign keys of two tables
`fk_user_id`; MySQL wants foreign key names unique per database and refuses the second
table (errno 121, mlflow/mlflow#9642). This module creates that first revision's three
tables itself, with one name per foreign key and otherwise the same columns. MLflow then
finds a store from before it tracked revisions, stamps it with the first revision and
runs every later migration (their constraint names are unique). The store gets a
database of its own beside the tracking database on the same server, so the two
schemas never share a namespace. Idempotent: an existing store is left to MLflow.
"""

from __future__ import annotations

import sqlalchemy as sa

AUTH_DATABASE_SUFFIX = "_auth"


def auth_database_name(tracking_database: str) -> str:
    return f"{tracking_database}{AUTH_DATABASE_SUFFIX}"


def _first_revision(metadata: sa.MetaData) -> None:
    """MLflow's auth revision 8606fa83a998, with a distinct name for each foreign key."""
    sa.Table(
        "users", metadata,
        sa.Column("id", sa.Integer(), nullable=False, primary_key=True),
        sa.Column("username", sa.String(length=255), nullable=True),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        sa.Column("is_admin", sa.Boolean(), nullable=True),
        sa.UniqueConstraint("username"),
    )
    for table, resource, unique in (("experiment_permissions", "experiment_id",
                                     ("experiment_id", "user_id", "unique_experiment_user")),
                                    ("registered_model_permissions", "name",
                                     ("name", "user_id", "unique_name_user"))):
        sa.Table(
            table, metadata,
            sa.Column("id", sa.Integer(), nullable=False, primary_key=True),
            sa.Column(resource, sa.String(length=255), nullable=False),
            sa.Column("user_id", sa.Integer(), nullable=False),
            sa.Column("permission", sa.String(length=255), nullable=True),
            sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=f"fk_{table}_user_id"),
            sa.UniqueConstraint(unique[0], unique[1], name=unique[2]),
        )  # fmt: skip


def prepare_auth_store(server_uri: str, *, database: str) -> str:
    """Create `database` and the first revision's tables if absent; return the store's URI.

    `server_uri` is a `mysql+pymysql://` URI whose path names the tracking database; the
    store's URI is the same with `database` instead, query (TLS settings) kept.
    """
    url = sa.make_url(server_uri)
    no_database = sa.engine.URL.create(url.drivername, username=url.username,
                                       password=url.password, host=url.host, port=url.port,
                                       query=url.query)
    server = sa.create_engine(no_database)
    try:
        with server.begin() as conn:
            conn.execute(sa.text(f"CREATE DATABASE IF NOT EXISTS `{database}` "
                                 "CHARACTER SET utf8mb4"))
    finally:
        server.dispose()
    store_url = url.set(database=database)
    engine = sa.create_engine(store_url)
    try:
        if "users" not in sa.inspect(engine).get_table_names():
            metadata = sa.MetaData()
            _first_revision(metadata)
            metadata.create_all(engine)
    finally:
        engine.dispose()
    return store_url.render_as_string(hide_password=False)
