"""The order side effects were claimed in: after a restart, round robin breaks ties of one instant by it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the nullable, indexed ``effects.seq`` column (None: claimed before it existed)."""
    with op.batch_alter_table("effects") as batch:
        batch.add_column(sa.Column("seq", sa.BigInteger(), nullable=True))
        batch.create_index("ix_effects_seq", ["seq"])


def downgrade() -> None:
    """Drop ``effects.seq``."""
    with op.batch_alter_table("effects") as batch:
        batch.drop_index("ix_effects_seq")
        batch.drop_column("seq")
