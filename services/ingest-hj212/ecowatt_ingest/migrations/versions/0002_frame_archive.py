"""The raw-frame archive: `ingest.frames` (partitioned by day of arrival) and `ingest.replays`.

Partitions are created by the service (`archive.service.ensure_partitions`): ahead of time
by its maintenance job and on demand when a frame of another day arrives. `raw` holds the
frame's bytes compressed by the service (`raw_codec` = 'zlib'; NULL: as received):
PostgreSQL compresses a value only inside a row over TOAST_TUPLE_THRESHOLD (2 KB, fixed at
build time; `toast_tuple_target` does not lower it), and a frame is ≈ 0.85 KB.

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
    op.execute(
        """
        CREATE TABLE ingest.frames (
          received_at timestamptz NOT NULL,
          frame_id uuid NOT NULL,
          mn text,
          cn text,
          qn text,
          data_time text,
          data_time_utc timestamptz,
          verdict text NOT NULL,
          reason_code text,
          reason text,
          peer text,
          session_id text,
          ingest_instance text,
          trace_id text,
          size integer NOT NULL,
          raw_codec text,
          raw bytea NOT NULL,
          PRIMARY KEY (received_at, frame_id)
        ) PARTITION BY RANGE (received_at)
        """
    )
    op.execute("CREATE INDEX frames_mn_received ON ingest.frames (mn, received_at)")
    op.execute("CREATE INDEX frames_mn_data_time ON ingest.frames (mn, data_time_utc)")
    op.execute("CREATE INDEX frames_frame_id ON ingest.frames (frame_id)")
    op.execute(
        """
        CREATE TABLE ingest.replays (
          id uuid PRIMARY KEY,
          status text NOT NULL,
          received_from timestamptz NOT NULL,
          received_to timestamptz NOT NULL,
          mns text[],
          scope jsonb NOT NULL,
          reason text,
          requested_by text NOT NULL,
          requested_at timestamptz NOT NULL,
          started_at timestamptz,
          finished_at timestamptz,
          heartbeat_at timestamptz,
          runner text,
          total integer,
          processed integer NOT NULL DEFAULT 0,
          published integer NOT NULL DEFAULT 0,
          skipped integer NOT NULL DEFAULT 0,
          cursor_received_at timestamptz,
          cursor_frame_id uuid,
          error text
        )
        """
    )
    op.execute("CREATE INDEX replays_status ON ingest.replays (status, requested_at)")


def downgrade() -> None:
    op.execute("DROP TABLE ingest.replays")
    op.execute("DROP TABLE ingest.frames")
