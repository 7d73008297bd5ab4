"""The store's tables (SQLAlchemy Core), in step with the Alembic migrations in ``migrations/versions``.

A test compares this metadata with the migrated schema, so a column added here without a migration fails.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

OUTBOX_STATUSES = ("pending", "claimed", "done", "dead")
AUDIT_KINDS = ("write", "conflict", "decision", "delete")


class UTCDateTime(sa.TypeDecorator[datetime]):
    """An aware UTC datetime on every backend (SQLite keeps naive UTC text, PostgreSQL timestamptz)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} given to the store; times are aware UTC")
        value = value.astimezone(UTC)
        # SQLite compares times as text: one naive UTC spelling keeps comparisons right
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class JSONText(sa.TypeDecorator[Any]):
    """JSON as TEXT in SQLite, where a column typed JSON has NUMERIC affinity (``1.0`` would become 1)."""

    impl = sa.Text()
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        return None if value is None else json.loads(value)


# plain JSON on PostgreSQL (not JSONB): it keeps the text as written, so a float such as 3.1e16 comes back a
# float, as on SQLite; nothing queries inside these values
JSONValue: sa.types.TypeEngine[Any] = sa.JSON().with_variant(JSONText(), "sqlite")

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

records = sa.Table(
    "records",
    metadata,
    sa.Column("id", sa.String(), primary_key=True),
    sa.Column("kind", sa.String(), nullable=False),
    sa.Column("tags", JSONValue, nullable=False),
    sa.Column("attrs", JSONValue, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Index(None, "kind", "id"),
)


links = sa.Table(
    "links",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("record_id", sa.String(), sa.ForeignKey("records.id", ondelete="CASCADE"), nullable=False),
    sa.Column("system", sa.String(), nullable=False),
    sa.Column("kind", sa.String(), nullable=False),
    sa.Column("external_id", sa.String(), nullable=False),
    sa.UniqueConstraint("system", "kind", "external_id"),
    sa.Index(None, "record_id"),
)

record_keys = sa.Table(
    "record_keys",
    metadata,
    sa.Column("record_id", sa.String(), sa.ForeignKey("records.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("key", sa.String(), primary_key=True),
    sa.Column("kind", sa.String(), nullable=False),
    sa.Column("value", sa.String(), nullable=False),
    sa.Index(None, "kind", "key", "value"),
)

field_values = sa.Table(
    "field_values",
    metadata,
    sa.Column("record_id", sa.String(), sa.ForeignKey("records.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("field", sa.String(), primary_key=True),
    sa.Column("value", JSONValue, nullable=True),
    sa.Column("system", sa.String(), nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False),
)

changes = sa.Table(
    "changes",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("system", sa.String(), nullable=False),
    sa.Column("kind", sa.String(), nullable=False),
    sa.Column("external_id", sa.String(), nullable=False),
    sa.Column("record_id", sa.String(), nullable=True),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("payload", JSONValue, nullable=False),
    sa.Column("received_at", UTCDateTime(), nullable=False),
    # when the rules' Desk took the change (a late one is taken at the Desk's clock), written in the
    # transaction that fed it: a rebuilt Desk takes it at the same time, so its timers fall where the live
    # Desk's did; NULL: no Desk took it (another replica processed it), the rules leader catches it up
    sa.Column("desk_at", UTCDateTime(), nullable=True),
    # whether a Desk took it then (its timers due before it fired then), or a replica without rules only
    # marked it as taken (a change to a closed ticket, a stale one); NULL: marked before this was kept
    sa.Column("by_desk", sa.Boolean(), nullable=True),
    sa.Index(None, "record_id"),
    sa.Index(None, "system", "kind", "external_id"),
)

shadow = sa.Table(
    "shadow",
    metadata,
    sa.Column("record_id", sa.String(), sa.ForeignKey("records.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("field", sa.String(), primary_key=True),
    sa.Column("system", sa.String(), primary_key=True),
    sa.Column("value", JSONValue, nullable=True),
    sa.Column("at", UTCDateTime(), nullable=False),
)

cursors = sa.Table(
    "cursors",
    metadata,
    sa.Column("system", sa.String(), primary_key=True),
    sa.Column("kind", sa.String(), primary_key=True),
    sa.Column("value", sa.Text(), nullable=False),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("system", sa.String(), nullable=False),
    sa.Column("kind", sa.String(), nullable=False),
    sa.Column("record_id", sa.String(), nullable=False),
    sa.Column("external_id", sa.String(), nullable=True),
    sa.Column("fields", JSONValue, nullable=False),
    sa.Column("key", sa.String(), nullable=False),
    sa.Column("status", sa.String(), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("not_before", UTCDateTime(), nullable=False),
    sa.Column("claimed_until", UTCDateTime(), nullable=True),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("done_at", UTCDateTime(), nullable=True),
    sa.Column("response", JSONValue, nullable=True),
    sa.CheckConstraint("status IN ('pending', 'claimed', 'done', 'dead')", name="ck_outbox_status"),
    # the idempotency key is unique only among pending rows: a done write may be queued again later
    sa.Index(
        "uq_outbox_key_pending",
        "key",
        unique=True,
        sqlite_where=sa.text("status = 'pending'"),
        postgresql_where=sa.text("status = 'pending'"),
    ),
    sa.Index(None, "system", "status", "id"),
)

audit = sa.Table(
    "audit",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("run", sa.String(), nullable=False),
    sa.Column("record_id", sa.String(), nullable=True),
    sa.Column("field", sa.String(), nullable=True),
    sa.Column("before", JSONValue, nullable=True),
    sa.Column("after", JSONValue, nullable=True),
    sa.Column("origin", sa.String(), nullable=False),
    sa.Column("rule", sa.String(), nullable=False),
    sa.Column("kind", sa.String(), nullable=False),
    sa.Column("response", JSONValue, nullable=True),
    sa.CheckConstraint("kind IN ('write', 'conflict', 'decision', 'delete')", name="ck_audit_kind"),
    sa.Index(None, "record_id", "id"),
)

# side effects of rules (assign, escalate, follow-up, auto-close ...), each taken once: a key is claimed
# in the same transaction that queues the effect's write, so a crash and a retry never repeat it
effects = sa.Table(
    "effects",
    metadata,
    sa.Column("key", sa.String(), primary_key=True),
    sa.Column("record_id", sa.String(), nullable=False),
    sa.Column("decision", sa.String(), nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("seq", sa.BigInteger(), nullable=True),  # the order of the claims (None: before 0004)
    sa.Index(None, "record_id"),
    sa.Index("ix_effects_seq", "seq"),
)
