"""Alarm tables: rules, runtime, states, alarms, journal, attachments, filings, learning,
notifications, outbox; the rule catalogue seeded with its defaults.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import json

from alembic import op
from ecowatt_alarm.rules import DEFAULT_RULES
from ecowatt_alarm.tables import metadata

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    metadata.create_all(bind)
    # The handling journal is append-only: the database refuses to change or delete rows.
    op.execute(
        "CREATE FUNCTION alarm.journal_append_only() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'alarm.journal is append-only'; END $$"
    )
    op.execute(
        "CREATE TRIGGER journal_append_only BEFORE UPDATE OR DELETE ON alarm.journal "
        "FOR EACH ROW EXECUTE FUNCTION alarm.journal_append_only()"
    )
    # Learning statistics are merged in the database: counts of equal bins add up.
    op.execute(
        "CREATE FUNCTION alarm.merge_bins(a jsonb, b jsonb) RETURNS jsonb LANGUAGE sql "
        "IMMUTABLE AS $$ SELECT coalesce(jsonb_object_agg(k, coalesce((a->>k)::bigint, 0) "
        "+ coalesce((b->>k)::bigint, 0)), '{}'::jsonb) FROM (SELECT jsonb_object_keys("
        "coalesce(a, '{}'::jsonb)) AS k UNION SELECT jsonb_object_keys(coalesce(b, "
        "'{}'::jsonb))) AS keys $$"
    )
    rule = metadata.tables["alarm.rule"]
    history = metadata.tables["alarm.rule_version"]
    rows = [
        {
            "code": r.code,
            "version": r.version,
            "name": r.name,
            "name_en": r.name_en,
            "description": r.description,
            "enabled": r.enabled,
            "params": json.loads(json.dumps(r.params)),
        }
        for r in DEFAULT_RULES.values()
    ]
    op.bulk_insert(rule, rows)
    op.bulk_insert(
        history,
        [
            {
                "code": r["code"],
                "version": r["version"],
                "enabled": r["enabled"],
                "params": r["params"],
                "changed_by": "migration",
                "reason": "defaults (supervision.md §2)",
            }
            for r in rows
        ],
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS alarm.journal_append_only() CASCADE")
    op.execute("DROP FUNCTION IF EXISTS alarm.merge_bins(jsonb, jsonb)")
    metadata.drop_all(op.get_bind())
