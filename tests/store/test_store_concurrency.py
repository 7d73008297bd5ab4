"""Several replicas on one PostgreSQL: SKIP LOCKED claims, advisory locks, create races."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bridge.model import Write
from bridge.store import OutboxItem, Store
from bridge.store.tx import lock_key

LEASE = timedelta(minutes=5)
WAIT = 10.0  # seconds; only a safety net so a broken lock fails instead of hanging


def _run(target: Callable[[], Any], name: str) -> tuple[threading.Thread, list[Any], list[BaseException]]:
    out: list[Any] = []
    errors: list[BaseException] = []

    def body() -> None:
        try:
            out.append(target())
        except BaseException as exc:  # pragma: no cover - asserted by callers
            errors.append(exc)

    thread = threading.Thread(target=body, name=name)
    thread.start()
    return thread, out, errors


def test_concurrent_claims_get_disjoint_rows(pg_store: Store, now: datetime) -> None:
    with pg_store.session() as tx:
        for i in range(6):
            tx.enqueue(Write("hubspot", "ticket", f"r{i}", None, {"n": i}), now)
    paused, resumed, release = threading.Event(), threading.Event(), threading.Event()

    def hold_first_claim(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        # replica A stops between locking its rows and committing
        if threading.current_thread().name == "A" and statement.lstrip().upper().startswith("UPDATE OUTBOX"):
            paused.set()
            release.wait(WAIT)
            resumed.set()

    sa.event.listen(pg_store.engine, "after_cursor_execute", hold_first_claim)
    try:
        thread, out, errors = _run(lambda: pg_store.claim("hubspot", None, 3, now, LEASE), "A")
        assert paused.wait(WAIT)
        b_items = pg_store.claim("hubspot", None, 3, now, LEASE)
        b_returned_while_a_held = not resumed.is_set()
        release.set()
        thread.join(WAIT)
    finally:
        sa.event.remove(pg_store.engine, "after_cursor_execute", hold_first_claim)
    assert errors == []
    a_items: list[OutboxItem] = out[0]
    assert b_returned_while_a_held, "the second claim waited for the first one's row locks"
    assert [i.record_id for i in a_items] == ["r0", "r1", "r2"]
    assert [i.record_id for i in b_items] == ["r3", "r4", "r5"]
    assert all(i.status == "claimed" and i.attempts == 1 for i in pg_store.items())


def test_advisory_lock_is_exclusive_across_replicas(pg_store: Store, pg_url: str) -> None:
    other = Store(pg_url)
    try:
        with pg_store.advisory_lock("job:sla") as got:
            assert got
            with other.advisory_lock("job:sla") as second, pg_store.advisory_lock("job:sla") as third:
                assert (second, third) == (False, False)
            with other.advisory_lock("job:topics") as unrelated:
                assert unrelated
        with other.advisory_lock("job:sla") as after:
            assert after
    finally:
        other.close()


def test_advisory_locks_of_two_schemas_of_one_database_are_apart(pg_store: Store) -> None:
    # two deployments sharing a PostgreSQL database, each in a schema of its own, each have a rules leader
    from bridge.store.testing import temp_postgres_schema_url

    with temp_postgres_schema_url() as url:
        other = Store.open(url)
        try:
            with pg_store.advisory_lock("rules-leader") as mine, \
                    other.advisory_lock("rules-leader") as theirs:
                assert (mine, theirs) == (True, True)
                assert pg_store.still_holds("rules-leader") and other.still_holds("rules-leader")
        finally:
            other.close()


@pytest.mark.parametrize("url", ["sqlite:///:memory:", "file"])
def test_advisory_lock_on_sqlite_is_exclusive_in_process(url: str, sqlite_url: str) -> None:
    store = Store.open(sqlite_url if url == "file" else url)
    with store.advisory_lock("job") as got:
        assert got
        with store.advisory_lock("job") as second, store.advisory_lock("other") as other:
            assert (second, other) == (False, True)
    with store.advisory_lock("job") as again:
        assert again
    store.close()


def _wait_for_lock_waiter(store: Store) -> None:
    """Return once some connection waits on an advisory lock (replica B is blocked behind A)."""
    deadline = time.monotonic() + WAIT
    with store.engine.connect() as conn:
        while time.monotonic() < deadline:
            waiting = conn.scalar(
                sa.text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
            )
            conn.rollback()
            if waiting:
                return
            time.sleep(0.005)
    raise AssertionError("replica B never waited on the identity lock")


@pytest.mark.parametrize(("use_lock", "records"), [(True, 1), (False, 2)], ids=["locked", "unlocked"])
def test_two_replicas_creating_the_same_contact(pg_store: Store, use_lock: bool, records: int) -> None:
    """With lock_identity one record results; without it the race really happens (the control case)."""
    email = "ann@example.com"
    both_searched = threading.Barrier(2, timeout=WAIT)
    a_created = threading.Event()

    def find_or_create(after_search: Callable[[], None]) -> str:
        with pg_store.session() as tx:
            if use_lock:
                tx.lock_identity("contact", "email", email)
            found = tx.find_by_key("contact", "email", email)
            after_search()
            if found:
                return found[0]
            rid = tx.create_record("contact")
            tx.set_keys(rid, "contact", {"email": email})
            if use_lock:
                a_created.set()
                _wait_for_lock_waiter(pg_store)
            return rid

    def after_search() -> None:
        if not use_lock:
            both_searched.wait()

    a, a_out, a_errors = _run(lambda: find_or_create(after_search), "A")
    if use_lock:
        assert a_created.wait(WAIT)
    b, b_out, b_errors = _run(lambda: find_or_create(after_search), "B")
    a.join(WAIT)
    b.join(WAIT)
    assert a_errors == b_errors == []
    with pg_store.session() as tx:
        assert len(tx.find_by_key("contact", "email", email)) == records
        assert len(list(tx.records("contact"))) == records
    assert (a_out[0] == b_out[0]) is (records == 1)


def test_an_advisory_lock_on_a_sqlite_file_is_exclusive_across_processes(tmp_path: Path) -> None:
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'bridge.db'}"
    store = Store(url)
    probe = (
        "import sys\nfrom bridge.store import Store\n"
        "with Store(sys.argv[1]).advisory_lock('rules-leader') as got:\n    print(got)\n"
    )

    def ask() -> str:
        done = subprocess.run([sys.executable, "-c", probe, url], capture_output=True, text=True, check=True)
        return done.stdout.strip()

    try:
        with store.advisory_lock("rules-leader") as got:
            assert got
            # another process on the same file (bridge sync beside bridge run) is refused
            assert ask() == "False"
            with Store(url).advisory_lock("rules-leader") as second, store.advisory_lock("other") as free:
                assert (second, free) == (False, True)
        assert ask() == "True"
    finally:
        store.close()


def test_a_lock_whose_connection_dropped_is_no_longer_held(pg_store: Store, pg_url: str) -> None:
    other = Store(pg_url)
    try:
        with pg_store.advisory_lock("rules-leader") as got:
            assert got and pg_store.still_holds("rules-leader")
            assert not pg_store.still_holds("job:other")  # never taken
            with pg_store.engine.connect() as admin:  # the lock's connection dies (a network cut, a restart)
                schema = admin.scalar(sa.text("SELECT current_schema()"))  # (lock keys name the schema)
                pids = admin.execute(sa.text(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND objid = (:k & 4294967295)::oid"
                ), {"k": lock_key(f"{schema}\0lock\0rules-leader")}).scalars().all()
                assert pids
                for pid in pids:  # (waiting until it is gone: its lock is released only then)
                    admin.execute(sa.text("SELECT pg_terminate_backend(:p, 10000)"), {"p": pid})
                admin.commit()
            assert not pg_store.still_holds("rules-leader")
            with other.advisory_lock("rules-leader") as second:
                assert second  # another replica may lead now: the first must know it lost the lead
    finally:
        other.close()


def test_a_replica_claiming_at_the_same_moment_leaves_a_records_later_write_to_the_other(
    pg_store: Store, now: datetime
) -> None:
    # replica A has picked (and locked) record a's first write and not committed yet; replica B, claiming
    # meanwhile, must not take a's second write: it would go out while the first is in flight
    with pg_store.session() as tx:
        tx.enqueue(Write("hubspot", "ticket", "x0", None, {"n": 0}), now)
        tx.enqueue(Write("hubspot", "ticket", "a", None, {"step": 1}), now)
        tx.enqueue(Write("hubspot", "ticket", "a", None, {"step": 2}), now)
    paused, release = threading.Event(), threading.Event()

    def hold_after_pick(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if threading.current_thread().name == "A" and "SKIP LOCKED" in statement and not paused.is_set():
            paused.set()
            release.wait(WAIT)

    sa.event.listen(pg_store.engine, "after_cursor_execute", hold_after_pick)
    try:
        thread, out, errors = _run(lambda: pg_store.claim("hubspot", None, 2, now, LEASE), "A")
        assert paused.wait(WAIT)
        b_items = pg_store.claim("hubspot", None, 10, now, LEASE)
        release.set()
        thread.join(WAIT)
    finally:
        sa.event.remove(pg_store.engine, "after_cursor_execute", hold_after_pick)
    assert errors == []
    assert [(i.record_id, i.fields) for i in out[0]] == [("x0", {"n": 0}), ("a", {"step": 1})]
    assert b_items == []
