"""Baseline: the ops schema exists and is under version control (the O&M desk adds tables).

Revision ID: 0001
Revises:
Create Date: 2026-12-07
"""

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """The schema itself is created by the kernel before migrations run."""


def downgrade() -> None:
    """Nothing to undo."""
