"""The O&M desk: incidents and their timeline, support requests and theirs, calendar
overrides, duty contacts, escalations, notifications, the knowledge base (pg_trgm), stored
abnormal-event reports. Timelines are append-only.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op
from ecowatt_ops.desk.tables import metadata

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TIMELINES = ("incident_event", "request_event", "kb_version")


def upgrade() -> None:
    # Trigram search (knowledge base, similar cases). In `public`, where every schema's
    # search_path finds it; a trusted extension since PostgreSQL 13 (the database owner may
    # create it).
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public")
    metadata.create_all(op.get_bind())
    op.execute(
        "CREATE FUNCTION ops.append_only() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION '%.% is append-only', TG_TABLE_SCHEMA, TG_TABLE_NAME; END $$"
    )
    for table in TIMELINES:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON ops.{table} "
            "FOR EACH ROW EXECUTE FUNCTION ops.append_only()"
        )


def downgrade() -> None:
    metadata.drop_all(op.get_bind())
    op.execute("DROP FUNCTION IF EXISTS ops.append_only()")
