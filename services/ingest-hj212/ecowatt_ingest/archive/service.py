"""The raw-frame archive: storing `hj212.frames`, partitions and retention, queries and links.

    writer = ArchiveWriter(db=..., settings=...)       # the consumer of hj212.frames
    await writer.handle(records)                         # idempotent (frame id + arrival time)
    await maintain(db=..., settings=...)                 # partitions ahead, expired ones dropped
    rows, total = await list_frames(session=..., filters=..., visible=..., page=...)

Scope: a frame is visible when its device's enterprise is in the caller's scope (district or
enterprise id, from the registry view); frames of devices the registry does not know, and
spans without an MN, only with scope `all` (`visible_mns`).

Links back from what a frame produced (`FrameFilters`):
* a `TelemetryReading`: its `frame_id` (and `received_at`, which finds the partition);
* a `PointReading`: its `source_key` (`MN|CN|DataTime`, the reading's idempotency key);
* a finding or an alarm: its subject (`subject_kind` device / point / facility / group /
  enterprise + `subject_id`, resolved to device MNs through the registry view) and its time
  window as data time (`data_from` / `data_to`, e.g. an alarm's `first_at` … `last_at`).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import logging
import re
import uuid
import zlib
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ecowatt_kernel.bus import Record, TransientError
from ecowatt_kernel.db import Database
from ecowatt_kernel.identity import DataScope
from ecowatt_kernel.pagination import PageRequest, fetch_page
from ecowatt_kernel.registry_view import RegistryView
from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    and_,
    any_,
    bindparam,
    false,
    func,
    or_,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.types import Text

from ecowatt_ingest.archive.models import FRAMES, ArchiveSettings

__all__ = [
    "ArchiveWriter",
    "FrameFilters",
    "count_frames",
    "frame_bytes",
    "frame_view",
    "get_frame",
    "iter_frames",
    "list_frames",
    "maintain",
    "mns_of_subject",
    "split_parts",
    "visible_mns",
]

_logger = logging.getLogger(__name__)

_DATA_TIME = re.compile(rb"DataTime=(\d{14})")
_COLUMNS = [c.name for c in FRAMES.columns]
_STAGE = "ingest_archive_stage"
_STAGE_DDL = f"""
CREATE TEMP TABLE IF NOT EXISTS {_STAGE} (LIKE ingest.frames INCLUDING DEFAULTS)
ON COMMIT DELETE ROWS
"""
_MERGE = f"""
INSERT INTO ingest.frames ({", ".join(_COLUMNS)})
SELECT {", ".join(_COLUMNS)} FROM pg_temp.{_STAGE}
ON CONFLICT DO NOTHING
"""  # noqa: S608 - fixed column names


# ------------------------------------------------------------------------------ writing


def _data_time(raw: bytes, tz: ZoneInfo) -> tuple[str | None, datetime | None]:
    """DataTime as sent, and as UTC (the reading's data time), if the frame has one."""
    found = _DATA_TIME.search(raw)
    if found is None:
        return None, None
    sent = found.group(1).decode()
    try:
        local = datetime.strptime(sent, "%Y%m%d%H%M%S")
    except ValueError:
        return sent, None
    return sent, local.replace(tzinfo=tz).astimezone(UTC)


def frame_row(record: Record, tz: ZoneInfo) -> tuple[Any, ...] | None:
    """The archive row of one `hj212.frames` record (None for a record of another type)."""
    envelope = json.loads(record.value)
    if envelope.get("type") != "hj212.frame":
        return None
    data = envelope["data"]
    raw = base64.b64decode(data["raw"])
    received = datetime.fromisoformat(data["received_at"])
    data_time, data_time_utc = (None, None)
    if data.get("mn") and data.get("cn"):
        data_time, data_time_utc = _data_time(raw, tz)
    values = {
        "received_at": received,
        "frame_id": uuid.UUID(data["frame_id"]),
        "mn": _text(data.get("mn")),
        "cn": _text(data.get("cn")),
        "qn": _text(data.get("qn")),
        "data_time": data_time,
        "data_time_utc": data_time_utc,
        "verdict": _text(data["verdict"]),
        "reason_code": _text(data.get("reason_code")),
        "reason": _text(data.get("reason")),
        "peer": _text(data.get("peer")),
        "session_id": _text(data.get("session_id")),
        "ingest_instance": _text(data.get("ingest_instance")),
        "trace_id": _text(envelope.get("trace_id")),
        "size": len(raw),
        **_packed(raw),
    }
    return tuple(values[c] for c in _COLUMNS)


def _text(value: Any) -> str | None:
    """A field as PostgreSQL text can hold it: NUL (a device's junk inside an MN or QN) is
    not allowed in text, so it is written as `\\x00` (the bytes themselves are kept whole)."""
    if value is None:
        return None
    text_value = str(value)
    return text_value.replace("\x00", "\\x00") if "\x00" in text_value else text_value


def _packed(raw: bytes) -> dict[str, Any]:
    """zlib (≈ 0.4 of a meter's frame, ≈ 50 µs) when it saves space, else the bytes as is."""
    packed = zlib.compress(raw, 6)
    if len(packed) < len(raw):
        return {"raw_codec": "zlib", "raw": packed}
    return {"raw_codec": None, "raw": raw}


def frame_bytes(row: Any) -> bytes:
    """The exact bytes the device sent, of an archive row."""
    if row.raw_codec == "zlib":
        return zlib.decompress(row.raw)
    return bytes(row.raw)


def _rows(records: Sequence[Record], tz: ZoneInfo) -> list[tuple[Any, ...]]:
    return [row for row in (frame_row(r, tz) for r in records) if row is not None]


def _partition_name(day: date) -> str:
    return f"frames_{day:%Y%m%d}"


async def ensure_partitions(
    *, connection: AsyncConnection, days: Iterable[date], tz: ZoneInfo
) -> list[str]:
    """Create the daily partitions of `days` that do not exist; returns those created."""
    existing = set(
        (
            await connection.execute(
                text(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                    " WHERE i.inhparent = 'ingest.frames'::regclass"
                )
            )
        ).scalars()
    )
    created = []
    for day in sorted(set(days)):
        name = _partition_name(day)
        if name in existing:
            continue
        start = datetime.combine(day, time(), tz).astimezone(UTC)
        end = datetime.combine(day + timedelta(days=1), time(), tz).astimezone(UTC)
        # (name and bounds come from dates, not from input)
        await connection.execute(
            text(
                f"CREATE TABLE IF NOT EXISTS ingest.{name} PARTITION OF ingest.frames"
                f" FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
            )
        )
        created.append(name)
    return created


async def drop_expired(*, connection: AsyncConnection, before: date) -> list[str]:
    """Drop the daily partitions of days before `before`; returns their names."""
    names = (
        await connection.execute(
            text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                " WHERE i.inhparent = 'ingest.frames'::regclass"
            )
        )
    ).scalars()
    dropped = []
    for name in sorted(names):
        stamp = name.removeprefix("frames_")
        if not (len(stamp) == 8 and stamp.isdigit()):
            continue
        if datetime.strptime(stamp, "%Y%m%d").date() < before:
            await connection.execute(text(f"DROP TABLE ingest.{name}"))
            dropped.append(name)
    return dropped


async def maintain(*, db: Database, settings: ArchiveSettings, now: datetime | None = None) -> None:
    """Partitions for today and `archive_partitions_ahead` days; expired ones dropped."""
    tz = ZoneInfo(settings.timezone)
    today = (now or datetime.now(UTC)).astimezone(tz).date()
    async with db.engine.begin() as connection:
        created = await ensure_partitions(
            connection=connection,
            days=[today + timedelta(days=n) for n in range(settings.archive_partitions_ahead + 1)],
            tz=tz,
        )
        dropped = await drop_expired(
            connection=connection,
            before=today - timedelta(days=settings.archive_retention_days),
        )
    if created or dropped:
        _logger.info("frame archive: partitions created %s, dropped %s", created, dropped)


class ArchiveWriter:
    """The `hj212.frames` consumer: one transaction per batch, idempotent on redelivery."""

    def __init__(self, *, db: Database, settings: ArchiveSettings) -> None:
        self.db = db
        self.tz = ZoneInfo(settings.timezone)
        self._days: set[date] = set()
        self.stored = 0

    async def handle(self, records: Sequence[Record]) -> None:
        # (in a worker thread: zlib releases the GIL, so compressing uses the other core)
        rows = await asyncio.to_thread(_rows, records, self.tz)  # (a bad record: poison)
        if not rows:
            return
        try:
            await self._store(rows)
        except Exception as exc:  # the rows are valid: the database is what failed
            raise TransientError(
                f"frame archive: writing {len(rows)} frames failed: {exc}"
            ) from exc
        self.stored += len(rows)

    async def _store(self, rows: list[tuple[Any, ...]]) -> None:
        days = {row[0].astimezone(self.tz).date() for row in rows}
        async with self.db.engine.begin() as connection:
            if not days <= self._days:
                await ensure_partitions(connection=connection, days=days, tz=self.tz)
            # (a statement through SQLAlchemy first opens the transaction the driver's
            # statements then belong to: the staging rows live until its commit)
            await connection.exec_driver_sql("SELECT 1")
            raw = await connection.get_raw_connection()
            driver = raw.driver_connection
            assert driver is not None
            await driver.execute(_STAGE_DDL)
            await driver.copy_records_to_table(
                _STAGE, records=rows, columns=_COLUMNS, schema_name="pg_temp"
            )
            await driver.execute(_MERGE)
        self._days |= days


# ------------------------------------------------------------------------------ scope


def visible_mns(*, registry: RegistryView, scope: DataScope) -> list[str] | None:
    """The device MNs `scope` may see; None for all (scope `all`: unknown devices too)."""
    if scope.all:
        return None
    enterprises: dict[str, bool] = {}
    mns = []
    for device in registry.all("device"):
        enterprise_id = getattr(device, "enterprise_id", None)
        if enterprise_id is None:
            continue
        allowed = enterprises.get(enterprise_id)
        if allowed is None:
            enterprise = registry.enterprise(enterprise_id)
            allowed = enterprises[enterprise_id] = scope.allows(
                district=enterprise.district_code if enterprise else None,
                enterprise_id=enterprise_id,
            )
        if allowed:
            mns.append(getattr(device, "mn", device.id))
    return mns


def mns_of_subject(*, registry: RegistryView, kind: str, subject_id: str) -> set[str]:
    """Device MNs behind a finding's or an alarm's subject."""
    if kind == "device":
        return {subject_id}
    point_ids: set[str] = set()
    if kind == "point":
        point_ids = {subject_id}
    elif kind in ("facility", "group"):
        facilities = {subject_id}
        if kind == "group":
            group = registry.control_group(subject_id)
            facilities = (
                set(group.production_facility_ids) | set(group.control_facility_ids)
                if group
                else set()
            )
        point_ids = {
            p.id for p in registry.all("point") if getattr(p, "facility_id", None) in facilities
        }
    elif kind == "enterprise":
        return {getattr(d, "mn", d.id) for d in registry.of_enterprise("device", subject_id)}
    mns = set()
    for point_id in point_ids:
        point = registry.point(point_id)
        if point is not None and point.device_mn:
            mns.add(point.device_mn)
    return mns


# ------------------------------------------------------------------------------ queries


@dataclass(frozen=True)
class FrameFilters:
    """What a frame list is narrowed to (every field optional)."""

    mns: frozenset[str] | None = None
    received_from: datetime | None = None
    received_to: datetime | None = None
    data_from: datetime | None = None
    data_to: datetime | None = None
    verdicts: frozenset[str] | None = None
    reason_codes: frozenset[str] | None = None
    cn: str | None = None
    cns: frozenset[str] | None = None
    data_time: str | None = None
    after: tuple[datetime, uuid.UUID] | None = None
    """Only frames after this (arrival time, frame id): where a keyset read resumes."""


def _conditions(filters: FrameFilters, visible: list[str] | None) -> list[ColumnElement[bool]]:
    c = FRAMES.c
    conditions: list[ColumnElement[bool]] = []
    if visible is not None:
        if not visible:
            return [false()]
        conditions.append(c.mn == any_(bindparam("visible", visible, type_=ARRAY(Text))))
    if filters.mns is not None:
        if not filters.mns:
            return [false()]
        conditions.append(c.mn == any_(bindparam("mns", sorted(filters.mns), type_=ARRAY(Text))))
    if filters.received_from is not None:
        conditions.append(c.received_at >= filters.received_from)
    if filters.received_to is not None:
        conditions.append(c.received_at < filters.received_to)
    if filters.data_from is not None:
        conditions.append(c.data_time_utc >= filters.data_from)
    if filters.data_to is not None:
        conditions.append(c.data_time_utc <= filters.data_to)
    if filters.verdicts:
        conditions.append(c.verdict.in_(sorted(filters.verdicts)))
    if filters.reason_codes:
        conditions.append(c.reason_code.in_(sorted(filters.reason_codes)))
    if filters.cn is not None:
        conditions.append(c.cn == filters.cn)
    if filters.cns:
        conditions.append(c.cn.in_(sorted(filters.cns)))
    if filters.data_time is not None:
        conditions.append(c.data_time == filters.data_time)
    if filters.after is not None:
        at, frame_id = filters.after
        conditions.append(or_(c.received_at > at, and_(c.received_at == at, c.frame_id > frame_id)))
    return conditions


def _select(filters: FrameFilters, visible: list[str] | None) -> Select[Any]:
    return select(FRAMES).where(and_(*_conditions(filters, visible)))


async def list_frames(
    *,
    session: AsyncSession,
    filters: FrameFilters,
    visible: list[str] | None,
    page: PageRequest,
    newest_first: bool = True,
) -> tuple[list[Row[Any]], int]:
    """One page of frames (newest first) and the total."""
    order = (
        (FRAMES.c.received_at.desc(), FRAMES.c.frame_id.desc())
        if newest_first
        else (FRAMES.c.received_at, FRAMES.c.frame_id)
    )
    return await fetch_page(session, _select(filters, visible).order_by(*order), page)


async def count_frames(
    *, session: AsyncSession, filters: FrameFilters, visible: list[str] | None
) -> int:
    """How many frames match."""
    query = select(func.count()).select_from(_select(filters, visible).subquery())
    return int((await session.execute(query)).scalar_one())


async def iter_frames(
    *,
    db: Database,
    filters: FrameFilters,
    visible: list[str] | None,
    batch: int = 2000,
    limit: int | None = None,
) -> AsyncIterator[Row[Any]]:
    """Frames in arrival order, read in keyset pages (exports and replays)."""
    sent = 0
    while True:
        query = _select(filters, visible).order_by(FRAMES.c.received_at, FRAMES.c.frame_id)
        async with db.session() as session:
            rows = (await session.execute(query.limit(batch))).all()
        for row in rows:
            yield row
            sent += 1
            if limit is not None and sent >= limit:
                return
        if len(rows) < batch:
            return
        filters = dataclasses.replace(filters, after=(rows[-1].received_at, rows[-1].frame_id))


async def split_parts(
    *, db: Database, mn: str, cn: str, data_time: str, since: datetime
) -> list[bytes]:
    """The bytes of the accepted frames of device `mn` with this CN and DataTime received since
    `since` — the parts of a split set, to complete one given up on because some of its parts
    were answered by a process that died or by another worker."""
    f = FRAMES.c
    query = select(f.raw_codec, f.raw).where(
        f.received_at >= since,
        f.mn == mn,
        f.cn == cn,
        f.data_time == data_time,
        f.verdict == "accepted",
    )
    async with db.engine.connect() as connection:
        rows = (await connection.execute(query)).all()
    return [frame_bytes(row) for row in rows]


async def get_frame(
    *,
    session: AsyncSession,
    frame_id: uuid.UUID,
    visible: list[str] | None,
    received_at: datetime | None = None,
) -> Row[Any] | None:
    """One frame by id (`received_at`, when known, finds its partition at once)."""
    query = select(FRAMES).where(
        FRAMES.c.frame_id == frame_id, *_conditions(FrameFilters(), visible)
    )
    if received_at is not None:
        query = query.where(FRAMES.c.received_at == received_at)
    return (await session.execute(query.limit(1))).first()


def frame_view(row: Row[Any], *, detail: bool = False) -> dict[str, Any]:
    """The API shape of a row (`FrameRead`, or `FrameDetail` with `detail`)."""
    values = row._asdict()
    values.pop("raw_codec")
    values.pop("raw")
    raw = frame_bytes(row)
    values["text"] = raw.decode("utf-8", errors="backslashreplace")
    if detail:
        values["raw_base64"] = base64.b64encode(raw).decode()
    return values
