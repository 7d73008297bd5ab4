"""Alembic environment for the store: runs on the connection :meth:`bridge.store.Store.migrate` hands over.

Run by ``Store.migrate()`` (no alembic.ini needed). For ``alembic`` on the command line, pass
``-x url=sqlite:///bridge.db`` and ``-c`` an ini whose ``script_location`` is this folder.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from bridge.store.tables import metadata

config = context.config


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Migrate on the given connection, or on a new engine from ``-x url=...``."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database: pass -x url=... (e.g. sqlite:///bridge.db)")
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported; run them against a database")
run_migrations_online()
