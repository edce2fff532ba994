"""Development only: synthesise past days of history so that `make run` shows full reports.

On a fresh `make run` the device simulator starts feeding the synthetic city *now*, so
yesterday's report would be empty. When `reporting_demo_history_days` > 0 (1 by default in
development, never in production) and no day before today has history, the archive's
active points get that many past days of one-minute samples from a simple load model —
production lines working 08:00–20:00 with noise, control facilities following them (a few
switched off for an afternoon), total lines carrying both plus a base load, 2 % of points
offline for a few hours — written through the normal history writer (rollups and all).
Nothing is published on the bus: other services never see these days. Reports built from
them say so (`history_meta` key `demo_history`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import islice
from zoneinfo import ZoneInfo

from ecowatt_kernel.contracts import PointReading, PointSnapshot
from ecowatt_kernel.db import Database
from ecowatt_kernel.registry_view import RegistryView
from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert

from ecowatt_reporting.history.models import HISTORY_META
from ecowatt_reporting.history.service import HistoryWriter

__all__ = ["backfill_demo_history", "demo_history_used", "wait_for_archive"]

_logger = logging.getLogger(__name__)
META_KEY = "demo_history"
# The demo days are written in the platform's own event loop (standalone): small slices, and
# after each a pause as long as the slice took, so that the API and the live stream keep at
# least half of the loop and no request waits behind more than one slice.
SLICE = 1000
MIN_PAUSE_S = 0.02


def _unit(*parts: object) -> float:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(frozen=True, slots=True)
class _DayShape:
    """What a point does on one day, drawn once per point and day (not per minute)."""

    rated: float
    point_type: str | None
    start: int  # minute of the day its facility starts working
    working: bool  # an idle day otherwise (10 % of enterprise days)
    offline: bool  # no data 10:00–14:00 (2 % of point days)
    switched_off: bool  # a control facility off 13:00–17:00 (5 % of point days)
    phase: float

    @classmethod
    def of(cls, point: PointSnapshot, day: date) -> _DayShape:
        key = point.facility_id or point.enterprise_id
        return cls(
            rated=point.rated_kw or 30.0,
            point_type=point.point_type,
            start=8 * 60 + int(_unit(key, day, "start") * 60),
            working=_unit(point.enterprise_id, day, "idle") > 0.1,
            offline=_unit(point.id, day, "offline") < 0.02,
            switched_off=_unit(point.id, day, "off") < 0.05,
            phase=_unit(point.id) * 6.28,
        )

    def power(self, minute: int) -> float | None:
        """Active power (kW) at a minute of the day; None while the point is offline."""
        if self.offline and 600 <= minute < 840:
            return None
        working = self.working and self.start <= minute < 20 * 60
        noise = 1 + 0.08 * math.sin(minute / 7.0 + self.phase)
        if self.point_type in ("production", "combined"):
            return round(self.rated * (0.7 if working else 0.02) * noise, 3)
        if self.point_type == "control":
            off = self.switched_off and 13 * 60 <= minute < 17 * 60
            return round(self.rated * (0.6 if working and not off else 0.01) * noise, 3)
        if self.point_type == "total":
            return round(self.rated * (0.55 if working else 0.08) * noise, 3)
        return round(self.rated * 0.2 * noise, 3)


def _readings(points: list[PointSnapshot], day: date, tz: ZoneInfo) -> Iterator[PointReading]:
    midnight = datetime.combine(day, time(0), tzinfo=tz)
    times = [(midnight + timedelta(minutes=m)).astimezone(UTC) for m in range(1440)]
    for point in points:
        shape = _DayShape.of(point, day)
        for minute, data_time in enumerate(times):
            power = shape.power(minute)
            if power is None:
                continue
            values = {"active_power_kw": power}
            if minute:  # a day's first reading starts the counter chain: no delta yet
                values["energy_delta_kwh"] = round(power / 60.0, 5)
            yield PointReading.model_construct(
                enterprise_id=point.enterprise_id,
                point_id=point.id,
                mn=point.device_mn or "",
                cn="2011",
                circuit=point.circuit,
                interval="realtime",
                data_time=data_time,
                values=values,
                quality={},
                valid=True,
                source_key=None,
            )


async def wait_for_archive(view: RegistryView, *, limit_s: float = 600.0) -> int:
    """Wait until the view holds points and their number has settled (the registry seeds
    the synthetic city in the background at a first start); the number of points."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    last, steady_since = -1, loop.time()
    while loop.time() < deadline:
        count = len(view.all("point"))
        if count != last:
            last, steady_since = count, loop.time()
        elif count and loop.time() - steady_since >= 20.0:
            return count
        await asyncio.sleep(1.0)
    return max(last, 0)


async def demo_history_used(database: Database) -> bool:
    """True when demo days were synthesised into this history."""
    async with database.session() as session:
        found = await session.scalar(
            select(HISTORY_META.c.key).where(HISTORY_META.c.key == META_KEY)
        )
    return found is not None


async def backfill_demo_history(
    *, database: Database, view: RegistryView, writer: HistoryWriter, days: int, timezone: str
) -> int:
    """Synthesise `days` days before today when no such day has history; readings written."""
    if days <= 0:
        return 0
    tz = ZoneInfo(timezone)
    today = datetime.now(UTC).astimezone(tz).date()
    async with database.session() as session:
        existing = await session.scalar(
            text("SELECT count(*) FROM rollup_1d WHERE day < :today"), {"today": today}
        )
    if existing:
        return 0
    points = [p for p in view.all("point") if isinstance(p, PointSnapshot) and p.status == "active"]
    loop = asyncio.get_running_loop()
    written = 0
    for offset in range(days, 0, -1):
        day = today - timedelta(days=offset)
        readings = _readings(points, day, tz)
        while True:
            began = loop.time()
            batch = list(islice(readings, SLICE))
            if not batch:
                break
            written += (await writer.write(batch)).inserted
            await asyncio.sleep(max(MIN_PAUSE_S, loop.time() - began))
        _logger.info("demo history: %s synthesised for %d points", day, len(points))
    if not written:
        return 0
    async with database.transaction() as session:
        await session.execute(
            insert(HISTORY_META)
            .values(key=META_KEY, value={"days": days, "until": today.isoformat()})
            .on_conflict_do_nothing()
        )
    return written
