"""Fixtures shared across the test folders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.store.testing import require_postgres, temp_postgres_schema_url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store URL, once on a SQLite file and once on a PostgreSQL schema of the test's own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'bridge.db'}"
        return
    require_postgres()
    with temp_postgres_schema_url() as url:
        yield url
