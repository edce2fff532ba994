"""Curves: a point, facility, control group or enterprise over a window, on one time axis.

The resolution follows the window unless one is asked for: raw samples up to a day, the
15-minute rollup up to 14 days, hourly up to 92 days, daily beyond (`choose_resolution`).
Every series of a response shares one axis (`times`), so production and control facilities
line up bucket by bucket; a bucket without a valid sample is `null` — a gap, never a zero
and never a line drawn across it.

- point: its own curve;
- facility: one curve per point of the facility;
- group (产治关系): one curve per production and per control facility (the sum of its
  points; a bucket where none of them has data is a gap);
- enterprise: one curve per point, the total line first, then production, combined,
  control and indirect points.

Raw resolution bins samples into steps of the points' expected interval (at least 60 s):
the mean power, or the energy used, of the samples in each step.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from ecowatt_kernel.identity import DataScope
from ecowatt_kernel.problems import NotFound, Problem
from pydantic import BaseModel, Field
from sqlalchemy import and_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_reporting.archive.models import (
    CONTROL_GROUP,
    ENTERPRISE,
    FACILITY,
    POINT,
    POINT_TYPE_ZH,
)

__all__ = [
    "MAX_CELLS",
    "Resolution",
    "SeriesOut",
    "SubjectKind",
    "choose_resolution",
    "load_series",
    "resolve_subject",
]

Resolution = Literal["raw", "15m", "1h", "1d"]
SubjectKind = Literal["point", "facility", "group", "enterprise"]
Quantity = Literal["power", "energy"]
STEP_S = {"15m": 900, "1h": 3600, "1d": 86400}
MAX_CELLS = 1_000_000
"""Series × buckets one response may hold (a month of minutes for 20 points)."""
MAX_RAW_WINDOW = timedelta(days=31)
RAW_QUERY_CONCURRENCY = 4
ROLE_ORDER = {"total": 0, "production": 1, "combined": 2, "control": 3, "indirect": 4}


def choose_resolution(since: datetime, until: datetime, requested: str = "auto") -> Resolution:
    """The resolution for a window: `requested`, or the one that fits the window."""
    window = until - since
    if requested != "auto":
        if requested == "raw" and window > MAX_RAW_WINDOW:
            raise Problem(
                "raw resolution is available for windows of up to 31 days; "
                "ask for 15m, 1h or 1d (or auto)",
                status=422,
            )
        return requested  # type: ignore[return-value]
    if window <= timedelta(days=1):
        return "raw"
    if window <= timedelta(days=14):
        return "15m"
    if window <= timedelta(days=92):
        return "1h"
    return "1d"


@dataclass
class SeriesSpec:
    """One curve: which points it sums and what it is called."""

    key: str
    name: str
    role: str
    point_ids: list[str]
    facility_id: str | None = None


@dataclass
class Subject:
    """What a curve request is about, and the curves it gets."""

    kind: SubjectKind
    id: str
    name: str
    enterprise_id: str
    enterprise_name: str
    series: list[SeriesSpec] = field(default_factory=list)
    interval_s: int = 60


class SeriesLine(BaseModel):
    key: str = Field(description="Point or facility id")
    name: str
    role: str = Field(description="total, production, combined, control or indirect")
    role_name: str
    point_ids: list[str]
    unit: str
    values: list[float | None] = Field(description="One value per axis time; null = no data")


class SeriesOut(BaseModel):
    """Curves on one time axis."""

    subject_kind: SubjectKind
    subject_id: str
    subject_name: str
    enterprise_id: str
    enterprise_name: str
    quantity: Quantity
    resolution: Resolution
    step_s: int = Field(description="Seconds between axis times (86400 for days)")
    since: datetime
    until: datetime
    times: list[datetime] = Field(description="Start of each bucket (UTC)")
    series: list[SeriesLine]


async def resolve_subject(
    session: AsyncSession, *, kind: SubjectKind, subject_id: str, scope: DataScope
) -> Subject:
    """The subject and its curves, or 404 when it does not exist or is outside the scope."""
    p, f, e = POINT.c, FACILITY.c, ENTERPRISE.c
    enterprise_id: str | None
    if kind == "enterprise":
        enterprise_id = subject_id
    elif kind == "point":
        enterprise_id = await session.scalar(select(p.enterprise_id).where(p.id == subject_id))
    elif kind == "facility":
        enterprise_id = await session.scalar(select(f.enterprise_id).where(f.id == subject_id))
    else:
        enterprise_id = await session.scalar(
            select(CONTROL_GROUP.c.enterprise_id).where(CONTROL_GROUP.c.id == subject_id)
        )
    enterprise = None
    if enterprise_id is not None:
        enterprise = (
            await session.execute(
                select(e.id, e.name).where(
                    e.id == enterprise_id,
                    scope.where(district_column=e.district_code, enterprise_column=e.id),
                )
            )
        ).one_or_none()
    if enterprise is None:
        raise NotFound(f"{kind} {subject_id} not found")
    points = (
        await session.execute(
            select(p.id, p.name, p.point_type, p.facility_id, p.expected_interval_s)
            .where(p.enterprise_id == enterprise.id, p.deleted.is_(False))
            .order_by(p.name, p.id)
        )
    ).all()
    subject = Subject(kind, subject_id, enterprise.name, enterprise.id, enterprise.name)
    if kind in ("point", "enterprise", "facility"):
        chosen = [
            row
            for row in points
            if kind == "enterprise"
            or (kind == "point" and row.id == subject_id)
            or (kind == "facility" and row.facility_id == subject_id)
        ]
        chosen.sort(key=lambda r: (ROLE_ORDER.get(r.point_type, 9), r.name, r.id))
        subject.series = [
            SeriesSpec(r.id, r.name, r.point_type, [r.id], r.facility_id) for r in chosen
        ]
        if kind == "point" and chosen:
            subject.name = chosen[0].name
    else:
        group = (
            await session.execute(select(CONTROL_GROUP).where(CONTROL_GROUP.c.id == subject_id))
        ).one()
        subject.name = group.name or subject_id
        facilities = {
            r.id: r
            for r in await session.execute(
                select(f.id, f.name, f.kind).where(f.enterprise_id == enterprise.id)
            )
        }
        members = [(fid, "production") for fid in group.production_facility_ids] + [
            (fid, "control") for fid in group.control_facility_ids
        ]
        for facility_id, role in members:
            facility = facilities.get(facility_id)
            subject.series.append(
                SeriesSpec(
                    facility_id,
                    facility.name if facility else facility_id,
                    role,
                    [r.id for r in points if r.facility_id == facility_id],
                    facility_id,
                )
            )
    if kind == "facility" and subject_id in {r.facility_id for r in points}:
        subject.name = (
            await session.scalar(select(f.name).where(f.id == subject_id))
        ) or subject_id
    intervals = [r.expected_interval_s for r in points if r.id in _point_ids(subject)]
    subject.interval_s = min(max(max(intervals, default=60), 60), 900)
    return subject


def _point_ids(subject: Subject) -> list[str]:
    return sorted({pid for spec in subject.series for pid in spec.point_ids})


def _axis(
    since: datetime, until: datetime, resolution: Resolution, step: int, tz: ZoneInfo
) -> tuple[list[datetime], datetime, datetime]:
    """Bucket starts covering [since, until), and the aligned window."""
    if resolution == "1d":
        first = since.astimezone(tz).date()
        last = (until - timedelta(microseconds=1)).astimezone(tz).date()
        days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
        times = [datetime.combine(d, datetime.min.time(), tzinfo=tz).astimezone(UTC) for d in days]
        return times, times[0], times[-1] + timedelta(days=1)
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    start = epoch + timedelta(seconds=((since - epoch).total_seconds() // step) * step)
    count = max(int(-(-(until - start).total_seconds() // step)), 1)
    return [start + timedelta(seconds=i * step) for i in range(count)], start, until


async def load_series(
    session: AsyncSession,
    *,
    subject: Subject,
    since: datetime,
    until: datetime,
    resolution: Resolution,
    quantity: Quantity,
    timezone: str,
) -> SeriesOut:
    """The subject's curves over [since, until) at `resolution`."""
    if until <= since:
        raise Problem("`to` must be after `from`", status=422)
    tz = ZoneInfo(timezone)
    step = subject.interval_s if resolution == "raw" else STEP_S[resolution]
    times, start, end = _axis(since, until, resolution, step, tz)
    cells = len(times) * max(len(subject.series), 1)
    if cells > MAX_CELLS:
        raise Problem(
            f"{cells:,} values asked for (at most {MAX_CELLS:,}): shorten the window or "
            "choose a coarser resolution",
            status=422,
        )
    per_point = await _point_values(
        session,
        point_ids=_point_ids(subject),
        start=start,
        end=end,
        resolution=resolution,
        quantity=quantity,
        step=step,
        first_day=times[0].astimezone(tz).date() if resolution == "1d" else None,
        count=len(times),
    )
    count = len(times)
    lines = []
    for spec in subject.series:
        found = [per_point[p] for p in spec.point_ids if p in per_point]
        if len(found) == 1:
            values = found[0]
        else:
            values = [None] * count
            for line in found:
                for index, value in enumerate(line):
                    if value is not None:
                        current = values[index]
                        values[index] = value if current is None else current + value
        if len(spec.point_ids) > 1:  # sums of several points: round their float noise
            values = [None if v is None else round(v, 4) for v in values]
        # Built without validation: every value is already a float or None (large months).
        lines.append(
            SeriesLine.model_construct(
                key=spec.key,
                name=spec.name,
                role=spec.role,
                role_name=POINT_TYPE_ZH.get(spec.role, spec.role),
                point_ids=spec.point_ids,
                unit="kW" if quantity == "power" else "kWh",
                values=values,
            )
        )
    return SeriesOut.model_construct(
        subject_kind=subject.kind,
        subject_id=subject.id,
        subject_name=subject.name,
        enterprise_id=subject.enterprise_id,
        enterprise_name=subject.enterprise_name,
        quantity=quantity,
        resolution=resolution,
        step_s=step,
        since=start,
        until=end,
        times=times,
        series=lines,
    )


async def _point_values(
    session: AsyncSession,
    *,
    point_ids: list[str],
    start: datetime,
    end: datetime,
    resolution: Resolution,
    quantity: Quantity,
    step: int,
    first_day: date | None,
    count: int,
) -> dict[str, list[float | None]]:
    """Per point: one value per axis step (None: no data), from raw samples or a rollup."""
    if not point_ids:
        return {}
    params: dict[str, Any] = {"points": point_ids, "start": start, "end": end, "step": step}
    if resolution == "raw":
        # One query per point: its samples come in index order (no sort, no grouping of a
        # month of minutes in SQL), and the rare second sample in a step is merged here.
        value = "CASE WHEN valid THEN power_kw END" if quantity == "power" else "energy_kwh"
        sql = text(
            "SELECT array_agg(i), array_agg(v) FROM (SELECT (extract(epoch FROM data_time - "
            f":start)::bigint / :step)::int AS i, {value} AS v FROM point_sample "
            "WHERE point_id = :point AND kind IN (0, 1) AND data_time >= :start "
            "AND data_time < :end ORDER BY data_time) s"
        )
        engine = session.bind
        gate = asyncio.Semaphore(RAW_QUERY_CONCURRENCY)

        async def one(point_id: str) -> tuple[str, Any, Any]:
            # Each point on a connection of its own: PostgreSQL reads several at once.
            async with gate, engine.connect() as connection:  # type: ignore[union-attr]
                indexes, values = (
                    await connection.execute(sql, {**params, "point": point_id})
                ).one()
            return point_id, indexes, values

        out: dict[str, list[float | None]] = {}
        for point_id, indexes, values in await asyncio.gather(*(one(p) for p in point_ids)):
            if indexes:
                out[point_id] = _dense_steps(indexes, values, count, average=quantity == "power")
        return out
    else:
        value = (
            "CASE WHEN power_n > 0 THEN round((power_sum / power_n)::numeric, 4)::float8 END"
            if quantity == "power"
            else "CASE WHEN energy_n > 0 OR samples > 0 "
            "THEN round(energy_kwh::numeric, 4)::float8 END"
        )
        if resolution == "1d":
            assert first_day is not None
            params = {
                "points": point_ids,
                "first": first_day,
                "last": first_day + timedelta(days=count - 1),
            }
            inner = (
                f"SELECT point_id, (day - CAST(:first AS date)) AS i, {value} AS v "
                "FROM rollup_1d WHERE point_id = ANY(CAST(:points AS text[])) "
                "AND day >= :first AND day <= :last"
            )
        else:
            table = "rollup_15m" if resolution == "15m" else "rollup_1h"
            inner = (
                "SELECT point_id, (extract(epoch FROM bucket - :start)::bigint / :step)::int AS i, "
                f"{value} AS v FROM {table} WHERE point_id = ANY(CAST(:points AS text[])) "
                "AND bucket >= :start AND bucket < :end"
            )
    rows = await session.execute(
        text(f"SELECT point_id, array_agg(i), array_agg(v) FROM ({inner}) s GROUP BY point_id"),
        params,
    )
    dense: dict[str, list[float | None]] = {}
    for point_id, indexes, values in rows:
        line: list[float | None] = [None] * count
        for index, value in zip(indexes, values, strict=True):
            if 0 <= index < count:
                line[index] = value
        dense[point_id] = line
    return dense


def _dense_steps(
    indexes: list[int], values: list[float | None], count: int, *, average: bool
) -> list[float | None]:
    """Samples in time order → one value per step: the mean (power) or sum (energy) of the
    step's non-null values; a step with only nulls (invalid samples) stays null."""
    line: list[float | None] = [None] * count
    seen = [0] * count if average else None
    for index, value in zip(indexes, values, strict=True):
        if value is None or not 0 <= index < count:
            continue
        current = line[index]
        if current is None:
            line[index] = value
            if seen is not None:
                seen[index] = 1
        elif seen is not None:
            n = seen[index]
            line[index] = (current * n + value) / (n + 1)
            seen[index] = n + 1
        else:
            line[index] = current + value
    return line


def table_rows(
    series: SeriesOut, tz: ZoneInfo
) -> tuple[list[tuple[str, str]], list[dict[str, Any]]]:
    """(columns as (key, header), rows) of a curve download: one row per axis time."""
    unit = "kW" if series.quantity == "power" else "kWh"
    columns = [("time", "时间")] + [
        (f"s{i}", f"{line.name}（{line.role_name}，{unit}）")
        for i, line in enumerate(series.series)
    ]
    rows = []
    for index, moment in enumerate(series.times):
        local = moment.astimezone(tz)
        row: dict[str, Any] = {
            "time": local.date() if series.resolution == "1d" else local.replace(tzinfo=None)
        }
        for i, line in enumerate(series.series):
            row[f"s{i}"] = line.values[index]
        rows.append(row)
    return columns, rows


def scoped_enterprises(scope: DataScope) -> Any:
    """SQL condition on the archive copy's enterprises visible to `scope`."""
    return and_(
        ENTERPRISE.c.deleted.is_(False),
        scope.where(district_column=ENTERPRISE.c.district_code, enterprise_column=ENTERPRISE.c.id),
    )
