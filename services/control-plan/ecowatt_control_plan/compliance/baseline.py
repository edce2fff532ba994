"""Baselines: what a point normally uses in each hour of the day (supervision.md §3.5).

For a local day D, a point's profile is computed once (then kept, so the evidence of a
verdict never shifts) from its hourly summaries before D:

1. **Normal days** — the last `baseline_days` (14) days within `baseline_window_days` (42)
   that are not holidays (the bureau's calendar), not control days (an approved order
   covered the point's district that day) and whose completeness (filled sample slots ÷
   expected over the day) is at least 90 %.
2. **history** — with at least `baseline_min_days` (3) normal days: per hour of the day, the
   median of that hour's energy (mean power × 1 h) over the normal days on which that hour
   itself is at least 80 % complete.
3. **learned** (fallback) — fewer normal days: the point's typical running power (median mean
   power of the hours it ran at least 45 minutes, on any non-holiday, non-control day of the
   window) × the share of observed days on which it ran at least 30 minutes in that hour
   (an hour never observed counts as running: the fallback errs towards compliance only for
   hours it knows nothing about, and says so in `source`).
4. **rated** (fallback) — no running hour at all: rated power × 0.7 (a typical load factor
   of the emergency-list industries) for every hour.
5. **none** — no rated power either: measures that need a baseline cannot be judged.

The *production-hour baseline* (`peak_kwh`) is the highest hour of the profile: STOP is
judged against it, not against the same hour, so that a plant keeping its usual standby at
night is not taken for one that failed to stop.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_control_plan.compliance.models import holiday, point_baseline

NORMAL_DAY_COMPLETENESS = 0.9
HOUR_COMPLETENESS = 0.8
RUNNING_HOUR_MIN = 45
RUNS_IN_HOUR_MIN = 30
RATED_LOAD_FACTOR = 0.7


@dataclass(frozen=True)
class Profile:
    point_id: str
    day: date
    hours: tuple[float | None, ...]
    peak_kwh: float | None
    source: str
    days: int

    def at(self, hour: int) -> float | None:
        return self.hours[hour]


@dataclass(frozen=True)
class PointInfo:
    point_id: str
    district_code: str
    rated_kw: float | None


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


_HISTORY_SQL = text(
    """
WITH pts AS (
  SELECT * FROM unnest(CAST(:points AS text[]), CAST(:districts AS text[]))
    AS p(point_id, district)
), ctl AS (
  SELECT * FROM unnest(CAST(:ctl_districts AS text[]), CAST(:ctl_days AS date[]))
    AS c(district, day)
), h AS (
  SELECT ph.point_id, (ph.hour_start AT TIME ZONE :tz) AS local_ts, ph.slots, ph.expected,
         ph.samples, ph.power_sum, ph.run_minutes, pts.district
  FROM control_plan.point_hour ph JOIN pts ON pts.point_id = ph.point_id
  WHERE ph.hour_start >= :lo AND ph.hour_start < :hi
), usable AS (
  SELECT h.* FROM h
  WHERE NOT (CAST(h.local_ts AS date) = ANY(CAST(:holidays AS date[])))
    AND NOT EXISTS (
      SELECT 1 FROM ctl WHERE ctl.district = h.district AND ctl.day = CAST(h.local_ts AS date))
), days AS (
  SELECT point_id, CAST(local_ts AS date) AS day,
         sum(slots)::float8 / (24 * max(expected)) AS completeness
  FROM usable GROUP BY point_id, CAST(local_ts AS date)
), kept AS (
  SELECT point_id, day FROM (
    SELECT point_id, day,
           row_number() OVER (PARTITION BY point_id ORDER BY day DESC) AS rn
    FROM days WHERE completeness >= CAST(:day_completeness AS float8)) ranked
  WHERE rn <= :max_days
), counts AS (
  SELECT point_id, count(*) AS n FROM kept GROUP BY point_id
)
SELECT u.point_id, CAST(extract(hour FROM u.local_ts) AS int) AS hr,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY u.power_sum / u.samples) AS kwh,
       max(counts.n) AS days
FROM usable u
JOIN kept ON kept.point_id = u.point_id AND kept.day = CAST(u.local_ts AS date)
JOIN counts ON counts.point_id = u.point_id
WHERE u.samples > 0 AND u.slots >= CAST(:hour_completeness AS float8) * u.expected
GROUP BY u.point_id, CAST(extract(hour FROM u.local_ts) AS int)
"""
)

_LEARNED_SQL = text(
    """
WITH pts AS (
  SELECT * FROM unnest(CAST(:points AS text[]), CAST(:districts AS text[]))
    AS p(point_id, district)
), ctl AS (
  SELECT * FROM unnest(CAST(:ctl_districts AS text[]), CAST(:ctl_days AS date[]))
    AS c(district, day)
), usable AS (
  SELECT ph.point_id, (ph.hour_start AT TIME ZONE :tz) AS local_ts, ph.samples, ph.power_sum,
         ph.run_minutes
  FROM control_plan.point_hour ph JOIN pts ON pts.point_id = ph.point_id
  WHERE ph.hour_start >= :lo AND ph.hour_start < :hi
    AND ph.samples > 0 AND ph.slots >= CAST(:hour_completeness AS float8) * ph.expected
    AND NOT (CAST((ph.hour_start AT TIME ZONE :tz) AS date) = ANY(CAST(:holidays AS date[])))
    AND NOT EXISTS (SELECT 1 FROM ctl WHERE ctl.district = pts.district
                    AND ctl.day = CAST((ph.hour_start AT TIME ZONE :tz) AS date))
)
SELECT point_id, CAST(extract(hour FROM local_ts) AS int) AS hr,
       avg(CASE WHEN run_minutes >= :runs_in_hour THEN 1.0 ELSE 0.0 END) AS run_share,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY power_sum / samples)
         FILTER (WHERE run_minutes >= :running_hour) AS running_kw,
       count(*) FILTER (WHERE run_minutes >= :running_hour) AS running_hours
FROM usable GROUP BY point_id, CAST(extract(hour FROM local_ts) AS int)
"""
)


async def holidays(session: AsyncSession) -> set[date]:
    """The bureau's holiday calendar."""
    return set((await session.scalars(select(holiday.c.day))).all())


async def profiles(
    session: AsyncSession,
    *,
    points: Sequence[PointInfo],
    day: date,
    tz: ZoneInfo,
    control_days: dict[str, set[date]],
    days: int,
    window_days: int,
    min_days: int,
) -> dict[str, Profile]:
    """Profiles of `points` for `day`: the stored ones, the others computed and stored."""
    ids = [p.point_id for p in points]
    out: dict[str, Profile] = {}
    for start in range(0, len(ids), 20_000):
        rows = await session.execute(
            select(point_baseline).where(
                point_baseline.c.day == day,
                point_baseline.c.point_id.in_(ids[start : start + 20_000]),
            )
        )
        for r in rows.mappings():
            out[r["point_id"]] = Profile(
                r["point_id"], day, tuple(r["profile"]), r["peak_kwh"], r["source"], r["days"]
            )
    missing = [p for p in points if p.point_id not in out]
    if missing:
        computed = await compute(
            session,
            points=missing,
            day=day,
            tz=tz,
            control_days=control_days,
            days=days,
            window_days=window_days,
            min_days=min_days,
        )
        rows_out = [
            {
                "point_id": p.point_id,
                "day": day,
                "profile": list(p.hours),
                "peak_kwh": p.peak_kwh,
                "source": p.source,
                "days": p.days,
            }
            for p in computed.values()
        ]
        for start in range(0, len(rows_out), 2000):
            await session.execute(
                insert(point_baseline)
                .values(rows_out[start : start + 2000])
                .on_conflict_do_nothing()
            )
        out.update(computed)
    return out


async def compute(
    session: AsyncSession,
    *,
    points: Sequence[PointInfo],
    day: date,
    tz: ZoneInfo,
    control_days: dict[str, set[date]],
    days: int,
    window_days: int,
    min_days: int,
) -> dict[str, Profile]:
    """Profiles of `points` for `day`, from the summaries of the days before it."""
    hi = local_midnight(day, tz)
    lo = local_midnight(day - timedelta(days=window_days), tz)
    ctl = [(d, x) for d, dates in control_days.items() for x in sorted(dates)]
    params = {
        "points": [p.point_id for p in points],
        "districts": [p.district_code for p in points],
        "ctl_districts": [d for d, _ in ctl],
        "ctl_days": [x for _, x in ctl],
        "holidays": sorted(await holidays(session)),
        "tz": str(tz),
        "lo": lo,
        "hi": hi,
    }
    history: dict[str, dict[int, float]] = defaultdict(dict)
    used: dict[str, int] = {}
    rows = await session.execute(
        _HISTORY_SQL,
        params
        | {
            "day_completeness": NORMAL_DAY_COMPLETENESS,
            "hour_completeness": HOUR_COMPLETENESS,
            "max_days": days,
        },
    )
    for point_id, hour, kwh, n in rows.all():
        history[point_id][int(hour)] = float(kwh)
        used[point_id] = int(n)
    out: dict[str, Profile] = {}
    fallback = []
    for p in points:
        if used.get(p.point_id, 0) >= min_days:
            hours = tuple(history[p.point_id].get(h) for h in range(24))
            known = [v for v in hours if v is not None]
            out[p.point_id] = Profile(
                p.point_id, day, hours, max(known) if known else None, "history", used[p.point_id]
            )
        else:
            fallback.append(p)
    if not fallback:
        return out
    learned: dict[str, dict[int, tuple[float, float | None, int]]] = defaultdict(dict)
    rows = await session.execute(
        _LEARNED_SQL,
        params
        | {
            "points": [p.point_id for p in fallback],
            "districts": [p.district_code for p in fallback],
            "hour_completeness": HOUR_COMPLETENESS,
            "runs_in_hour": RUNS_IN_HOUR_MIN,
            "running_hour": RUNNING_HOUR_MIN,
        },
    )
    for point_id, hour, share, running_kw, running_hours in rows.all():
        learned[point_id][int(hour)] = (
            float(share),
            float(running_kw) if running_kw is not None else None,
            int(running_hours),
        )
    for p in fallback:
        observed = learned.get(p.point_id, {})
        running = [(kw, n) for _, kw, n in observed.values() if kw is not None and n > 0]
        if running:
            # The median of per-hour-of-day medians, weighted by how often each ran.
            weighted = sorted(kw for kw, n in running for _ in range(n))
            typical = weighted[len(weighted) // 2]
            hours = tuple(typical * (observed[h][0] if h in observed else 1.0) for h in range(24))
            out[p.point_id] = Profile(
                p.point_id, day, hours, typical, "learned", used.get(p.point_id, 0)
            )
        elif p.rated_kw:
            level = p.rated_kw * RATED_LOAD_FACTOR
            out[p.point_id] = Profile(p.point_id, day, (level,) * 24, level, "rated", 0)
        else:
            out[p.point_id] = Profile(p.point_id, day, (None,) * 24, None, "none", 0)
    return out
