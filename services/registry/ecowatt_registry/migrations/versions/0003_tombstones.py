"""Tombstones: the last revision of deleted entities, so re-created ones continue after it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the tombstone table."""
    op.create_table(
        "tombstone",
        sa.Column("entity", sa.Text(), nullable=False),
        sa.Column("entity_id", sa.Text(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("entity", "entity_id", name=op.f("pk_tombstone")),
        schema="registry",
    )


def downgrade() -> None:
    """Drop the tombstone table."""
    op.drop_table("tombstone", schema="registry")
