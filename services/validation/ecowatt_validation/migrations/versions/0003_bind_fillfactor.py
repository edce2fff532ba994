"""Leave room in the pages of the binder's tables for HOT updates.

Every batch rewrites the state row of each point it touched and its day row. With full
pages each new row version goes to another page and every index gets a new entry; with
free space on the page (and no indexed column changing) PostgreSQL updates in place (a
heap-only tuple) and prunes old versions as it goes. point_state is small (one row per
point): half of each page is kept free. point_daily keeps a row per point and day and
only today's rows are updated: 30% is kept free. Applies to pages written from now on.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE validation.point_state SET (fillfactor = 50)")
    op.execute("ALTER TABLE validation.point_daily SET (fillfactor = 70)")


def downgrade() -> None:
    op.execute("ALTER TABLE validation.point_daily RESET (fillfactor)")
    op.execute("ALTER TABLE validation.point_state RESET (fillfactor)")
