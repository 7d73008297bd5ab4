"""Migrations, engine set-up and the PostgreSQL test helpers."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from bridge.store import Store
from bridge.store import tables as t
from bridge.store.store import alembic_config
from bridge.store.testing import postgres_available, safe_url, temp_postgres_schema_url

NOW = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)
TABLES = {
    "records",
    "links",
    "record_keys",
    "field_values",
    "changes",
    "shadow",
    "cursors",
    "outbox",
    "audit",
    "effects",
}


def test_migrate_twice_is_idempotent(store_url: str) -> None:
    store = Store(store_url)
    try:
        assert store.revision() is None
        store.migrate()
        with store.session() as tx:
            tx.create_record("ticket", "r1")
        store.migrate()
        assert store.revision() == "0005"
        with store.session() as tx:
            assert tx.load("r1") is not None
        assert set(sa.inspect(store.engine).get_table_names()) >= TABLES
    finally:
        store.close()


def test_tables_module_matches_migrations(store: Store) -> None:
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, t.metadata)
    assert diff == []


def test_constructor_does_no_io() -> None:
    # nothing listens on port 9: building the store must not try to connect
    store = Store("postgresql+psycopg://nobody@127.0.0.1:9/none")
    assert store.dialect == "postgresql"
    store.close()


@pytest.mark.parametrize("url", ["mysql://u@h/db", "oracle://u@h/db"])
def test_unsupported_database_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="unsupported database"):
        Store(url)


def test_memory_database_is_shared_between_threads() -> None:
    store = Store.open("sqlite:///:memory:")
    errors: list[BaseException] = []

    def create(n: int) -> None:
        try:
            for i in range(20):
                with store.session() as tx:
                    tx.create_record("ticket", f"t{n}-{i}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(n,)) for n in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    with store.session() as tx:
        assert len(list(tx.records("ticket"))) == 80
    store.close()


def test_sqlite_file_serialises_find_or_create(sqlite_url: str) -> None:
    # the deferred-transaction trap: read, then write, from many threads at once must not raise "locked"
    store = Store.open(sqlite_url)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def find_or_create() -> None:
        barrier.wait()
        try:
            with store.session() as tx:
                if not tx.find_by_key("contact", "email", "ann@example.com"):
                    rid = tx.create_record("contact")
                    tx.set_keys(rid, "contact", {"email": "ann@example.com"})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=find_or_create) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    with store.session() as tx:
        assert len(tx.find_by_key("contact", "email", "ann@example.com")) == 1
    store.close()


def test_temp_schema_is_fresh_and_dropped(pg_url: str) -> None:
    with temp_postgres_schema_url(pg_url) as inner:
        schema = sa.make_url(inner).query["options"]
        assert isinstance(schema, str)
        name = schema.rsplit("=", 1)[1]
        store = Store.open(inner)
        with store.session() as tx:
            assert tx.conn.scalar(sa.text("SELECT current_schema()")) == name
        store.close()
    engine = sa.create_engine(pg_url)
    with engine.connect() as conn:
        found = conn.scalar(sa.text("SELECT count(*) FROM pg_namespace WHERE nspname = :n"), {"n": name})
    engine.dispose()
    assert found == 0


def test_postgres_helpers_report_an_unreachable_server() -> None:
    url = "postgresql+psycopg://bob:s3cret@127.0.0.1:9/none"
    assert postgres_available(url) is False
    assert "s3cret" not in safe_url(url)


def test_downgrade_to_base_and_up_again(store: Store) -> None:
    with store.engine.begin() as conn:
        command.downgrade(alembic_config(conn), "base")
    assert not TABLES & set(sa.inspect(store.engine).get_table_names())
    store.migrate()
    assert store.revision() == "0005"
    with store.session() as tx:
        tx.audit(at=NOW, run="r", record_id=None, field=None, before=None, after=None, origin="o", rule="r")


def test_sessions_do_not_nest(store: Store) -> None:
    with store.session() as tx:
        tx.create_record("ticket", "outer")
        with pytest.raises(RuntimeError, match="already open in this thread"), store.session():
            pass
        with pytest.raises(RuntimeError, match="already open in this thread"):
            store.pending()
    with store.session() as tx:
        assert tx.load("outer") is not None
    assert store.pending() == []


def test_plain_postgresql_url_uses_psycopg(pg_url: str) -> None:
    with Store(pg_url.replace("postgresql+psycopg://", "postgresql://")) as store:
        assert store.engine.dialect.driver == "psycopg"
        store.migrate()
        assert store.revision() == "0005"
