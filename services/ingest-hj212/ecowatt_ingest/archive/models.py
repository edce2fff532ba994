"""The raw-frame archive's settings, tables and API shapes.

`ingest.frames` holds every `hj212.frames` record, partitioned by local day of arrival
(`frames_YYYYMMDD`, created ahead and on demand, dropped after `archive_retention_days`),
the raw bytes compressed with zlib by the service (`raw_codec`; PostgreSQL itself compresses
only values in rows over 2 KB, and a frame is ≈ 0.85 KB). `ingest.replays`
holds replay jobs and their progress. The migration `0002_frame_archive` creates both.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from ecowatt_kernel.settings import KernelSettings
from pydantic import BaseModel, Field
from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

__all__ = [
    "FRAMES",
    "REPLAYS",
    "ArchiveSettings",
    "FrameDetail",
    "FrameRead",
    "ReplayCreate",
    "ReplayRead",
    "Verdict",
]

Verdict = Literal["accepted", "rejected", "unregistered", "duplicate"]


class ArchiveSettings(KernelSettings):
    """The archive's part of the ingest settings (`IngestSettings` inherits it)."""

    archive_enabled: bool = True
    """Store every `hj212.frames` record in PostgreSQL (consumer group `ingest-hj212.archive`)."""
    archive_retention_days: int = 90
    """Days of frames kept: disputes about a reading come up within the monthly and quarterly
    assessments, and a quarter of a 500-device city is about 10 GB compressed."""
    archive_partitions_ahead: int = 2
    """Daily partitions created ahead of today."""
    archive_max_batch: int = 2000
    """Records per write to PostgreSQL."""
    replay_batch: int = 500
    """Frames read, decoded and published per step of a replay (its progress granularity)."""


metadata = MetaData(schema="ingest")

FRAMES = Table(
    "frames",
    metadata,
    Column("received_at", DateTime(timezone=True), primary_key=True),
    Column("frame_id", UUID(as_uuid=True), primary_key=True),
    Column("mn", Text),
    Column("cn", Text),
    Column("qn", Text),
    Column("data_time", Text, comment="DataTime as sent (device local time, 14 digits)"),
    Column("data_time_utc", DateTime(timezone=True)),
    Column("verdict", Text, nullable=False),
    Column("reason_code", Text),
    Column("reason", Text),
    Column("peer", Text),
    Column("session_id", Text),
    Column("ingest_instance", Text),
    Column("trace_id", Text),
    Column("size", Integer, nullable=False, comment="bytes received"),
    Column("raw_codec", Text, comment="'zlib', or NULL: `raw` is the bytes as received"),
    Column("raw", LargeBinary, nullable=False),
)

REPLAYS = Table(
    "replays",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("status", Text, nullable=False),
    Column("received_from", DateTime(timezone=True), nullable=False),
    Column("received_to", DateTime(timezone=True), nullable=False),
    Column("mns", ARRAY(Text)),
    Column("scope", JSONB, nullable=False),
    Column("reason", Text),
    Column("requested_by", Text, nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("heartbeat_at", DateTime(timezone=True)),
    Column("runner", Text),
    Column("total", Integer),
    Column("processed", Integer, nullable=False),
    Column("published", Integer, nullable=False),
    Column("skipped", Integer, nullable=False),
    Column("cursor_received_at", DateTime(timezone=True)),
    Column("cursor_frame_id", UUID(as_uuid=True)),
    Column("error", Text),
)


# ------------------------------------------------------------------------------ API shapes


class FrameRead(BaseModel):
    """One archived frame (原始报文)."""

    frame_id: uuid.UUID
    received_at: datetime
    mn: str | None = None
    cn: str | None = None
    qn: str | None = None
    data_time: str | None = Field(None, description="DataTime as sent (device local time)")
    data_time_utc: datetime | None = None
    verdict: Verdict
    reason_code: str | None = None
    reason: str | None = None
    peer: str | None = None
    size: int = Field(description="Bytes received")
    text: str = Field(
        description="The frame as text (UTF-8; bytes that are not UTF-8 appear as \\xNN). "
        "The exact bytes: /archive/frames/{frame_id}/raw"
    )


class FrameDetail(FrameRead):
    """One frame with its session, instance, trace and exact bytes."""

    session_id: str | None = None
    ingest_instance: str | None = None
    trace_id: str | None = None
    raw_base64: str = Field(description="The exact bytes received, base64")


class ReplayCreate(BaseModel):
    """A window of archived frames to feed through validation and alarm again."""

    received_from: datetime = Field(description="Arrival time window start (inclusive)")
    received_to: datetime = Field(description="Arrival time window end (exclusive)")
    mns: list[str] | None = Field(
        None, max_length=5000, description="Only these devices (default: every device in scope)"
    )
    reason: str | None = Field(None, max_length=500, description="Why, e.g. 规则修正后重算")


class ReplayRead(BaseModel):
    """A replay job and its progress."""

    id: uuid.UUID
    status: Literal["queued", "running", "done", "failed", "cancelled"]
    received_from: datetime
    received_to: datetime
    mns: list[str] | None = None
    reason: str | None = None
    requested_by: str
    requested_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    total: int | None = Field(None, description="Frames in the window that give readings")
    processed: int = Field(description="Frames read so far")
    published: int = Field(description="Readings re-published to telemetry.readings")
    skipped: int = Field(description="Frames read that gave no reading (split parts waiting, …)")
    progress: float | None = Field(None, description="processed / total, 0–1")
    error: str | None = None
