"""Replay: archived frames of a time window fed through validation and alarm again.

An operator (O&M or admin) asks for a window of arrival time (and optionally some devices);
the job, stored in `ingest.replays`, is run by one instance at a time (claimed with `FOR
UPDATE SKIP LOCKED`; a job whose runner stopped beating for a minute is taken over and
resumes after its cursor). It reads the window's `accepted` and `unregistered` data frames in
arrival order, decodes each as ingest did (split sets reassembled), and publishes the same
`TelemetryReading` ingest published — same idempotency key `MN|CN|DataTime`, same frame id
and arrival time, `registered` as the verdict said — with an `x-replay: <job id>` header.

**Why it is harmless.** Validation keeps a per-day bitmap of each point's sample slots and the
latest data time per interval CN: a reading it has bound changes nothing the second time,
and alarm ignores readings at or before a point's last data time. So a replay only fills in
what was never bound (readings lost downstream, a device bound to its points after its frames
came) and can be repeated or resumed at will (tests/services/ingest_hj212/
test_archive_replay.py proves it with the real validation service).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import uuid
from datetime import UTC, datetime
from typing import Any, TypedDict
from zoneinfo import ZoneInfo

import ecowatt_hj212 as hj212
from ecowatt_kernel.bus import Bus, Message
from ecowatt_kernel.db import Database
from ecowatt_kernel.identity import DataScope
from ecowatt_kernel.registry_view import RegistryView
from sqlalchemy import func, select, text, update

from ecowatt_ingest.archive.models import REPLAYS, ArchiveSettings
from ecowatt_ingest.archive.service import (
    FrameFilters,
    count_frames,
    frame_bytes,
    iter_frames,
    visible_mns,
)
from ecowatt_ingest.server import DATA_CNS
from ecowatt_ingest.wire import new_trace_id, reading_message

__all__ = ["REPLAY_HEADER", "ReplayRunner", "replay_filters"]

_logger = logging.getLogger(__name__)

REPLAY_HEADER = "x-replay"
STALE_S = 60


class _Counts(TypedDict):
    """A job's progress columns, written with every step."""

    processed: int
    published: int
    skipped: int


_CLAIM = text(
    """
    UPDATE ingest.replays SET status = 'running', runner = :runner, heartbeat_at = now(),
      started_at = coalesce(started_at, now())
    WHERE id = (
      SELECT id FROM ingest.replays
      WHERE status = 'queued'
         OR (status = 'running' AND heartbeat_at < now() - make_interval(secs => :stale))
      ORDER BY requested_at LIMIT 1 FOR UPDATE SKIP LOCKED)
    RETURNING *
    """
)


def replay_filters(
    job: Any, registry: RegistryView | None
) -> tuple[FrameFilters, list[str] | None]:
    """The frames a job replays, and the MNs its requester's scope allows."""
    scope = DataScope.model_validate(job.scope)
    visible = None
    if not scope.all:
        visible = visible_mns(registry=registry, scope=scope) if registry is not None else []
    return (
        FrameFilters(
            mns=frozenset(job.mns) if job.mns is not None else None,
            received_from=job.received_from,
            received_to=job.received_to,
            verdicts=frozenset({"accepted", "unregistered"}),
            cns=DATA_CNS,
        ),
        visible,
    )


class ReplayRunner:
    """Runs replay jobs, one at a time in this instance (`wake()` after queueing one)."""

    def __init__(
        self,
        *,
        db: Database,
        bus: Bus,
        registry: RegistryView | None,
        settings: ArchiveSettings,
        topic: str,
        instance: str,
    ) -> None:
        self.db = db
        self.bus = bus
        self.registry = registry
        self.settings = settings
        self.topic = topic
        self.instance = instance
        self.tz = ZoneInfo(settings.timezone)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="ingest:replays")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def wake(self) -> None:
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            try:
                job = await self._claim()
            except Exception:
                _logger.exception("replays: cannot claim a job")
                job = None
            if job is not None:
                await self.run(job)
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 5.0)

    async def _claim(self) -> Any:
        async with self.db.transaction() as session:
            return (
                await session.execute(_CLAIM, {"runner": self.instance, "stale": STALE_S})
            ).first()

    async def run(self, job: Any) -> None:
        """Run (or resume) one claimed job to its end."""
        try:
            await self._run(job)
        except asyncio.CancelledError:
            raise  # (stopping: the job stays `running` and is resumed after STALE_S)
        except Exception as exc:
            _logger.exception("replay %s failed", job.id)
            await self._update(job.id, status="failed", error=str(exc)[:2000], finished=True)

    async def _run(self, job: Any) -> None:
        filters, visible = replay_filters(job, self.registry)
        if job.total is None:
            async with self.db.session() as session:
                total = await count_frames(session=session, filters=filters, visible=visible)
            await self._update(job.id, total=total)
        if job.cursor_received_at is not None:
            filters = dataclasses.replace(
                filters, after=(job.cursor_received_at, job.cursor_frame_id)
            )
        _logger.info(
            "replay %s: %s → %s by %s", job.id, job.received_from, job.received_to, job.requested_by
        )
        reassembler = hj212.Reassembler(timeout=float("inf"))
        counts: _Counts = {
            "processed": job.processed,
            "published": job.published,
            "skipped": job.skipped,
        }
        pending: list[Message] = []
        rows_in_step = 0
        last: tuple[datetime, uuid.UUID] | None = None
        async for row in iter_frames(
            db=self.db, filters=filters, visible=visible, batch=self.settings.replay_batch
        ):
            message = self._reading(row, reassembler, job.id)
            counts["processed"] += 1
            if message is None:
                counts["skipped"] += 1
            else:
                pending.append(message)
            rows_in_step += 1
            last = (row.received_at, row.frame_id)
            if rows_in_step >= self.settings.replay_batch:
                if not await self._step(job.id, pending, counts, last):
                    return
                pending, rows_in_step = [], 0
        if rows_in_step and not await self._step(job.id, pending, counts, last):
            return
        await self._update(job.id, status="done", finished=True)
        _logger.info("replay %s done: %s", job.id, counts)

    async def _step(
        self,
        job_id: uuid.UUID,
        messages: list[Message],
        counts: _Counts,
        cursor: tuple[datetime, uuid.UUID] | None,
    ) -> bool:
        """Publish a step's readings, then record progress; False when the job was cancelled."""
        if messages:
            await self._publish(messages)
        counts["published"] += len(messages)
        status = await self._update(job_id, cursor=cursor, **counts)
        return status == "running"

    async def _publish(self, messages: list[Message]) -> None:
        backoff = 0.5
        while True:
            try:
                await self.bus.publish(messages)
                return
            except Exception as exc:  # the bus refuses for now: wait, the job is not lost
                _logger.warning("replay: publish failed, retrying in %.1fs: %s", backoff, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    def _reading(
        self, row: Any, reassembler: hj212.Reassembler, job_id: uuid.UUID
    ) -> Message | None:
        frame = hj212.decode(frame_bytes(row))
        if frame.is_split:
            try:
                completed = reassembler.add(frame)
            except hj212.ReassemblyError:
                return None
            if completed is None or not completed.complete:
                return None
            first, items = completed.parts[0], completed.codes
        else:
            first, items = frame, frame.codes
        moment = first.data_time
        sent = first.params.get("DataTime")
        if moment is None or sent is None or first.mn is None or first.cn is None:
            return None
        message = reading_message(
            self.topic,
            mn=first.mn,
            cn=first.cn,
            st=first.st,
            qn=first.qn,
            data_time=sent.strip(),
            data_time_utc=moment.replace(tzinfo=self.tz).astimezone(UTC).isoformat(),
            received_at=row.received_at.isoformat(),
            protocol_version=first.version.value,
            registered=row.verdict == "accepted",
            items=items,
            frame_id=str(row.frame_id),
            trace_id=new_trace_id(),
            produced_at=datetime.now(UTC).isoformat(),
        )
        return dataclasses.replace(
            message, headers=(*message.headers, (REPLAY_HEADER, str(job_id).encode()))
        )

    async def _update(
        self,
        job_id: uuid.UUID,
        *,
        status: str | None = None,
        cursor: tuple[datetime, uuid.UUID] | None = None,
        finished: bool = False,
        **values: Any,
    ) -> str:
        """Write progress (and a new status unless the job was cancelled); its status now."""
        values["heartbeat_at"] = func.now()
        if cursor is not None:
            values["cursor_received_at"], values["cursor_frame_id"] = cursor
        if finished:
            values["finished_at"] = func.now()
        async with self.db.transaction() as session:
            query = update(REPLAYS).where(REPLAYS.c.id == job_id)
            if status is not None:
                values["status"] = status
                query = query.where(REPLAYS.c.status != "cancelled")
            await session.execute(query.values(**values))
            current = (
                await session.execute(select(REPLAYS.c.status).where(REPLAYS.c.id == job_id))
            ).scalar_one()
        return str(current)
