"""The time the rules' Desk took each change at (a late change is taken at the Desk's clock).

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
    """Add the nullable ``changes.desk_at`` column (None: the Desk took the change at its own time)."""
    with op.batch_alter_table("changes") as batch:
        batch.add_column(sa.Column("desk_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    """Drop ``changes.desk_at``."""
    with op.batch_alter_table("changes") as batch:
        batch.drop_column("desk_at")
