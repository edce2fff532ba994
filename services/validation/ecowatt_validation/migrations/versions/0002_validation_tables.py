"""Validation tables: rules and versions, archive dimension, point state and daily
aggregates, findings and their daily occurrences, unbound readings, daily runs, outbox.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The first real revision creates the tables exactly as `models` defines them today;
    # later revisions alter them explicitly.
    from ecowatt_validation.models import metadata

    metadata.create_all(op.get_bind())


def downgrade() -> None:
    from ecowatt_validation.models import metadata

    metadata.drop_all(op.get_bind())
