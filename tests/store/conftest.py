"""Store fixtures: every store test runs on SQLite and on PostgreSQL (a fresh schema per test).

PostgreSQL comes from ``BRIDGE_TEST_POSTGRES_URL`` (see :mod:`bridge.store.testing`); when it does not answer
its params are skipped, except with ``CI=true``, where they fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bridge.store import Store
from bridge.store.testing import require_postgres, temp_postgres_schema_url

NOW = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)


@pytest.fixture
def now() -> datetime:
    """The injected clock's fixed instant."""
    return NOW


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite file."""
    return f"sqlite:///{tmp_path / 'bridge.db'}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A URL bound to a fresh PostgreSQL schema, dropped after the test."""
    require_postgres()
    with temp_postgres_schema_url() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> str:
    """An empty database of each kind."""
    name = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return str(request.getfixturevalue(name))


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """A migrated store on SQLite and on PostgreSQL."""
    s = Store.open(store_url)
    yield s
    s.close()


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[Store]:
    """A migrated store on PostgreSQL only, for what only PostgreSQL does (SKIP LOCKED, advisory locks)."""
    s = Store.open(pg_url)
    yield s
    s.close()
