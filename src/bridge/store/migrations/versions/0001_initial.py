"""The initial store: records, links, keys, field values, changes, shadow, cursors, outbox, audit.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from bridge.store.tables import JSONValue, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_CASCADE: dict[str, Any] = {"ondelete": "CASCADE"}

_SQLITE_AUDIT_TRIGGERS = (
    "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit "
    "BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END",
    "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit "
    "BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END",
)
_PG_AUDIT_TRIGGER = (
    "CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
    "BEGIN RAISE EXCEPTION 'audit is append-only'; END $$",
    "CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()",
)


def upgrade() -> None:
    """Create every table of the store."""
    op.create_table(
        "records",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("tags", JSONValue, nullable=False),
        sa.Column("attrs", JSONValue, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_records"),
    )
    op.create_index("ix_records_kind_id", "records", ["kind", "id"])

    op.create_table(
        "links",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("record_id", sa.String(), nullable=False),
        sa.Column("system", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("external_id", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(["record_id"], ["records.id"], name="fk_links_record_id_records", **_CASCADE),
        sa.PrimaryKeyConstraint("id", name="pk_links"),
        sa.UniqueConstraint("system", "kind", "external_id", name="uq_links_system_kind_external_id"),
    )
    op.create_index("ix_links_record_id", "links", ["record_id"])

    op.create_table(
        "record_keys",
        sa.Column("record_id", sa.String(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("value", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(
            ["record_id"], ["records.id"], name="fk_record_keys_record_id_records", **_CASCADE
        ),
        sa.PrimaryKeyConstraint("record_id", "key", name="pk_record_keys"),
    )
    op.create_index("ix_record_keys_kind_key_value", "record_keys", ["kind", "key", "value"])

    op.create_table(
        "field_values",
        sa.Column("record_id", sa.String(), nullable=False),
        sa.Column("field", sa.String(), nullable=False),
        sa.Column("value", JSONValue, nullable=True),
        sa.Column("system", sa.String(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["record_id"], ["records.id"], name="fk_field_values_record_id_records", **_CASCADE
        ),
        sa.PrimaryKeyConstraint("record_id", "field", name="pk_field_values"),
    )

    op.create_table(
        "changes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("system", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("external_id", sa.String(), nullable=False),
        sa.Column("record_id", sa.String(), nullable=True),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("payload", JSONValue, nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_changes"),
    )
    op.create_index("ix_changes_record_id", "changes", ["record_id"])
    op.create_index("ix_changes_system_kind_external_id", "changes", ["system", "kind", "external_id"])

    op.create_table(
        "shadow",
        sa.Column("record_id", sa.String(), nullable=False),
        sa.Column("field", sa.String(), nullable=False),
        sa.Column("system", sa.String(), nullable=False),
        sa.Column("value", JSONValue, nullable=True),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["record_id"], ["records.id"], name="fk_shadow_record_id_records", **_CASCADE
        ),
        sa.PrimaryKeyConstraint("record_id", "field", "system", name="pk_shadow"),
    )

    op.create_table(
        "cursors",
        sa.Column("system", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("system", "kind", name="pk_cursors"),
    )

    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
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
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
    )
    op.create_index(
        "uq_outbox_key_pending",
        "outbox",
        ["key"],
        unique=True,
        sqlite_where=sa.text("status = 'pending'"),
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index("ix_outbox_system_status_id", "outbox", ["system", "status", "id"])

    op.create_table(
        "audit",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
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
        sa.PrimaryKeyConstraint("id", name="pk_audit"),
    )
    op.create_index("ix_audit_record_id_id", "audit", ["record_id", "id"])
    # append-only is enforced by the database, not only by the absence of an update API
    dialect = op.get_bind().dialect.name
    for statement in _PG_AUDIT_TRIGGER if dialect == "postgresql" else _SQLITE_AUDIT_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    """Drop every table of the store."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS audit_append_only() CASCADE")
    for table in ("audit", "outbox", "cursors", "shadow", "changes", "field_values", "record_keys", "links"):
        op.drop_table(table)
    op.drop_table("records")
