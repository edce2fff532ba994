"""An index for the history list's default order (newest first).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Index change_history by (changed_at, id)."""
    op.create_index(
        "ix_change_history_changed_at",
        "change_history",
        ["changed_at", "id"],
        unique=False,
        schema="registry",
    )


def downgrade() -> None:
    """Drop the index."""
    op.drop_index("ix_change_history_changed_at", table_name="change_history", schema="registry")
