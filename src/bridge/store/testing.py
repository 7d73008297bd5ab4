"""Helpers for tests that need PostgreSQL: its URL, whether it answers, and a throwaway schema per test.

Other test packages build fixtures from these, for example::

    @pytest.fixture
    def pg_url() -> Iterator[str]:
        require_postgres()
        with temp_postgres_schema_url() as url:
            yield url

``BRIDGE_TEST_POSTGRES_URL`` names the server (default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``).
When it does not answer, :func:`require_postgres` skips the test, except with ``CI=true``, where it fails.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def postgres_url() -> str:
    """The PostgreSQL URL for tests: ``$BRIDGE_TEST_POSTGRES_URL`` or the local default."""
    return os.environ.get("BRIDGE_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL


def safe_url(url: str) -> str:
    """``url`` with its password masked, fit for messages."""
    return sa.make_url(url).render_as_string(hide_password=True)


def postgres_available(url: str | None = None) -> bool:
    """Whether PostgreSQL at ``url`` (default :func:`postgres_url`) answers within a few seconds."""
    return _answers(url or postgres_url())


@functools.cache
def _answers(url: str) -> bool:
    engine = sa.create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return True
    except sa.exc.DBAPIError:
        return False
    finally:
        engine.dispose()


def require_postgres(url: str | None = None) -> str:
    """Return the test PostgreSQL URL; skip the calling test when it does not answer (fail when CI=true)."""
    import pytest

    url = url or postgres_url()
    if postgres_available(url):
        return url
    reason = f"PostgreSQL at {safe_url(url)} does not answer (set BRIDGE_TEST_POSTGRES_URL)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI=true requires it", pytrace=False)
    pytest.skip(reason)


@contextmanager
def temp_postgres_schema_url(url: str | None = None) -> Iterator[str]:
    """Yield a URL whose connections use a fresh, empty schema; the schema is dropped afterwards.

    The schema is set through libpq's ``options=-csearch_path=...``, so every connection (and every
    table a migration creates) lands in it.
    """
    base = sa.make_url(url or postgres_url())
    schema = f"t_{uuid.uuid4().hex}"
    admin = sa.create_engine(base, poolclass=NullPool)
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        given = base.query.get("options")
        given = " ".join(given) if isinstance(given, tuple) else given
        options = " ".join(filter(None, [given, f"-csearch_path={schema}"]))
        bound = base.update_query_dict({"options": options})
        try:
            yield bound.render_as_string(hide_password=False)
        finally:
            with admin.begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    finally:
        admin.dispose()
