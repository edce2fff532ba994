"""API keys: the `reports` dataset becomes `telemetry`.

`reports` ("generated reports and telemetry rollups") granted `GET /api/reporting/**`, whose
routes other than the partner datasets refuse partners anyway; the telemetry part — latest
values and 15-minute energy of reporting's partner datasets — is now the `telemetry`
dataset. Keys issued with `reports` keep what it was meant to grant.

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
    op.execute(
        "UPDATE auth.api_key SET datasets = array_replace(datasets, 'reports', 'telemetry') "
        "WHERE 'reports' = ANY(datasets)"
    )


def downgrade() -> None:
    op.execute(
        "UPDATE auth.api_key SET datasets = array_replace(datasets, 'telemetry', 'reports') "
        "WHERE 'telemetry' = ANY(datasets)"
    )
