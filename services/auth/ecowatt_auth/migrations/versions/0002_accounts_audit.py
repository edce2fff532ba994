"""Accounts, password history, known addresses, revoked tokens, API keys, the audit log
(append-only, hash-chained) and security alerts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op
from ecowatt_auth.tables import metadata

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    metadata.create_all(op.get_bind())
    # The audit log is append-only: the database refuses to change, delete or empty it.
    op.execute(
        "CREATE FUNCTION auth.audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'auth.audit_log is append-only'; END $$"
    )
    op.execute(
        "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON auth.audit_log "
        "FOR EACH ROW EXECUTE FUNCTION auth.audit_log_append_only()"
    )
    op.execute(
        "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON auth.audit_log "
        "FOR EACH STATEMENT EXECUTE FUNCTION auth.audit_log_append_only()"
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS auth.audit_log CASCADE")
    op.execute("DROP FUNCTION IF EXISTS auth.audit_log_append_only()")
    metadata.drop_all(op.get_bind())
