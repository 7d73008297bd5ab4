"""Whether a rules' Desk took each ticket change, or a replica without rules only marked it as taken.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the nullable ``changes.by_desk`` column (None: marked before it existed, not known)."""
    with op.batch_alter_table("changes") as batch:
        batch.add_column(sa.Column("by_desk", sa.Boolean(), nullable=True))


def downgrade() -> None:
    """Drop ``changes.by_desk``."""
    with op.batch_alter_table("changes") as batch:
        batch.drop_column("by_desk")
