"""Control-plan tables: reduction list and versions, alert orders and changes, tasks, per-point
hours, baselines, verdicts, enterprise hours, issues and their journal, holidays, outbox; the
2026 holidays seeded (data/SOURCES.md).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

from alembic import op
from ecowatt_control_plan.alerts import models as _alerts  # noqa: F401 - registers the tables
from ecowatt_control_plan.compliance import models as compliance
from ecowatt_control_plan.database import METADATA
from ecowatt_control_plan.issues import models as _issues  # noqa: F401
from ecowatt_control_plan.measures import models as _measures  # noqa: F401
from ecowatt_control_plan.tasks import models as _tasks  # noqa: F401
from ecowatt_control_plan.telemetry import models as _telemetry  # noqa: F401

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

HOLIDAYS = Path(__file__).resolve().parents[2] / "data" / "holidays.csv"


def upgrade() -> None:
    bind = op.get_bind()
    METADATA.create_all(bind)
    # The issue journal is append-only: the database refuses to change or delete rows.
    op.execute(
        "CREATE FUNCTION control_plan.journal_append_only() RETURNS trigger LANGUAGE plpgsql "
        "AS $$ BEGIN RAISE EXCEPTION 'control_plan.issue_journal is append-only'; END $$"
    )
    op.execute(
        "CREATE TRIGGER issue_journal_append_only BEFORE UPDATE OR DELETE ON "
        "control_plan.issue_journal FOR EACH ROW EXECUTE FUNCTION "
        "control_plan.journal_append_only()"
    )
    with HOLIDAYS.open(encoding="utf-8") as handle:
        rows = [
            {"day": date.fromisoformat(r["day"]), "name": r["name"], "updated_by": "migration"}
            for r in csv.DictReader(handle)
        ]
    op.bulk_insert(compliance.holiday, rows)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS control_plan.journal_append_only() CASCADE")
    METADATA.drop_all(op.get_bind())
