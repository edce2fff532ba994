"""Reporting tables: partitioned history and rollups, latest values, the archive copy,
states and alarms as intervals, findings, compliance, reports, subscriptions, deliveries.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The first real revision creates the tables exactly as the models define them today
    # (partitioned parents only: partitions are created at run time, ahead of the data);
    # later revisions alter them explicitly.
    from ecowatt_reporting.models import metadata

    metadata.create_all(op.get_bind())


def downgrade() -> None:
    from ecowatt_reporting.models import metadata

    metadata.drop_all(op.get_bind())
