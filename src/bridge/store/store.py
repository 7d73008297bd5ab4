"""The store: engine, migrations, transactions, the outbox's claim/complete/fail, advisory locks."""

from __future__ import annotations

import fcntl
import logging
import re
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.pool import StaticPool

from bridge.errors import StoreError
from bridge.store import tables as t
from bridge.store.tx import Tx, lock_key
from bridge.store.values import jsonable

MIGRATIONS = "bridge.store:migrations"
log = logging.getLogger("bridge.store")


@dataclass
class OutboxItem:
    """One queued write as the outbox pusher sees it."""

    id: int
    system: str
    kind: str
    record_id: str
    external_id: str | None
    fields: dict[str, Any]
    key: str
    status: str
    attempts: int
    last_error: str | None
    created_at: datetime
    not_before: datetime
    claimed_until: datetime | None = None
    done_at: datetime | None = None
    response: Any = None


def _item(row: sa.Row[Any]) -> OutboxItem:
    return OutboxItem(
        id=row.id,
        system=row.system,
        kind=row.kind,
        record_id=row.record_id,
        external_id=row.external_id,
        fields=dict(row.fields),
        key=row.key,
        status=row.status,
        attempts=row.attempts,
        last_error=row.last_error,
        created_at=row.created_at,
        not_before=row.not_before,
        claimed_until=row.claimed_until,
        done_at=row.done_at,
        response=row.response,
    )


def _sqlite_engine(url: sa.URL) -> sa.Engine:
    memory = url.database in (None, "", ":memory:")
    engine = sa.create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
        # one shared connection, or every thread would see its own empty in-memory database
        poolclass=StaticPool if memory else None,
    )

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        # the driver's own transaction handling is off, so BEGIN below is the only one
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        if not memory:
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        # take the write lock up front: a deferred transaction that reads and then writes fails with
        # "database is locked" instead of waiting, which would break "find or create" under threads
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


BACKENDS = ("sqlite", "postgresql")
URL_EXAMPLES = "sqlite:///bridge.db, or postgresql+psycopg://user@host/db"


def parse_url(url: str) -> sa.URL:
    """``url`` as SQLAlchemy reads it; StoreError when it does not parse or names a database bridge does not
    speak. The message never repeats the URL: it may hold a password."""
    try:
        parsed = sa.make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        raise StoreError(f"cannot parse the URL (write e.g. {URL_EXAMPLES})") from None
    if parsed.get_backend_name() not in BACKENDS:
        raise StoreError(
            f"unsupported database {parsed.render_as_string()}: use sqlite:/// or postgresql://"
        )
    return parsed


def sqlite_file(url: sa.URL) -> Path | None:
    """The file of a SQLite URL (None for another database, or one in memory)."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(str(url.database))


def location(url: sa.URL) -> str:
    """Where a database is, for a message: its host and port, or its SQLite file (never user or password)."""
    file = sqlite_file(url)
    if file is not None:
        return f"the SQLite file {file}"
    if url.get_backend_name() == "sqlite":
        return "SQLite in memory"
    host = url.host or "localhost (its socket)"
    return f"{url.get_backend_name()} at {host}" + (f":{url.port}" if url.port else "")


def driver_reason(exc: BaseException, url: sa.URL | None = None) -> str:
    """The first line of what the database driver said about ``exc`` (no statement, no parameters), the
    password of ``url`` masked in it."""
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    text = lines[0].strip() if lines else type(orig).__name__
    password = url.password if url is not None else None
    return text.replace(password, "***") if isinstance(password, str) and password else text


def alembic_config(conn: sa.Connection) -> Config:
    """An Alembic config that runs the store's migrations on ``conn`` (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    config.attributes["connection"] = conn
    return config


_CLAIM_PAGE = 2000  # outbox rows read per page by a claim


class Store:
    """bridge's persistence: SQLite by default (``sqlite:///bridge.db``, ``sqlite:///:memory:``),
    PostgreSQL by URL (``postgresql+psycopg://user@host/db``) for several replicas.

    The constructor builds the engine only (no I/O); :meth:`open` also migrates to the newest schema.
    """

    def __init__(self, url: str) -> None:
        parsed = parse_url(url)
        self.url = parsed
        self.dialect = parsed.get_backend_name()
        try:
            if self.dialect == "sqlite":
                self.engine = _sqlite_engine(parsed)
            else:
                if parsed.drivername == "postgresql":
                    # psycopg 3 is the driver bridge ships; SQLAlchemy's default would be psycopg2
                    parsed = parsed.set(drivername="postgresql+psycopg")
                self.engine = sa.create_engine(parsed, pool_pre_ping=True)
        except ImportError as exc:  # a driver named in the URL that is not installed
            raise StoreError(f"no driver {parsed.drivername!r} installed: {exc}") from None
        self._pg = self.dialect == "postgresql"
        # the shared in-memory connection holds one transaction at a time
        self._serial: threading.Lock | None = None
        if self.dialect == "sqlite" and parsed.database in (None, "", ":memory:"):
            self._serial = threading.Lock()
        self._open = threading.local()
        self._local_locks: dict[str, threading.Lock] = {}
        self._local_locks_guard = threading.Lock()
        self._pg_held: dict[str, sa.Connection] = {}  # name -> the connection holding that advisory lock
        # advisory locks are per database: their keys name the schema, so two deployments in two schemas of
        # one database do not take each other's locks (read at the first connection that needs it)
        self._scope: str | None = None if self._pg else ""
        # a SQLite file may be opened by two processes (`bridge sync` beside `bridge run`): their locks meet
        # in lock files beside it
        self._lock_base: str | None = None
        if self.dialect == "sqlite" and parsed.database not in (None, "", ":memory:"):
            self._lock_base = str(parsed.database)

    @staticmethod
    def exists(url: str) -> bool:
        """Whether the store at ``url`` has been made: False only for a SQLite file not created yet.

        Read-only commands ask first, so that looking into a fresh config's store does not create its file.
        """
        file = sqlite_file(parse_url(url))
        return file is None or file.exists()

    @classmethod
    def open(cls, url: str) -> Store:
        """A store on ``url``, migrated to the newest schema.

        StoreError when the database cannot be reached or opened (a server down, a refused login, a SQLite
        file in a folder that does not exist), naming where it is, never the password.
        """
        store = cls(url)
        try:
            try:
                with store.engine.connect():
                    pass
            except (sa.exc.DBAPIError, OSError) as exc:
                raise StoreError(
                    f"cannot open the database ({location(store.url)}): {driver_reason(exc, store.url)}"
                ) from None
            try:
                store.migrate()
            except sa.exc.DBAPIError as exc:  # (a login that may not create the tables, a corrupt file)
                raise StoreError(
                    f"cannot set up the database ({location(store.url)}): {driver_reason(exc, store.url)}"
                ) from None
        except BaseException:
            store.close()
            raise
        return store

    def __repr__(self) -> str:
        return f"Store({self.engine.url.render_as_string()!r})"

    def migrate(self) -> None:
        """Upgrade the schema to the newest revision (Alembic); running it again does nothing."""
        with self._transaction() as conn:
            if self._pg:
                # replicas starting together must not race to create the same tables
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": self._key("migrate", conn)})
            command.upgrade(alembic_config(conn), "head")

    def revision(self) -> str | None:
        """The schema revision the database is at, or None before the first migration."""
        from alembic.runtime.migration import MigrationContext

        with self._transaction() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    @contextmanager
    def _transaction(self) -> Iterator[sa.Connection]:
        if getattr(self._open, "active", False):
            # on SQLite the inner transaction would wait for the outer one forever (until "database is
            # locked"); refuse it at once, on every backend, so the mistake shows in any test
            raise RuntimeError(
                "a store transaction is already open in this thread: use its Tx instead of opening another "
                "(claim/complete/fail/pending run their own transactions: call them outside session())"
            )
        self._open.active = True
        try:
            with self._serial or nullcontext(), self.engine.begin() as conn:
                yield conn
        finally:
            self._open.active = False

    @contextmanager
    def session(self) -> Iterator[Tx]:
        """One transaction: commits when the block ends, rolls back when it raises.

        Sessions do not nest: opening one (or calling an outbox method) inside another in the same thread
        raises RuntimeError. A Tx belongs to its thread. Its ``on_end`` callbacks, and the ``on_rollback``
        callbacks of a transaction that did not commit, run after it ended.
        """
        tx: Tx | None = None
        try:
            with self._transaction() as conn:
                tx = Tx(conn, self._scope_of(conn))
                yield tx
        except BaseException:
            if tx is not None:
                tx.ended(committed=False)
            raise
        if tx is not None:
            tx.ended(committed=True)

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ outbox
    def claim(
        self, system: str, kind: str | None, limit: int, now: datetime, lease: timedelta
    ) -> list[OutboxItem]:
        """Claim up to ``limit`` due writes to ``system`` (of ``kind``, or any), oldest first.

        Due: pending with ``not_before <= now``, or claimed by someone whose lease ran out, and every earlier
        write of the record to that system still to be sent is in this claim (none backing off, held by a
        live push, or being claimed by another replica right now): a record's writes land in the order they
        were decided. A claim holds until ``now + lease`` and counts as an
        attempt (:meth:`fail` gives it back to a write that was not tried). On PostgreSQL the rows are picked
        with ``FOR UPDATE SKIP LOCKED``, so replicas claiming at the same moment get disjoint rows.
        """
        o = t.outbox
        due = sa.or_(
            sa.and_(o.c.status == "pending", o.c.not_before <= now),
            sa.and_(o.c.status == "claimed", o.c.claimed_until <= now),
        )
        with self._transaction() as conn:
            # the system's writes still to be sent, in order: a due one is taken unless an earlier write of
            # its record is left (backing off, held by a live push); a page at a time, so that a first sync's
            # tens of thousands are read only as far as the claim needs
            ids: list[int] = []
            blocked: set[str] = set()  # records with an earlier write this claim does not hold
            after = 0
            while len(ids) < limit:
                page = conn.execute(
                    sa.select(o.c.id, o.c.record_id, o.c.kind, o.c.status, o.c.not_before, o.c.claimed_until)
                    .where(o.c.system == system, o.c.status.in_(("pending", "claimed")), o.c.id > after)
                    .order_by(o.c.id).limit(_CLAIM_PAGE)
                ).all()
                if not page:
                    break
                wanted: list[tuple[int, str]] = []
                for row in page:
                    if len(ids) + len(wanted) == limit:
                        break  # (the rest of the page is read again if some of these are another's)
                    after = row.id
                    if kind is not None and row.kind != kind:
                        continue  # (another kind is another record)
                    if row.record_id in blocked:
                        continue
                    lapsed = row.claimed_until is not None and row.claimed_until <= now
                    if (row.not_before <= now) if row.status == "pending" else lapsed:
                        wanted.append((row.id, row.record_id))
                    else:
                        blocked.add(row.record_id)
                if self._pg and wanted:
                    # replicas claiming at the same moment get disjoint rows: what another holds (locked, or
                    # claimed since this one read it) is left, and with it the record's later writes
                    mine = set(conn.scalars(sa.select(o.c.id).where(o.c.id.in_([i for i, _ in wanted]), due)
                                            .with_for_update(skip_locked=True)))
                    for i, rid in wanted:
                        if i not in mine or rid in blocked:
                            blocked.add(rid)
                        else:
                            ids.append(i)
                else:
                    ids.extend(i for i, _ in wanted)
            if not ids:
                return []
            conn.execute(
                o.update()
                .where(o.c.id.in_(ids))
                .values(status="claimed", claimed_until=now + lease, attempts=o.c.attempts + 1)
            )
            rows = conn.execute(sa.select(o).where(o.c.id.in_(ids)).order_by(o.c.id))
            return [_item(row) for row in rows]

    def complete(self, results: list[tuple[int, str | None, Any]], now: datetime) -> None:
        """Mark pushed writes done: ``(outbox id, external id or None, vendor response)`` each.

        An external id the push created is kept on the row and linked to the record when neither the record
        nor that external id is linked in that system yet (in the same transaction).
        """
        o = t.outbox
        with self._transaction() as conn:
            tx = Tx(conn, self._scope_of(conn))
            for item_id, external_id, response in results:
                values: dict[str, Any] = {
                    "status": "done",
                    "done_at": now,
                    "claimed_until": None,
                    "last_error": None,
                    "response": jsonable(response),
                }
                if external_id is not None:
                    values["external_id"] = external_id
                row = conn.execute(
                    o.update()
                    .where(o.c.id == item_id)
                    .values(values)
                    .returning(o.c.system, o.c.kind, o.c.record_id)
                ).one_or_none()
                if row is None:
                    raise KeyError(f"outbox item {item_id} does not exist")
                if (
                    external_id is not None
                    and tx.exists(row.record_id)
                    and row.system not in tx.links_of(row.record_id)
                    and tx.record_id_for(row.system, row.kind, external_id) is None
                ):
                    tx.link(row.record_id, row.system, row.kind, external_id)

    def fail(
        self, item_id: int, error: str, now: datetime, retry_at: datetime | None, tried: bool = True
    ) -> None:
        """Record a failed push: retried at ``retry_at``, or dead-lettered (``done_at`` = now) when None.

        ``tried=False``: the write was put back without the vendor refusing it (an earlier write failed, the
        system could not be used): its claim counts as no attempt. Only a claimed row changes: a late report
        on a row another replica re-claimed and finished is ignored. A retried write whose twin (same key)
        was queued meanwhile is dropped: the twin carries it.
        """
        o = t.outbox
        claimed = sa.and_(o.c.id == item_id, o.c.status == "claimed")
        with self._transaction() as conn:
            if retry_at is None:
                values: dict[str, Any] = {
                    "status": "dead",
                    "claimed_until": None,
                    "last_error": error,
                    "done_at": now,
                }
                conn.execute(o.update().where(claimed).values(values))
                return
            if self._twin_pending(conn, item_id):
                conn.execute(o.delete().where(claimed))
                return
            conn.execute(
                o.update()
                .where(claimed)
                .values(status="pending", claimed_until=None, last_error=error, not_before=retry_at,
                        attempts=o.c.attempts if tried else o.c.attempts - 1)
            )

    @staticmethod
    def _twin_pending(conn: sa.Connection, item_id: int) -> bool:
        o = t.outbox
        twin = o.alias("twin")
        q = (
            sa.select(twin.c.id)
            .join(o, sa.and_(o.c.key == twin.c.key, o.c.id == item_id))
            .where(twin.c.status == "pending", twin.c.id != item_id)
        )
        return conn.scalar(q) is not None

    def dead_letters(self, system: str | None = None) -> list[OutboxItem]:
        """Writes that failed for good (of ``system``, or all), oldest first, with their last error."""
        return self.items(system, status="dead")

    def pending(self, system: str | None = None) -> list[OutboxItem]:
        """Writes waiting to be claimed (status ``pending``, due or not), oldest first."""
        return self.items(system, status="pending")

    def items(self, system: str | None = None, status: str | None = None) -> list[OutboxItem]:
        """Outbox rows of ``system`` and ``status`` (None: any), oldest first."""
        o = t.outbox
        q = sa.select(o).order_by(o.c.id)
        if system is not None:
            q = q.where(o.c.system == system)
        if status is not None:
            q = q.where(o.c.status == status)
        with self._transaction() as conn:
            return [_item(row) for row in conn.execute(q)]

    def retry_dead(self, ids: list[int] | None, now: datetime, system: str | None = None) -> int:
        """Put dead letters (these ``ids``, or all; of ``system`` only, when given) back to pending, due now,
        attempts reset.

        Returns how many dead letters are queued again. One whose twin (same key) is already pending is
        dropped instead, and counted: its write is queued.
        """
        o = t.outbox
        q = sa.select(o.c.id).where(o.c.status == "dead").order_by(o.c.id)
        if ids is not None:
            q = q.where(o.c.id.in_(ids))
        if system is not None:
            q = q.where(o.c.system == system)
        count = 0
        with self._transaction() as conn:
            for item_id in list(conn.scalars(q)):
                count += 1
                if self._twin_pending(conn, item_id):
                    conn.execute(o.delete().where(o.c.id == item_id))
                    continue
                conn.execute(
                    o.update()
                    .where(o.c.id == item_id)
                    .values(status="pending", attempts=0, not_before=now, claimed_until=None, done_at=None)
                )
        return count

    # ------------------------------------------------------------------- locks
    def advisory_lock(self, name: str) -> AbstractContextManager[bool]:
        """Try to take the lock ``name`` without waiting; the context yields whether it was taken.

        PostgreSQL: ``pg_try_advisory_lock`` on a connection held for the block, so one replica at a time
        runs a scheduled job. SQLite: a lock inside this process and, for a file, a lock file beside it
        (``bridge.db.NAME.lock``), so that another process on the same file (``bridge sync`` beside ``bridge
        run``) is refused too.
        """
        return self._pg_lock(name) if self._pg else self._local_lock(name)

    def _scope_of(self, conn: sa.Connection) -> str:
        """The schema this store works in (PostgreSQL; "" for SQLite), read once on ``conn``."""
        if self._scope is None:
            self._scope = str(conn.scalar(sa.text("SELECT current_schema()")) or "")
        return self._scope

    def _key(self, name: str, conn: sa.Connection) -> int:
        """The advisory lock key of ``name`` in this store's schema."""
        scope = self._scope_of(conn)
        return lock_key(f"{scope}\0{name}" if scope else name)

    def still_holds(self, name: str) -> bool:
        """Whether the advisory lock ``name`` taken by :meth:`advisory_lock` (its block still open) is held.

        PostgreSQL frees a session's locks when its connection drops: another replica may then take the lock
        while this one still runs. SQLite: a lock file is held as long as this process runs (True)."""
        if not self._pg:
            return True
        conn = self._pg_held.get(name)
        if conn is None:
            return False
        try:
            held = conn.scalar(
                sa.text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                        "AND pid = pg_backend_pid() AND objid = (:k & 4294967295)::oid"),
                {"k": self._key(f"lock\0{name}", conn)},
            )
            conn.commit()
        except sa.exc.SQLAlchemyError:
            return False  # the connection is gone, and the lock with it
        return bool(held)

    @contextmanager
    def _pg_lock(self, name: str) -> Iterator[bool]:
        with self.engine.connect() as conn:
            key = self._key(f"lock\0{name}", conn)
            got = bool(conn.scalar(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}))
            # a session-level lock outlives the transaction: do not sit idle in one while the job runs
            conn.commit()
            if got:
                self._pg_held[name] = conn
            try:
                yield got
            finally:
                self._pg_held.pop(name, None)
                if got:
                    try:
                        conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                        conn.commit()
                    except sa.exc.SQLAlchemyError:
                        # never hand a connection that may still hold the lock back to the pool; closing it
                        # frees the lock (a connection already dropped took it along)
                        conn.invalidate()
                        log.warning("lock %s: released by closing its connection", name)

    @contextmanager
    def _local_lock(self, name: str) -> Iterator[bool]:
        with self._local_locks_guard:
            lock = self._local_locks.setdefault(name, threading.Lock())
        got = lock.acquire(blocking=False)
        held = None
        if got and self._lock_base is not None:
            # flock: another process (or another open of the file) holding it makes this one fail at once
            held = Path(f"{self._lock_base}.{re.sub(r'[^A-Za-z0-9_-]', '_', name)}.lock").open("a")  # noqa: SIM115 - closed below
            try:
                fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                held.close()
                held = None
                lock.release()
                got = False
        try:
            yield got
        finally:
            if held is not None:
                fcntl.flock(held.fileno(), fcntl.LOCK_UN)
                held.close()
            if got:
                lock.release()
