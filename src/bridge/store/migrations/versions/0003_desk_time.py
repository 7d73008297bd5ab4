"""The time the rules' Desk took each ticket change at (a late change is taken at the Desk's clock).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bridge.store.tables import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the nullable ``changes.desk_at`` column (None: no Desk took the change). The ticket changes
    already kept were taken at their own time: the rules leader does not catch them up."""
    with op.batch_alter_table("changes") as batch:
        batch.add_column(sa.Column("desk_at", UTCDateTime(), nullable=True))
    op.execute("UPDATE changes SET desk_at = at WHERE kind = 'ticket'")


def downgrade() -> None:
    """Drop ``changes.desk_at``."""
    with op.batch_alter_table("changes") as batch:
        batch.drop_column("desk_at")
