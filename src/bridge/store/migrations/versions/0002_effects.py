"""Side effects taken once: a table of claimed idempotency keys.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bridge.store.tables import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the effects table."""
    op.create_table(
        "effects",
        sa.Column("key", sa.String(), primary_key=True),
        sa.Column("record_id", sa.String(), nullable=False),
        sa.Column("decision", sa.String(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_effects_record_id", "effects", ["record_id"])


def downgrade() -> None:
    """Drop the effects table."""
    op.drop_index("ix_effects_record_id", table_name="effects")
    op.drop_table("effects")
