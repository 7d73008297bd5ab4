"""One transaction on the store: identity, records, changes, shadow, cursors, outbox and audit."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import re
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from bridge.effects import EffectWrite
from bridge.errors import IdentityError
from bridge.model import BRIDGE, Change, FieldValue, Record, Write, parse_time, utcnow
from bridge.store import tables as t
from bridge.store.values import jsonable

_PAGE = 500
log = logging.getLogger("bridge.store")


# the instant in a decision's key (TICKET|KIND|RULE|INSTANT|WHAT), as format_time writes it
_KEY_INSTANT = re.compile(r"\|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z\|")

class LoggedChange(NamedTuple):
    """A change as the change log keeps it: its id, its record, and the time the rules' Desk took it at."""

    id: int
    record_id: str
    change: Change
    desk_at: datetime | None  # None: no Desk took it
    received_at: datetime | None = None
    # it came after a newer change of its record from its system: its state was not applied (only
    # :meth:`Tx.untaken_changes` tells; elsewhere False)
    came_late: bool = False


def lock_key(name: str) -> int:
    """A stable signed 64-bit number for ``name``: the key of a PostgreSQL advisory lock."""
    digest = hashlib.sha256(f"bridge\0{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def upsert(
    conn: sa.Connection,
    table: sa.Table,
    values: dict[str, Any] | list[dict[str, Any]],
    keys: Sequence[str],
    update: Sequence[str],
) -> None:
    """Insert ``values`` (one row or several) or, where a row with the same ``keys`` exists, update its
    ``update`` columns."""
    if not values:
        return
    conn.execute(
        _upsert_statement(conn.dialect.name, table, tuple(keys), tuple(update)),
        values if isinstance(values, list) else [values],
    )


@functools.lru_cache(maxsize=64)
def _upsert_statement(
    dialect_name: str, table: sa.Table, keys: tuple[str, ...], update: tuple[str, ...]
) -> sa.Executable:
    # building an upsert (its ``excluded`` proxies) costs more than running it: build each shape once
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    stmt = dialect.insert(table)
    built: sa.Executable = stmt.on_conflict_do_update(
        index_elements=list(keys), set_={name: stmt.excluded[name] for name in update}
    )
    return built


def _call_all(callbacks: list[Callable[[], None]]) -> None:
    for callback in callbacks:
        try:
            callback()
        except Exception:  # one listener's failure must not hide the others
            log.exception("rollback callback failed")


def _logged(row: sa.Row[Any]) -> LoggedChange:
    return LoggedChange(row.id, row.record_id or "", _change(row), row.desk_at, row.received_at)


def _own(kind: str) -> sa.ColumnElement[bool]:
    """The bridge's own changes of ``kind``, about no record (an agent's status)."""
    c = t.changes
    return sa.and_(c.c.system == BRIDGE, c.c.kind == kind, c.c.record_id.is_(None))


def _change(row: sa.Row[Any]) -> Change:
    return Change(
        system=row.system,
        kind=row.kind,
        external_id=row.external_id,
        at=row.at,
        fields=row.payload["fields"],
        tags=row.payload["tags"],
        attrs=row.payload["attrs"],
        deleted=row.payload["deleted"],
    )


class Tx:
    """The store inside one transaction (from :meth:`bridge.store.Store.session`).

    Everything done through one Tx commits together when the ``with`` block ends, or not at all.
    """

    keep_audit = True  # the store keeps every audit row

    def __init__(self, conn: sa.Connection, scope: str = "") -> None:
        """A transaction on ``conn``; ``scope`` (the PostgreSQL schema) prefixes its advisory lock keys."""
        self.conn = conn
        self._scope = scope
        self._pg = conn.dialect.name == "postgresql"
        # on_rollback callbacks, one list per open savepoint (the first: the transaction's own)
        self._undo: list[list[Callable[[], None]]] = [[]]
        self._end: list[Callable[[bool], None]] = []

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested transaction: an exception inside undoes only what was done inside, then propagates."""
        nested = self.conn.begin_nested()
        self._undo.append([])
        released = False
        try:
            yield
            nested.commit()
            released = True
        except BaseException:
            if nested.is_active:
                nested.rollback()
            raise
        finally:
            frame = self._undo.pop()
            if released:
                outer = self._undo[-1]
                outer.extend(cb for cb in frame if cb not in outer)
            else:
                _call_all(frame)

    def on_rollback(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` if what is done from now on is undone: the savepoint open now, or the
        transaction, rolls back (or fails to commit). Memory kept beside the store (the rules' Desk) hears
        of it so as never to run ahead of what was committed. Registering the same callback again in the
        same savepoint is a no-op; callbacks must not raise.
        """
        frame = self._undo[-1]
        if callback not in frame:
            frame.append(callback)

    def on_end(self, callback: Callable[[bool], None]) -> None:
        """Call ``callback(committed)`` once, when this transaction commits (True) or does not (False)."""
        self._end.append(callback)

    def ended(self, committed: bool) -> None:
        """Run the on_rollback (when not committed) and on_end callbacks; :meth:`Store.session` calls it."""
        if not committed:
            for frame in reversed(self._undo):
                _call_all(frame)
        self._undo = [[]]
        ends, self._end = self._end, []
        for callback in ends:
            try:
                callback(committed)
            except Exception:  # one listener's failure must not hide the others
                log.exception("transaction end callback failed")

    # ---------------------------------------------------------------- identity
    def record_id_for(self, system: str, kind: str, external_id: str) -> str | None:
        """The record linked to ``external_id`` of ``kind`` in ``system``, or None."""
        q = sa.select(t.links.c.record_id).where(
            t.links.c.system == system, t.links.c.kind == kind, t.links.c.external_id == external_id
        )
        return self.conn.scalar(q)

    def links_of(self, record_id: str) -> dict[str, str]:
        """System -> external id of one record (the latest link where a system has several)."""
        q = (
            sa.select(t.links.c.system, t.links.c.external_id)
            .where(t.links.c.record_id == record_id)
            .order_by(t.links.c.id)
        )
        return {system: external_id for system, external_id in self.conn.execute(q)}

    def link(self, record_id: str, system: str, kind: str, external_id: str) -> None:
        """Link ``record_id`` to ``external_id`` in ``system``; linking again is a no-op.

        Raises IdentityError when that external id is already linked to another record.
        """
        have = self.record_id_for(system, kind, external_id)
        if have == record_id:
            return
        if have is not None:
            raise IdentityError(
                f"{system} {kind} {external_id} is already linked to record {have}, not {record_id}",
                [have, record_id],
            )
        self.conn.execute(
            t.links.insert().values(record_id=record_id, system=system, kind=kind, external_id=external_id)
        )

    def relink(self, record_id: str, system: str, kind: str, external_id: str) -> None:
        """Move ``record_id``'s link in ``system`` to ``external_id`` (the vendor filed it anew: the one it
        had was deleted there)."""
        lk = t.links.c
        self.conn.execute(t.links.delete().where(lk.record_id == record_id, lk.system == system))
        self.link(record_id, system, kind, external_id)

    def find_by_key(self, kind: str, key: str, value: str) -> list[str]:
        """Ids of the records of ``kind`` whose identity ``key`` has ``value`` (normalised by the caller).

        Several ids mean the match is ambiguous; the caller decides (IdentityError).
        """
        q = (
            sa.select(t.record_keys.c.record_id)
            .where(t.record_keys.c.kind == kind, t.record_keys.c.key == key, t.record_keys.c.value == value)
            .order_by(t.record_keys.c.record_id)
        )
        return list(self.conn.scalars(q))

    def set_keys(self, record_id: str, kind: str, keys: dict[str, str]) -> None:
        """Set identity keys (``email``, ``domain`` ...) of a record; an empty value removes that key.

        Keys not named in ``keys`` are left as they are.
        """
        for key, value in keys.items():
            self.conn.execute(
                t.record_keys.delete().where(
                    t.record_keys.c.record_id == record_id, t.record_keys.c.key == key
                )
            )
            if value:
                self.conn.execute(
                    t.record_keys.insert().values(record_id=record_id, kind=kind, key=key, value=value)
                )

    def keys_of(self, record_id: str) -> dict[str, str]:
        """The identity keys of one record."""
        q = sa.select(t.record_keys.c.key, t.record_keys.c.value).where(
            t.record_keys.c.record_id == record_id
        )
        return {key: value for key, value in self.conn.execute(q)}

    def keys_of_kind(self, kind: str) -> dict[str, dict[str, str]]:
        """The identity keys of every record of ``kind``, by record id (one query, for a rebuild)."""
        q = sa.select(t.record_keys.c.record_id, t.record_keys.c.key, t.record_keys.c.value).where(
            t.record_keys.c.kind == kind
        )
        out: dict[str, dict[str, str]] = {}
        for record_id, key, value in self.conn.execute(q):
            out.setdefault(record_id, {})[key] = value
        return out

    def lock_identity(self, kind: str, key: str, value: str) -> None:
        """Serialise "find or create" of one identity until this transaction ends.

        PostgreSQL: a transaction-level advisory lock, so two replicas that receive the same new contact
        create one record. SQLite: nothing to do, its write transactions already run one at a time.
        """
        if self._pg:
            self.conn.execute(
                sa.text("SELECT pg_advisory_xact_lock(:k)"),
                {"k": lock_key(f"{self._scope}\0identity\0{kind}\0{key}\0{value}")},
            )

    # ----------------------------------------------------------------- records
    def create_record(self, kind: str, record_id: str | None = None, now: datetime | None = None) -> str:
        """Create an empty record of ``kind`` and return its id (a uuid4 hex unless given)."""
        rid = record_id or uuid.uuid4().hex
        at = now or utcnow()
        self.conn.execute(
            t.records.insert().values(id=rid, kind=kind, tags=[], attrs={}, created_at=at, updated_at=at)
        )
        return rid

    def exists(self, record_id: str) -> bool:
        """Whether the record exists."""
        return self.conn.scalar(sa.select(t.records.c.id).where(t.records.c.id == record_id)) is not None

    def load(self, record_id: str) -> Record | None:
        """The record with its links, fields (with provenance), tags and attrs; None when unknown.

        Field values come back as stored JSON: a ``date`` is an ISO string, re-coerce with
        :func:`bridge.fields.coerce`.
        """
        row = self.conn.execute(sa.select(t.records).where(t.records.c.id == record_id)).one_or_none()
        if row is None:
            return None
        return next(iter(self._assemble([row])))

    def records(self, kind: str | None = None) -> Iterator[Record]:
        """Every record (of ``kind``), in id order, loaded page by page."""
        after = ""
        while True:
            q = sa.select(t.records).where(t.records.c.id > after).order_by(t.records.c.id).limit(_PAGE)
            if kind is not None:
                q = q.where(t.records.c.kind == kind)
            rows = list(self.conn.execute(q))
            if not rows:
                return
            yield from self._assemble(rows)
            after = rows[-1].id

    def _assemble(self, rows: Sequence[sa.Row[Any]]) -> list[Record]:
        ids = [row.id for row in rows]
        out = {
            row.id: Record(id=row.id, kind=row.kind, tags=list(row.tags), attrs=dict(row.attrs))
            for row in rows
        }
        q_links = sa.select(t.links).where(t.links.c.record_id.in_(ids)).order_by(t.links.c.id)
        for link in self.conn.execute(q_links):
            out[link.record_id].links[link.system] = link.external_id
        q_fields = (
            sa.select(t.field_values)
            .where(t.field_values.c.record_id.in_(ids))
            .order_by(t.field_values.c.record_id, t.field_values.c.field)
        )
        for fv in self.conn.execute(q_fields):
            out[fv.record_id].fields[fv.field] = FieldValue(value=fv.value, system=fv.system, at=fv.at)
        return [out[i] for i in ids]

    def save(self, record: Record, now: datetime | None = None) -> None:
        """Write a record's row, tags, attrs and field values (with provenance); fields it lacks are removed.

        Links are not saved here: use :meth:`link`. Dates inside values are stored as ISO strings.
        """
        at = now or utcnow()
        upsert(
            self.conn,
            t.records,
            {
                "id": record.id,
                "kind": record.kind,
                "tags": jsonable(list(record.tags)),
                "attrs": jsonable(record.attrs),
                "created_at": at,
                "updated_at": at,
            },
            ["id"],
            ["tags", "attrs", "updated_at"],
        )
        fv_t = t.field_values
        have = {
            row.field: (row.value, row.system, row.at)
            for row in self.conn.execute(sa.select(fv_t).where(fv_t.c.record_id == record.id))
        }
        gone = set(have) - set(record.fields)
        if gone:
            self.conn.execute(fv_t.delete().where(fv_t.c.record_id == record.id, fv_t.c.field.in_(gone)))
        rows = []
        for name, fv in record.fields.items():
            new = (jsonable(fv.value), fv.system, fv.at)
            if have.get(name) != new:
                rows.append(
                    {"record_id": record.id, "field": name, "value": new[0], "system": fv.system, "at": fv.at}
                )
        upsert(self.conn, fv_t, rows, ["record_id", "field"], ["value", "system", "at"])

    def delete_record(self, record_id: str) -> None:
        """Delete a record with its links, keys, field values and shadow (changes, outbox and audit stay)."""
        self.conn.execute(t.records.delete().where(t.records.c.id == record_id))

    # ----------------------------------------------------------------- changes
    def add_change(self, change: Change, record_id: str | None, received_at: datetime | None = None) -> int:
        """Keep a change as received (before its cursor advances); returns its id."""
        payload = {
            "fields": jsonable(change.fields),
            "tags": jsonable(change.tags),
            "attrs": jsonable(change.attrs),
            "deleted": change.deleted,
        }
        result = self.conn.execute(
            t.changes.insert()
            .values(
                system=change.system,
                kind=change.kind,
                external_id=change.external_id,
                record_id=record_id,
                at=parse_time(change.at),
                payload=payload,
                received_at=received_at or utcnow(),
            )
            .returning(t.changes.c.id)
        )
        return int(result.scalar_one())

    def set_change(self, change_id: int, change: Change) -> None:
        """Keep what was taken of a change instead of what was received: its attributes and tags (a
        helpdesk's repeat of what it held before bridge's write landed is no change of them, and a rebuild
        must read the change as it was taken)."""
        payload = {
            "fields": jsonable(change.fields),
            "tags": jsonable(change.tags),
            "attrs": jsonable(change.attrs),
            "deleted": change.deleted,
        }
        self.conn.execute(t.changes.update().where(t.changes.c.id == change_id).values(payload=payload))

    def changes_of(self, record_id: str) -> list[Change]:
        """The changes kept for one record, oldest first (JSON values as stored)."""
        q = sa.select(t.changes).where(t.changes.c.record_id == record_id).order_by(t.changes.c.id)
        return [_change(row) for row in self.conn.execute(q)]

    def logged_changes(self, kind: str, record_ids: Collection[str]) -> Iterator[LoggedChange]:
        """The changes of the given records of ``kind``, in the order they were processed (id order)."""
        q = (
            sa.select(t.changes)
            .where(t.changes.c.kind == kind, t.changes.c.record_id.is_not(None))
            .order_by(t.changes.c.id)
        )
        for row in self.conn.execute(q):
            if row.record_id in record_ids:
                yield _logged(row)

    def taken_times(self, kind: str, since: datetime | None) -> list[tuple[datetime, int]]:
        """``(desk_at, change id)`` of every change of ``kind`` a rules' Desk took after ``since`` (None:
        ever), not one only marked as taken: the instants the live Desk fired the timers due before (a rebuild
        that replays only the open tickets still fires them then)."""
        c = t.changes.c
        q = sa.select(c.desk_at, c.id).where(c.kind == kind, c.desk_at.is_not(None), c.by_desk.is_(True))
        if since is not None:
            q = q.where(c.desk_at > since)
        q = q.order_by(c.desk_at, c.id)
        return [(parse_time(at), int(cid)) for at, cid in self.conn.execute(q)]

    def first_changes(self, kind: str) -> dict[str, LoggedChange]:
        """Record id -> the first change kept for it, for every record of ``kind`` that has one."""
        c = t.changes
        first = (
            sa.select(sa.func.min(c.c.id))
            .where(c.c.kind == kind, c.c.record_id.is_not(None))
            .group_by(c.c.record_id)
        )
        q = sa.select(c).where(c.c.id.in_(first)).order_by(c.c.id)
        return {row.record_id: _logged(row) for row in self.conn.execute(q)}

    def untaken_changes(self, kind: str, after: int, own: str | None = None) -> list[LoggedChange]:
        """The changes of ``kind`` after change id ``after`` that no rules' Desk took (``desk_at`` unset), in
        id order: what other replicas processed without rules, for the rules leader to catch up. ``own``:
        the bridge's own changes of that kind about no record (agents' statuses) too, in their place. Each
        says whether it came late (after a newer change of its record from its system, so not applied)."""
        c = t.changes
        which = sa.and_(c.c.kind == kind, c.c.record_id.is_not(None))
        if own is not None:
            which = sa.or_(which, _own(own))
        newer = sa.alias(c)
        late = (
            sa.select(newer.c.id)
            .where(newer.c.record_id == c.c.record_id, newer.c.system == c.c.system, newer.c.id < c.c.id,
                   newer.c.at > c.c.at)
            .exists()
        )
        q = (
            sa.select(c, late.label("came_late"))
            .where(c.c.id > after, which, c.c.desk_at.is_(None))
            .order_by(c.c.id)
        )
        return [_logged(row)._replace(came_late=bool(row.came_late)) for row in self.conn.execute(q)]

    def own_changes(self, kind: str) -> list[LoggedChange]:
        """The bridge's own changes of ``kind``, about no record (agents' statuses), in id order; their
        ``record_id`` is ``""``."""
        q = sa.select(t.changes).where(_own(kind)).order_by(t.changes.c.id)
        return [_logged(row) for row in self.conn.execute(q)]

    def last_change_id(self, received_before: datetime | None = None, after: int = 0) -> int:
        """The newest change id after ``after`` (received before ``received_before``), or ``after``."""
        c = t.changes
        q = sa.select(sa.func.max(c.c.id)).where(c.c.id > after)
        if received_before is not None:
            q = q.where(c.c.received_at < received_before)
        found = self.conn.scalar(q)
        return after if found is None else int(found)

    def changes_between(self, kind: str, after: int, until: int, limit: int | None = None
                        ) -> list[tuple[int, str, datetime]]:
        """``(change id, record id, time of the record's first change kept)`` of the (first ``limit``)
        changes of ``kind`` about a record with an id in ``(after, until]``, in id order."""
        c = t.changes.c
        span = sa.and_(c.kind == kind, c.record_id.is_not(None), c.id > after, c.id <= until)
        q = sa.select(c.id, c.record_id).where(span).order_by(c.id).limit(limit)
        rows = list(self.conn.execute(q))
        firsts: dict[str, datetime] = {}
        ids = sorted({rid for _cid, rid in rows})
        for n in range(0, len(ids), _PAGE):
            first_ids = (sa.select(sa.func.min(c.id)).where(c.kind == kind, c.record_id.in_(ids[n:n + _PAGE]))
                         .group_by(c.record_id))
            found = sa.select(c.record_id, c.at).where(c.id.in_(first_ids))
            firsts.update((rid, parse_time(at)) for rid, at in self.conn.execute(found))
        return [(int(cid), rid, firsts[rid]) for cid, rid in rows]

    def records_of(self, record_ids: Collection[str]) -> dict[str, Record]:
        """The records with these ids that exist, by id (loaded page by page)."""
        ids = sorted(set(record_ids))
        out: dict[str, Record] = {}
        for n in range(0, len(ids), _PAGE):
            rows = list(self.conn.execute(sa.select(t.records).where(t.records.c.id.in_(ids[n:n + _PAGE]))))
            out.update((r.id, r) for r in self._assemble(rows))
        return out

    def set_desk_time(self, change_id: int, at: datetime, by_desk: bool = True) -> None:
        """Keep the time the rules' Desk took change ``change_id`` at (a rebuilt Desk takes it then too);
        ``by_desk`` False: no Desk took it, it is only marked as taken (nothing in it for the rules)."""
        self.conn.execute(
            t.changes.update().where(t.changes.c.id == change_id).values(desk_at=at, by_desk=by_desk)
        )

    # ------------------------------------------------------------------ shadow
    def shadow(self, record_id: str, field: str, system: str) -> tuple[bool, Any]:
        """What ``system`` was last told (or last said) of ``field``: ``(known, value)``.

        ``(False, None)`` when nothing is known; ``(True, None)`` when the known value is blank.
        """
        q = sa.select(t.shadow.c.value).where(
            t.shadow.c.record_id == record_id, t.shadow.c.field == field, t.shadow.c.system == system
        )
        row = self.conn.execute(q).one_or_none()
        return (False, None) if row is None else (True, row.value)

    def set_shadow(self, record_id: str, field: str, system: str, value: Any, at: datetime) -> None:
        """Remember ``value`` as what ``system`` holds in ``field`` (for echo detection)."""
        upsert(
            self.conn,
            t.shadow,
            {"record_id": record_id, "field": field, "system": system, "value": jsonable(value), "at": at},
            ["record_id", "field", "system"],
            ["value", "at"],
        )

    # ----------------------------------------------------------------- cursors
    def cursor(self, system: str, kind: str) -> str | None:
        """Where the last committed pull of ``kind`` from ``system`` ended, or None."""
        q = sa.select(t.cursors.c.value).where(t.cursors.c.system == system, t.cursors.c.kind == kind)
        return self.conn.scalar(q)

    def set_cursor(self, system: str, kind: str, value: str) -> None:
        """Advance the cursor (in the same transaction as the changes it covers)."""
        upsert(
            self.conn,
            t.cursors,
            {"system": system, "kind": kind, "value": value},
            ["system", "kind"],
            ["value"],
        )

    # ------------------------------------------------------------------ outbox
    def enqueue(self, write: Write, now: datetime) -> bool:
        """Queue a write; False when the same write (same idempotency key) is already pending.

        When the pending twin is no longer the last pending write to that record in that system (a
        different write was queued after it), the twin is dropped and this write is queued at the end, so
        writes still land in the order they were decided. A side effect that is an event is keyed by its
        decision (:class:`bridge.effects.EffectWrite`): an equal event of another decision is no twin, and
        its own twin is the same event, which keeps its place.
        """
        o = t.outbox
        key = write.idempotency_key
        twin = self.conn.scalar(sa.select(o.c.id).where(o.c.key == key, o.c.status == "pending"))
        if twin is not None and isinstance(write, EffectWrite):
            return False
        if twin is not None:
            later = self.conn.scalar(
                sa.select(o.c.id)
                .where(
                    o.c.status == "pending",
                    o.c.system == write.system,
                    o.c.kind == write.kind,
                    o.c.record_id == write.record_id,
                    o.c.id > twin,
                )
                .limit(1)
            )
            if later is None:
                return False
            self.conn.execute(o.delete().where(o.c.id == twin))
        dialect = postgresql if self._pg else sqlite
        stmt = (
            dialect.insert(o)
            .values(
                system=write.system,
                kind=write.kind,
                record_id=write.record_id,
                external_id=write.external_id,
                fields=jsonable(write.fields),
                key=key,
                status="pending",
                attempts=0,
                not_before=now,
                created_at=now,
            )
            .on_conflict_do_nothing(index_elements=["key"], index_where=sa.text("status = 'pending'"))
        )
        # a concurrent transaction may have queued the twin since the check above
        return bool(self.conn.execute(stmt).rowcount)

    # ------------------------------------------------------------------ effects
    def claim_effect(self, key: str, record_id: str, decision: str, at: datetime) -> bool:
        """Claim a side effect's idempotency key; False when it was taken before (the effect is not repeated).

        Claim it in the transaction that queues the effect's write: both commit, or neither.
        """
        dialect = postgresql if self._pg else sqlite
        stmt = (
            dialect.insert(t.effects)
            .values(key=key, record_id=record_id, decision=decision, at=at, seq=self._next_seq())
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(t.effects.c.key)
        )
        # RETURNING, not rowcount: psycopg reports a row for a skipped conflict on some versions
        return self.conn.execute(stmt).scalar() is not None

    def _next_seq(self) -> sa.ScalarSelect[Any]:
        # one more than the highest so far, in the insert itself (two replicas claiming at once may tie:
        # a tie is broken by time and key, as before this column)
        return sa.select(sa.func.coalesce(sa.func.max(t.effects.c.seq), 0) + 1).scalar_subquery()

    def effect_keys(self, decision: str, since: datetime | None) -> list[tuple[str, datetime]]:
        """``(key, at)`` of every claimed side effect of kind ``decision`` since ``since`` (None: ever), in
        the order they took effect: by time, then in the order they were claimed."""
        e = t.effects.c
        q = sa.select(e.key, e.at).where(e.decision == decision)
        if since is not None:
            q = q.where(e.at >= since)
        q = q.order_by(e.at, e.seq.nulls_first(), e.key)
        return [(str(key), at) for key, at in self.conn.execute(q)]

    def effect_rules(self, record_ids: Iterable[str]) -> set[tuple[str, str]]:
        """``(record id, rule)`` of every claimed side effect of these records (a decision's key is
        ``TICKET|KIND|RULE|INSTANT|WHAT``)."""
        e = t.effects.c
        ids = list(record_ids)
        out: set[tuple[str, str]] = set()
        for start in range(0, len(ids), 500):
            q = sa.select(e.record_id, e.key).where(e.record_id.in_(ids[start:start + 500]))
            for rid, key in self.conn.execute(q):
                # (a rule's name, and what follows the instant, a notification's text, may hold a bar: the
                # rule ends at the first bar-framed instant after the kind)
                _ticket, _kind, rest = str(key).split("|", 2) if str(key).count("|") >= 2 else ("", "", "")
                found = _KEY_INSTANT.search(rest)
                if found is not None:
                    out.add((str(rid), rest[:found.start()]))
        return out

    # ------------------------------------------------------------------- audit
    def audit(
        self,
        *,
        at: datetime,
        run: str,
        record_id: str | None,
        field: str | None,
        before: Any,
        after: Any,
        origin: str,
        rule: str,
        kind: str = "write",
        response: Any = None,
    ) -> None:
        """Append one line to the audit log: a write, conflict, decision or delete, with its reason."""
        if kind not in t.AUDIT_KINDS:
            raise ValueError(f"audit kind {kind!r} is not one of {', '.join(t.AUDIT_KINDS)}")
        self.conn.execute(
            t.audit.insert().values(
                at=at,
                run=run,
                record_id=record_id,
                field=field,
                before=jsonable(before),
                after=jsonable(after),
                origin=origin,
                rule=rule,
                kind=kind,
                response=jsonable(response),
            )
        )

    def decisions(self) -> Iterator[dict[str, Any]]:
        """The rules' decisions of the audit log, oldest first, as dicts named like the columns."""
        q = sa.select(t.audit).where(t.audit.c.kind == "decision").order_by(t.audit.c.id)
        for row in self.conn.execute(q):
            yield dict(row._mapping)

    def audit_for(self, record_id: str) -> list[dict[str, Any]]:
        """The audit lines of one record, oldest first, as dicts named like the columns."""
        q = sa.select(t.audit).where(t.audit.c.record_id == record_id).order_by(t.audit.c.id)
        return [dict(row._mapping) for row in self.conn.execute(q)]
