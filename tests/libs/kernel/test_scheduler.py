from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest
from ecowatt_kernel.db import Database
from ecowatt_kernel.scheduler import AdvisoryLeader, DailyJob, PeriodicJob, next_run_at

SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_next_run_is_the_next_local_day_close_in_utc() -> None:
    # 2026-11-26 15:00 UTC is 23:00 in Shanghai: day close at 00:15 local is 16:15 UTC.
    now = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)
    assert next_run_at(now, time(0, 15), SHANGHAI) == datetime(2026, 11, 26, 16, 15, tzinfo=UTC)
    # Just after it, the next one is a day later.
    later = datetime(2026, 11, 26, 16, 16, tzinfo=UTC)
    assert next_run_at(later, time(0, 15), SHANGHAI) == datetime(2026, 11, 27, 16, 15, tzinfo=UTC)


async def _noop(day: date) -> None:
    return None


def test_due_days_close_yesterday_after_day_close_and_catch_up_missed_days() -> None:
    job = DailyJob(name="t", run=_noop, timezone="Asia/Shanghai", at=time(0, 15), catch_up_days=3)
    before_close = datetime(2026, 11, 26, 16, 10, tzinfo=UTC)  # 00:10 local on the 27th
    after_close = datetime(2026, 11, 26, 16, 20, tzinfo=UTC)  # 00:20 local on the 27th
    assert job.due_days(before_close, last=date(2026, 11, 25)) == []
    assert job.due_days(after_close, last=date(2026, 11, 25)) == [date(2026, 11, 26)]
    # Down for a week: only the last `catch_up_days` days are closed.
    assert job.due_days(after_close, last=date(2026, 11, 10)) == [
        date(2026, 11, 24),
        date(2026, 11, 25),
        date(2026, 11, 26),
    ]
    # Nothing known: close only the day that just ended.
    assert job.due_days(after_close, last=None) == [date(2026, 11, 26)]


async def test_periodic_job_keeps_running_after_a_failure() -> None:
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("first run fails")

    job = PeriodicJob(name="t", run=flaky, every_s=0.01)
    await job.start()
    try:
        for _ in range(200):
            if job.runs >= 3:
                break
            await asyncio.sleep(0.01)
    finally:
        await job.stop()
    assert calls >= 4 and job.runs >= 3
    assert not job.running


@pytest.mark.integration
async def test_only_one_replica_leads(empty_database: str) -> None:
    database = Database(empty_database, schema="leaders")
    first = AdvisoryLeader(database.engine, "day-close")
    second = AdvisoryLeader(database.engine, "day-close")
    other = AdvisoryLeader(database.engine, "another-job")
    try:
        assert await first.acquire()
        assert await first.acquire(), "re-acquiring keeps leadership"
        assert not await second.acquire()
        assert await other.acquire(), "different jobs have different locks"
        await first.release()
        assert await second.acquire()
    finally:
        for leader in (first, second, other):
            await leader.release()
        await database.dispose()
