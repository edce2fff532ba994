"""The day's slots taken by live samples, apart from back-filled (history) ones.

The daily `device_offline` check looks for the longest silence in a device's day. Samples a
device back-fills after a gap (the answer to ingest's history request, or data re-sent from
before its connection: `TelemetryReading.history`) complete the day's data, but the device
was not reachable when they were due: the check reads `live_slots`. NULL (rows written
before this revision) means every slot was taken live, as the check then assumed. A new
database has the column from 0002 already (which creates `models` as it is): IF NOT EXISTS.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE validation.point_daily ADD COLUMN IF NOT EXISTS live_slots bytea")


def downgrade() -> None:
    op.execute("ALTER TABLE validation.point_daily DROP COLUMN IF EXISTS live_slots")
