"""Identity keys, and the create race: two replicas seeing one new contact create one record (PostgreSQL)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from bridge.identity import keys_of, normalise
from bridge.model import Change
from bridge.pipeline import Outcome, Pipeline
from bridge.settings import Config
from bridge.store import Store, Tx
from bridge.store.testing import require_postgres, temp_postgres_schema_url

T = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("key", "raw", "expected"),
    [
        ("email", "  Ann.Lee@Example.COM ", "ann.lee@example.com"),
        ("domain", "https://www.Acme.io/pricing", "acme.io"),
        ("domain", "ann@acme.io", "acme.io"),
        ("domain", "www.", None),
        ("name", "Acme, Inc.", "acme"),
        ("name", "ACME Corp", "acme"),
        ("name", "  ", None),
        ("phone", " +1 555 ", "+1 555"),
        ("email", None, None),
    ],
)
def test_normalise(key: str, raw: Any, expected: str | None) -> None:
    assert normalise(key, raw) == expected


@pytest.mark.parametrize(
    ("kind", "attrs", "configured", "expected"),
    [
        ("contact", {"email": "A@x.io", "name": "Ann"}, {}, {"email": "a@x.io"}),
        ("account", {"domain": "x.io", "name": "X Ltd"}, {}, {"domain": "x.io", "name": "x"}),
        ("account", {"email": "bob@x.io"}, {}, {"domain": "x.io"}),  # an account's domain from an email
        ("account", {"domain": "x.io", "name": "X"}, {"account": ["name"]}, {"name": "x"}),
        ("ticket", {"email": "a@x.io"}, {}, {}),
        ("contact", {"email": ""}, {}, {}),
    ],
)
def test_keys_of(
    kind: str, attrs: dict[str, Any], configured: dict[str, list[str]], expected: dict[str, str]
) -> None:
    assert keys_of(kind, attrs, configured) == expected


def _config() -> Config:
    connectors = {s: {"plugin": "memory", "kinds": ["contact"]} for s in ("a", "b")}
    return Config(connectors=connectors)


def _waiting_on_a_lock(url: str) -> bool:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            q = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            return bool(conn.execute(sa.text(q)).scalar())
    finally:
        engine.dispose()


@pytest.fixture
def race_store() -> Iterator[tuple[Store, str]]:
    require_postgres()
    with temp_postgres_schema_url() as url:
        store = Store.open(url)
        yield store, url
        store.close()


@pytest.mark.parametrize("locked", [True, False])
def test_two_replicas_creating_one_contact_make_one_record(
    race_store: tuple[Store, str], monkeypatch: pytest.MonkeyPatch, locked: bool
) -> None:
    """Replica 1 created the contact, not committed yet; replica 2 gets the same contact from another system.

    With the identity lock, replica 2 waits and then links to replica 1's record. Without it (the control),
    both create: the test would catch a pipeline that forgot to lock.
    """
    store, url = race_store
    if not locked:
        monkeypatch.setattr(Tx, "lock_identity", lambda self, kind, key, value: None)
    pipeline = Pipeline(_config())
    created = threading.Event()
    release = threading.Event()
    outcomes: dict[str, Outcome] = {}
    errors: list[BaseException] = []

    def replica(name: str, system: str, hold: bool) -> None:
        try:
            with store.session() as tx:
                change = Change(system, "contact", f"{system}-1", T, attrs={"email": "New@Acme.io"})
                outcomes[name] = pipeline.process(tx, change, T)
                if hold:
                    created.set()
                    assert release.wait(20)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            created.set()

    first = threading.Thread(target=replica, args=("first", "a", True))
    first.start()
    assert created.wait(20)
    second = threading.Thread(target=replica, args=("second", "b", False))
    second.start()
    deadline = time.monotonic() + 20
    if locked:
        while not _waiting_on_a_lock(url):  # replica 2 must be blocked on the identity lock
            assert time.monotonic() < deadline and second.is_alive(), "replica 2 did not wait for the lock"
            time.sleep(0.01)
    else:
        second.join(20)
    release.set()
    first.join(20)
    second.join(20)
    assert not errors, errors
    with store.session() as tx:
        records = list(tx.records("contact"))
    if locked:
        [record] = records
        assert record.links == {"a": "a-1", "b": "b-1"}
        assert outcomes["first"].created and not outcomes["second"].created
    else:
        assert len(records) == 2
