"""Background jobs: every N seconds, and once per local day at day close.

    daily = DailyJob(
        name="validation.day-close",
        run=lambda day: checks.run_day(day),         # the day that just closed
        timezone="Asia/Shanghai",                    # settings.timezone
        at=time(0, 15),                              # local time the previous day is closed
        last_done=checks.last_completed_day,         # catch up days missed while down
        leader=AdvisoryLeader(engine, "validation.day-close"),
    )
    periodic = PeriodicJob(name="validation.sweep", run=checks.sweep, every_s=60)
    await daily.start(); await periodic.start()      # in on_startup
    await daily.stop(); await periodic.stop()        # in on_shutdown

A job that fails is logged and tried again at its next turn (a daily job: after
`retry_s`); it never stops the loop. With a `leader`, only the replica holding the
PostgreSQL advisory lock runs the job, so replicas of a service do not duplicate the work.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = ["AdvisoryLeader", "DailyJob", "PeriodicJob", "next_run_at"]

_logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class AdvisoryLeader:
    """Leadership through a session-level PostgreSQL advisory lock, held until `release`."""

    def __init__(self, engine: AsyncEngine, name: str) -> None:
        self.engine = engine
        self.name = name
        self.key = int.from_bytes(
            hashlib.sha256(f"leader:{name}".encode()).digest()[:8], "big", signed=True
        )
        self._connection: AsyncConnection | None = None

    @property
    def leading(self) -> bool:
        return self._connection is not None

    async def acquire(self) -> bool:
        """True when this process leads (now or already); never blocks."""
        if self._connection is not None:
            try:
                await self._connection.execute(text("SELECT 1"))
                return True
            except Exception:  # the connection died, and the lock with it
                await self.release()
        connection = await self.engine.connect()
        try:
            got = await connection.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key})
            await connection.commit()
        except Exception:
            await connection.close()
            raise
        if got:
            self._connection = connection
            return True
        await connection.close()
        return False

    async def release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
                await connection.commit()
            with contextlib.suppress(Exception):
                await connection.close()


def next_run_at(now: datetime, at: time, tz: ZoneInfo) -> datetime:
    """The next moment (UTC) after `now` when the local clock in `tz` shows `at`."""
    local = now.astimezone(tz)
    candidate = datetime.combine(local.date(), at, tzinfo=tz)
    if candidate <= local:
        candidate = datetime.combine(local.date() + timedelta(days=1), at, tzinfo=tz)
    return candidate.astimezone(UTC)


class _Loop:
    def __init__(self, name: str, leader: AdvisoryLeader | None) -> None:
        self.name = name
        self.leader = leader
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        if self.running:
            return
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name=f"job:{self.name}")

    async def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.leader is not None:
            await self.leader.release()

    def wake(self) -> None:
        """Run now instead of at the next turn."""
        self._wake.set()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), max(seconds, 0.0))
        self._wake.clear()

    async def _lead(self) -> bool:
        if self.leader is None:
            return True
        try:
            return await self.leader.acquire()
        except Exception as exc:
            _logger.warning("job %s: cannot take leadership: %s", self.name, exc)
            return False

    async def _run(self) -> None:
        raise NotImplementedError


class PeriodicJob(_Loop):
    """Run `run()` every `every_s` seconds (and at once when `wake()` is called)."""

    def __init__(
        self,
        *,
        name: str,
        run: Callable[[], Awaitable[Any]],
        every_s: float,
        leader: AdvisoryLeader | None = None,
        initial_delay_s: float = 0.0,
    ) -> None:
        super().__init__(name, leader)
        self.run = run
        self.every_s = every_s
        self.initial_delay_s = initial_delay_s
        self.runs = 0

    async def _run(self) -> None:
        await self._sleep(self.initial_delay_s)
        while not self._stopping.is_set():
            if await self._lead():
                try:
                    await self.run()
                    self.runs += 1
                except asyncio.CancelledError:
                    raise
                except Exception:
                    _logger.exception("job %s failed; next try in %.0fs", self.name, self.every_s)
            await self._sleep(self.every_s)


class DailyJob(_Loop):
    """Run `run(day)` once per local day, at `at` on the following day (day close).

    On start, days after `last_done()` up to yesterday are run first (at most
    `catch_up_days`), so a service that was down at day close still closes those days.
    """

    def __init__(
        self,
        *,
        name: str,
        run: Callable[[date], Awaitable[Any]],
        timezone: str,
        at: time = time(0, 15),
        last_done: Callable[[], Awaitable[date | None]] | None = None,
        catch_up_days: int = 3,
        leader: AdvisoryLeader | None = None,
        retry_s: float = 300.0,
        clock: Clock = _utcnow,
    ) -> None:
        super().__init__(name, leader)
        self.run = run
        self.tz = ZoneInfo(timezone)
        self.at = at
        self.last_done = last_done
        self.catch_up_days = catch_up_days
        self.retry_s = retry_s
        self.clock = clock
        self.done: list[date] = []

    def due_days(self, now: datetime, last: date | None) -> list[date]:
        """The closed days still to run at `now`, oldest first."""
        local = now.astimezone(self.tz)
        newest = local.date() - timedelta(days=1)
        if local.time() < self.at:
            newest -= timedelta(days=1)
        oldest = newest - timedelta(days=self.catch_up_days - 1)
        if last is not None:
            oldest = max(oldest, last + timedelta(days=1))
        elif self.done:
            oldest = max(oldest, self.done[-1] + timedelta(days=1))
        else:
            oldest = newest
        days = []
        day = oldest
        while day <= newest:
            days.append(day)
            day += timedelta(days=1)
        return days

    async def _run(self) -> None:
        while not self._stopping.is_set():
            delay = (next_run_at(self.clock(), self.at, self.tz) - self.clock()).total_seconds()
            if await self._lead():
                try:
                    last = await self.last_done() if self.last_done is not None else None
                    for day in self.due_days(self.clock(), last):
                        _logger.info("job %s: closing %s", self.name, day)
                        await self.run(day)
                        self.done.append(day)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    _logger.exception("job %s failed; retrying in %.0fs", self.name, self.retry_s)
                    delay = min(delay, self.retry_s)
            else:
                delay = min(delay, self.retry_s)
            await self._sleep(delay + 1.0)
