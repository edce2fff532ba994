"""Event time (issue 19): discovery time, late findings and retractions on alarms, withdrawn
state changes, samples kept for re-judging late data.

Revision 0002 creates the tables from `tables.metadata` as it is at the time it runs, so a
fresh database already has these columns: every statement here is idempotent.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in (
        "ALTER TABLE alarm.alarm ADD COLUMN IF NOT EXISTS discovered_at timestamptz",
        "ALTER TABLE alarm.alarm ADD COLUMN IF NOT EXISTS late boolean NOT NULL DEFAULT false",
        "ALTER TABLE alarm.alarm ADD COLUMN IF NOT EXISTS retracted_at timestamptz",
        "ALTER TABLE alarm.alarm ADD COLUMN IF NOT EXISTS retraction jsonb",
        "ALTER TABLE alarm.state_change ADD COLUMN IF NOT EXISTS withdrawn_at timestamptz",
        "CREATE TABLE IF NOT EXISTS alarm.retained_sample (id bigserial PRIMARY KEY, "
        "enterprise_id text NOT NULL, t double precision NOT NULL, point_id text NOT NULL, "
        "power double precision NOT NULL, voltage double precision, "
        "interval double precision NOT NULL DEFAULT 0)",
        "CREATE INDEX IF NOT EXISTS ix_retained_sample_enterprise "
        "ON alarm.retained_sample (enterprise_id, t)",
    ):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS alarm.retained_sample")
    for column in ("discovered_at", "late", "retracted_at", "retraction"):
        op.execute(f"ALTER TABLE alarm.alarm DROP COLUMN IF EXISTS {column}")
    op.execute("ALTER TABLE alarm.state_change DROP COLUMN IF EXISTS withdrawn_at")
