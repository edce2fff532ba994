"""Learned rated load (supervision.md §2.2): every running sample adds to a per-point,
per-day histogram (2 % logarithmic bins, `alarm.point_day_stats`, merged in SQL); nightly the
last `alarm_learning_days` days give each point's learned rated load (the mode of the samples
above their mean) and running median, and each control group's median control/production
power ratio (R5)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ecowatt_kernel.db import Database
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert

from ecowatt_alarm import tables as T
from ecowatt_alarm.engine import Effects
from ecowatt_alarm.model import Learned

__all__ = ["Learning"]

_LOG_BASE = math.log(1.02)
MIN_SAMPLES = 30


def _bin(value: float) -> int:
    return round(math.log(max(value, 1e-6)) / _LOG_BASE)


class Learning:
    """Statistics of running samples and the values learned from them."""

    def __init__(
        self,
        *,
        database: Database,
        timezone: str,
        days: int,
        clock: Callable[[], float],
        on_learned: Callable[[], None],
    ) -> None:
        self.db = database
        self.tz = ZoneInfo(timezone)
        self.days = days
        self.clock = clock
        self.on_learned = on_learned
        self.points: dict[str, Learned] = {}
        self.group_ratio: dict[str, float] = {}
        self._stats: dict[tuple[str, str, str], list[Any]] = {}

    async def load(self) -> None:
        """Learned values from the database (start-up)."""
        async with self.db.session() as s:
            for row in (await s.execute(select(T.learned))).mappings():
                self._set(row)

    def point(self, point_id: str) -> Learned:
        return self.points.get(point_id, Learned())

    def collect(self, fx: Effects) -> None:
        """Add a batch's running samples to their (data-time) days' histograms, in memory
        until flushed."""
        for kind, subject, value, t in fx.stats:
            if value <= 0:
                continue
            day = datetime.fromtimestamp(t, self.tz).date().isoformat()
            entry = self._stats.setdefault((kind, subject, day), [0, 0.0, defaultdict(int)])
            entry[0] += 1
            entry[1] += value
            entry[2][_bin(value)] += 1

    async def flush(self) -> None:
        """Merge the collected histograms into `alarm.point_day_stats`."""
        stats, self._stats = self._stats, {}
        if not stats:
            return
        rows = [
            {
                "kind": kind,
                "subject_id": subject,
                "day": date.fromisoformat(day),
                "count": count,
                "total": total,
                "bins": {str(k): v for k, v in bins.items()},
            }
            for (kind, subject, day), (count, total, bins) in sorted(stats.items())
        ]
        table = T.point_day_stats
        stmt = insert(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=["kind", "subject_id", "day"],
            set_={
                "count": table.c.count + stmt.excluded.count,
                "total": table.c.total + stmt.excluded.total,
                "bins": func.alarm.merge_bins(table.c.bins, stmt.excluded.bins),
            },
        )
        async with self.db.transaction() as s:
            for i in range(0, len(rows), 1000):
                await s.execute(stmt, rows[i : i + 1000])

    async def learn(self, today: date | None = None) -> int:
        """Recompute learned rated load per point and power ratio per group (§2.2) from the
        complete days before `today` (the service clock's local day): the same data learn
        the same values however fast they arrived."""
        await self.flush()
        day = today or datetime.fromtimestamp(self.clock(), self.tz).date()
        since = day - timedelta(days=self.days)
        merged: dict[tuple[str, str], list[Any]] = {}
        async with self.db.session() as s:
            result = await s.execute(
                select(T.point_day_stats).where(
                    T.point_day_stats.c.day > since, T.point_day_stats.c.day < day
                )
            )
            for stats in result.mappings():
                entry = merged.setdefault(
                    (stats["kind"], stats["subject_id"]), [0, 0.0, defaultdict(int), set()]
                )
                entry[0] += stats["count"]
                entry[1] += stats["total"]
                entry[3].add(stats["day"])
                for k, v in stats["bins"].items():
                    entry[2][int(k)] += v
        now = datetime.now(UTC)
        rows: list[dict[str, Any]] = []
        for (kind, subject), (count, total, bins, days) in merged.items():
            if count < MIN_SAMPLES:
                continue
            mean = total / count
            above = {k: v for k, v in bins.items() if 1.02**k > mean}
            mode = max(above.items(), key=lambda kv: (kv[1], kv[0]))[0] if above else None
            ordered = sorted(bins.items())
            half, acc, median = count / 2, 0, None
            for k, v in ordered:
                acc += v
                if acc >= half:
                    median = 1.02**k
                    break
            rows.append(
                {
                    "kind": kind,
                    "subject_id": subject,
                    "rated_kw": round(1.02**mode, 3)
                    if mode is not None and kind == "point"
                    else None,
                    "running_median": round(median, 4) if median is not None else None,
                    "samples": count,
                    "days": len(days),
                    "computed_at": now,
                }
            )
        if rows:
            async with self.db.transaction() as s:
                for row in rows:
                    await s.execute(
                        insert(T.learned)
                        .values(**row)
                        .on_conflict_do_update(
                            index_elements=["kind", "subject_id"],
                            set_={k: v for k, v in row.items() if k not in ("kind", "subject_id")},
                        )
                    )
            for row in rows:
                self._set(row)
            self.on_learned()
        return len(rows)

    def _set(self, row: Any) -> None:
        if row["kind"] == "point":
            self.points[row["subject_id"]] = Learned(
                rated_kw=row["rated_kw"], running_median_kw=row["running_median"]
            )
        elif row["running_median"]:
            self.group_ratio[row["subject_id"]] = row["running_median"]
