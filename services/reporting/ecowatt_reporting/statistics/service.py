"""The statistics of a period, for the API and for every report.

Definitions (docs/reports.md repeats them with examples):

- **Enterprises**: those of the archive copy inside the caller's scope and the filters
  (district, zone, industry, grade), not deleted. **Points**: their active points.
- **Online rate (在线率)**: a point is online on a local day when it sent at least one
  real-time or minute sample that day; online rate = online point-days ÷ point-days, where a
  point counts from the day it was commissioned and the current day counts too. Enterprise
  online rate: an enterprise-day is online when any of its points was.
- **Completeness (数据完整率)**: valid samples ÷ expected samples, expected = 86,400 s ÷ the
  point's expected interval per day (the elapsed part of the current day); a point-day
  counts at most its expected samples.
- **Alarms**: alarms raised (`opened_at`) in the period and not suppressed, by rule,
  district, industry (GB/T 4754 class) and level (the highest the alarm reached), each with
  the count of the previous period and the change (环比, %). Suppressed alarms are counted
  apart.
- **Timeliness**: of those alarms, how many got feedback from the enterprise and how long it
  took from `opened_at` (mean hours, share within `feedback_deadline_h`), how many were
  closed (销号) and how long that took (share within `close_deadline_h`), how many are open.
- **Repeat offenders**: enterprises with at least `repeat_offender_min` alarms.
- **Findings by kind**: data-quality findings opened in the period by rule, and those still
  open at the end of the period.
- **Electricity**: an enterprise's energy is the sum of its total-line points when it has
  any with data in the period, otherwise the sum of all its points; production = production
  and combined points, control = control points. By district and industry, with 环比.
- **Compliance**: enterprise-hours per verdict of `control.compliance` in the period.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ecowatt_kernel.identity import DataScope
from sqlalchemy import and_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_reporting.archive.models import ENTERPRISE
from ecowatt_reporting.events.models import FINDING_NAMES, LEVEL_ZH, VERDICT_ZH
from ecowatt_reporting.statistics.models import (
    Availability,
    ComplianceCount,
    Count,
    DayPoint,
    Energy,
    EnterpriseRow,
    Filters,
    FindingCount,
    Offender,
    Period,
    Statistics,
    Timeliness,
)

__all__ = ["StatisticsParams", "compute_statistics", "enterprise_condition"]


@dataclass(frozen=True)
class StatisticsParams:
    """Settings the statistics depend on."""

    timezone: str = "Asia/Shanghai"
    feedback_deadline_h: float = 24.0
    close_deadline_h: float = 72.0
    repeat_offender_min: int = 3


def enterprise_condition(scope: DataScope, filters: Filters) -> Any:
    """SQL condition on the archive copy's enterprises for `scope` and `filters`."""
    e = ENTERPRISE.c
    conditions = [
        e.deleted.is_(False),
        scope.where(district_column=e.district_code, enterprise_column=e.id),
    ]
    if filters.district:
        conditions.append(
            DataScope(districts=frozenset(filters.district)).where(district_column=e.district_code)
        )
    if filters.zone:
        conditions.append(e.zone == filters.zone)
    if filters.industry:
        conditions.append(e.industry_code.startswith(filters.industry, autoescape=True))
    if filters.grade:
        conditions.append(e.performance_grade == filters.grade)
    if filters.enterprise_id:
        conditions.append(e.id == filters.enterprise_id)
    return and_(*conditions)


def _local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def _pct(count: float, previous: float) -> float | None:
    return round((count - previous) / previous * 100.0, 1) if previous else None


def _ratio(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole else None


async def compute_statistics(
    session: AsyncSession,
    *,
    period: Period,
    filters: Filters,
    scope: DataScope,
    params: StatisticsParams,
    now: datetime | None = None,
) -> Statistics:
    """Every statistic of `period` for the enterprises `scope` and `filters` select."""
    tz = ZoneInfo(params.timezone)
    now = now or datetime.now(UTC)
    previous = period.previous()
    e = ENTERPRISE.c
    enterprises = {
        row.id: row
        for row in await session.execute(
            select(
                e.id,
                e.name,
                e.district_code,
                e.district_name,
                e.industry_code,
                e.industry_name,
                e.performance_grade,
            ).where(enterprise_condition(scope, filters))
        )
    }
    ids = sorted(enterprises)
    availability = await _availability(session, ids, period, tz, now)
    energy_now = await _energy(session, ids, period)
    energy_before = await _energy(session, ids, previous)
    alarms_now = await _alarms(session, ids, period, tz)
    alarms_before = await _alarms(session, ids, previous, tz)
    findings = await _findings(session, ids, period, previous, tz)
    compliance = await _compliance(session, ids, period, tz)

    def district_of(enterprise_id: str) -> tuple[str, str]:
        row = enterprises[enterprise_id]
        return row.district_code, row.district_name or row.district_code

    def industry_of(enterprise_id: str) -> tuple[str, str]:
        row = enterprises[enterprise_id]
        code = row.industry_code or "-"
        return code, row.industry_name or ("未填报" if code == "-" else code)

    # --------------------------------------------------------------------- availability
    rows_of: dict[str, list[dict[str, Any]]] = defaultdict(list)
    rows_on: dict[date, list[dict[str, Any]]] = defaultdict(list)
    for item in availability.rows:
        rows_of[item["enterprise_id"]].append(item)
        rows_on[item["day"]].append(item)

    def availability_of(key: str, name: str, members: Iterable[str] | None) -> Availability:
        chosen = ids if members is None else list(members)
        rows = [r for i in chosen for r in rows_of.get(i, ())]
        enterprise_days = {(r["enterprise_id"], r["day"]) for r in rows if r["point_days"]}
        online_days = {(r["enterprise_id"], r["day"]) for r in rows if r["online_point_days"]}
        point_days = sum(r["point_days"] for r in rows)
        online = sum(r["online_point_days"] for r in rows)
        expected = sum(r["expected"] for r in rows)
        valid = sum(r["valid"] for r in rows)
        return Availability(
            key=key,
            name=name,
            points=sum(availability.points.get(i, 0) for i in chosen),
            point_days=point_days,
            online_point_days=online,
            online_rate=_ratio(online, point_days),
            enterprise_days=len(enterprise_days),
            online_enterprise_days=len(online_days),
            enterprise_online_rate=_ratio(len(online_days), len(enterprise_days)),
            expected_samples=round(expected, 3),
            valid_samples=round(valid, 3),
            completeness=_ratio(valid, expected),
        )

    def grouped(key_of: Any) -> dict[tuple[str, str], list[str]]:
        groups: dict[tuple[str, str], list[str]] = defaultdict(list)
        for enterprise_id in ids:
            groups[key_of(enterprise_id)].append(enterprise_id)
        return dict(sorted(groups.items()))

    by_district = grouped(district_of)
    by_industry = grouped(industry_of)

    # --------------------------------------------------------------------------- alarms
    def counts(key_of: Any, names: dict[str, str] | None = None) -> list[Count]:
        now_counts: dict[str, int] = defaultdict(int)
        before_counts: dict[str, int] = defaultdict(int)
        labels: dict[str, str] = {}
        for source, target in ((alarms_now, now_counts), (alarms_before, before_counts)):
            for alarm in source:
                if alarm["suppressed"]:
                    continue
                key, label = key_of(alarm)
                target[key] += 1
                labels.setdefault(key, label)
        keys = sorted(set(now_counts) | set(before_counts), key=lambda k: (-now_counts[k], k))
        return [
            Count(
                key=k,
                name=(names or {}).get(k, labels[k]),
                count=now_counts[k],
                previous=before_counts[k],
                change_pct=_pct(now_counts[k], before_counts[k]),
            )
            for k in keys
        ]

    total_now = sum(1 for a in alarms_now if not a["suppressed"])
    total_before = sum(1 for a in alarms_before if not a["suppressed"])
    raised = [a for a in alarms_now if not a["suppressed"]]
    timeliness = _timeliness(raised, params)

    per_enterprise: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for alarm in raised:
        per_enterprise[alarm["enterprise_id"]].append(alarm)
    offenders = []
    for enterprise_id, items in per_enterprise.items():
        if len(items) >= params.repeat_offender_min:
            row = enterprises[enterprise_id]
            rules: dict[str, int] = defaultdict(int)
            for alarm in items:
                rules[alarm["rule_name"] or alarm["rule_code"]] += 1
            offenders.append(
                Offender(
                    enterprise_id=enterprise_id,
                    enterprise_name=row.name,
                    district_name=row.district_name,
                    industry_name=row.industry_name,
                    alarms=len(items),
                    max_level=max(a["max_level"] for a in items),
                    rules=dict(sorted(rules.items())),
                )
            )
    offenders.sort(key=lambda o: (-o.alarms, -o.max_level, o.enterprise_name))

    # ------------------------------------------------------------------------ electricity
    def energy_of(key: str, name: str, members: Iterable[str] | None) -> Energy:
        chosen = ids if members is None else list(members)
        now_sum = sum(energy_now.total.get(i, 0.0) for i in chosen)
        before_sum = sum(energy_before.total.get(i, 0.0) for i in chosen)
        return Energy(
            key=key,
            name=name,
            enterprises=len(chosen),
            energy_kwh=round(now_sum, 3),
            previous_kwh=round(before_sum, 3),
            change_pct=_pct(now_sum, before_sum),
            production_kwh=round(sum(energy_now.production.get(i, 0.0) for i in chosen), 3),
            control_kwh=round(sum(energy_now.control.get(i, 0.0) for i in chosen), 3),
        )

    # ---------------------------------------------------------------------------- daily
    alarms_by_day: dict[date, int] = defaultdict(int)
    for alarm in raised:
        alarms_by_day[alarm["opened_at"].astimezone(tz).date()] += 1
    daily = []
    day = period.start
    while day < period.end:
        rows = rows_on.get(day, [])
        point_days = sum(r["point_days"] for r in rows)
        expected = sum(r["expected"] for r in rows)
        daily.append(
            DayPoint(
                day=day,
                energy_kwh=round(energy_now.by_day.get(day, 0.0), 3),
                alarms=alarms_by_day.get(day, 0),
                online_rate=_ratio(sum(r["online_point_days"] for r in rows), point_days),
                completeness=_ratio(sum(r["valid"] for r in rows), expected),
            )
        )
        day += timedelta(days=1)

    by_enterprise = []
    for enterprise_id in ids:
        row = enterprises[enterprise_id]
        single = availability_of(enterprise_id, row.name, [enterprise_id])
        by_enterprise.append(
            EnterpriseRow(
                enterprise_id=enterprise_id,
                name=row.name,
                district_name=row.district_name,
                industry_name=row.industry_name,
                grade=row.performance_grade,
                points=single.points,
                online_rate=single.online_rate,
                completeness=single.completeness,
                energy_kwh=round(energy_now.total.get(enterprise_id, 0.0), 3),
                production_kwh=round(energy_now.production.get(enterprise_id, 0.0), 3),
                control_kwh=round(energy_now.control.get(enterprise_id, 0.0), 3),
                alarms=len(per_enterprise.get(enterprise_id, [])),
            )
        )

    return Statistics(
        period_start=period.start,
        period_end=period.end,
        previous_start=previous.start,
        previous_end=previous.end,
        filters=filters,
        enterprises=len(ids),
        points=sum(availability.points.values()),
        availability=availability_of("all", "合计", None),
        availability_by_district=[
            availability_of(k[0], k[1], members) for k, members in by_district.items()
        ],
        availability_by_industry=[
            availability_of(k[0], k[1], members) for k, members in by_industry.items()
        ],
        alarms_total=Count(
            key="all",
            name="合计",
            count=total_now,
            previous=total_before,
            change_pct=_pct(total_now, total_before),
        ),
        alarms_suppressed=sum(1 for a in alarms_now if a["suppressed"]),
        alarms_by_rule=counts(lambda a: (a["rule_code"], a["rule_name"] or a["rule_code"])),
        alarms_by_district=counts(lambda a: district_of(a["enterprise_id"])),
        alarms_by_industry=counts(lambda a: industry_of(a["enterprise_id"])),
        alarms_by_level=counts(
            lambda a: (str(a["max_level"]), LEVEL_ZH.get(a["max_level"], str(a["max_level"])))
        ),
        timeliness=timeliness,
        repeat_offenders=offenders,
        repeat_offender_min=params.repeat_offender_min,
        findings_by_kind=findings,
        energy_total=energy_of("all", "合计", None),
        energy_by_district=[energy_of(k[0], k[1], m) for k, m in by_district.items()],
        energy_by_industry=[energy_of(k[0], k[1], m) for k, m in by_industry.items()],
        compliance=compliance,
        daily=daily,
        by_enterprise=by_enterprise,
    )


# ------------------------------------------------------------------------------- queries


@dataclass
class _Availability:
    rows: list[dict[str, Any]]
    points: dict[str, int]


_AVAILABILITY_SQL = """
WITH pts AS (
    SELECT p.id, p.enterprise_id, p.expected_interval_s,
           greatest(coalesce((p.commissioned_at AT TIME ZONE CAST(:tz AS text))::date,
                             CAST(:first AS date)), CAST(:first AS date)) AS since
      FROM point p
     WHERE p.enterprise_id = ANY(CAST(:ids AS text[])) AND p.status = 'active'
       AND NOT p.deleted
),
days AS (
    SELECT d::date AS day FROM generate_series(CAST(:first AS date), CAST(:last AS date),
                                               interval '1 day') d
),
pd AS (
    SELECT pts.id, pts.enterprise_id, days.day,
           86400.0 / greatest(pts.expected_interval_s, 1)
             * CASE WHEN days.day = CAST(:today AS date) THEN CAST(:fraction AS float8)
                    ELSE 1 END AS expected
      FROM pts JOIN days ON days.day >= pts.since
)
SELECT pd.enterprise_id, pd.day, count(*) AS point_days,
       count(*) FILTER (WHERE r.samples > 0) AS online_point_days,
       coalesce(sum(least(coalesce(r.valid_samples, 0), pd.expected)), 0) AS valid,
       coalesce(sum(pd.expected), 0) AS expected
  FROM pd LEFT JOIN rollup_1d r ON r.point_id = pd.id AND r.day = pd.day
 GROUP BY 1, 2
"""


async def _availability(
    session: AsyncSession, ids: Sequence[str], period: Period, tz: ZoneInfo, now: datetime
) -> _Availability:
    points = {
        enterprise_id: int(count)
        for enterprise_id, count in await session.execute(
            text(
                "SELECT enterprise_id, count(*) FROM point WHERE enterprise_id = "
                "ANY(CAST(:ids AS text[])) AND status = 'active' AND NOT deleted GROUP BY 1"
            ),
            {"ids": list(ids)},
        )
    }
    local_now = now.astimezone(tz)
    today = local_now.date()
    last = min(period.end - timedelta(days=1), today)
    if not ids or last < period.start:
        return _Availability([], points)
    elapsed = local_now - datetime.combine(today, time(0), tzinfo=tz)
    rows = await session.execute(
        text(_AVAILABILITY_SQL),
        {
            "ids": list(ids),
            "first": period.start,
            "last": last,
            "today": today,
            "fraction": max(elapsed.total_seconds() / 86400.0, 1e-9),
            "tz": tz.key,
        },
    )
    return _Availability(
        [
            {
                "enterprise_id": r.enterprise_id,
                "day": r.day,
                "point_days": int(r.point_days),
                "online_point_days": int(r.online_point_days),
                "valid": float(r.valid),
                "expected": float(r.expected),
            }
            for r in rows
        ],
        points,
    )


@dataclass
class _Energy:
    total: dict[str, float]
    production: dict[str, float]
    control: dict[str, float]
    by_day: dict[date, float]


async def _energy(session: AsyncSession, ids: Sequence[str], period: Period) -> _Energy:
    rows = await session.execute(
        text(
            "SELECT p.enterprise_id, p.point_type, r.day, sum(r.energy_kwh) AS kwh, "
            "sum(r.energy_n) AS n FROM rollup_1d r JOIN point p ON p.id = r.point_id "
            "WHERE p.enterprise_id = ANY(CAST(:ids AS text[])) AND r.day >= :first "
            "AND r.day < :end GROUP BY 1, 2, 3"
        ),
        {"ids": list(ids), "first": period.start, "end": period.end},
    )
    by_type: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    by_type_day: dict[str, dict[tuple[str, date], float]] = defaultdict(lambda: defaultdict(float))
    has_total: set[str] = set()
    for enterprise_id, point_type, day, kwh, n in rows:
        by_type[enterprise_id][point_type] += float(kwh or 0.0)
        by_type_day[enterprise_id][(point_type, day)] += float(kwh or 0.0)
        if point_type == "total" and n:
            has_total.add(enterprise_id)
    result = _Energy({}, {}, {}, defaultdict(float))
    for enterprise_id, types in by_type.items():
        counted = (
            ("total",) if enterprise_id in has_total else tuple(t for t in types if t != "total")
        )
        result.total[enterprise_id] = sum(types.get(t, 0.0) for t in counted)
        result.production[enterprise_id] = types.get("production", 0.0) + types.get("combined", 0.0)
        result.control[enterprise_id] = types.get("control", 0.0)
        for (point_type, day), kwh in by_type_day[enterprise_id].items():
            if point_type in counted:
                result.by_day[day] += kwh
    return result


async def _alarms(
    session: AsyncSession, ids: Sequence[str], period: Period, tz: ZoneInfo
) -> list[dict[str, Any]]:
    rows = await session.execute(
        text(
            "SELECT alarm_id, enterprise_id, rule_code, rule_name, max_level, suppressed, "
            "opened_at, feedback_at, closed_at FROM alarm_record "
            "WHERE enterprise_id = ANY(CAST(:ids AS text[])) AND opened_at >= :since "
            "AND opened_at < :until"
        ),
        {
            "ids": list(ids),
            "since": _local_midnight(period.start, tz),
            "until": _local_midnight(period.end, tz),
        },
    )
    return [dict(r._mapping) for r in rows]


def _timeliness(alarms: list[dict[str, Any]], params: StatisticsParams) -> Timeliness:
    feedback_h = [
        (a["feedback_at"] - a["opened_at"]).total_seconds() / 3600.0
        for a in alarms
        if a["feedback_at"] is not None
    ]
    close_h = [
        (a["closed_at"] - a["opened_at"]).total_seconds() / 3600.0
        for a in alarms
        if a["closed_at"] is not None
    ]
    total = len(alarms)
    on_time = sum(1 for h in feedback_h if h <= params.feedback_deadline_h)
    return Timeliness(
        alarms=total,
        with_feedback=len(feedback_h),
        feedback_within_deadline=on_time,
        mean_feedback_h=round(sum(feedback_h) / len(feedback_h), 2) if feedback_h else None,
        closed=len(close_h),
        closed_within_deadline=sum(1 for h in close_h if h <= params.close_deadline_h),
        mean_close_h=round(sum(close_h) / len(close_h), 2) if close_h else None,
        still_open=total - len(close_h),
        feedback_deadline_h=params.feedback_deadline_h,
        close_deadline_h=params.close_deadline_h,
        feedback_rate=_ratio(len(feedback_h), total),
        on_time_feedback_rate=_ratio(on_time, total),
        close_rate=_ratio(len(close_h), total),
    )


async def _findings(
    session: AsyncSession, ids: Sequence[str], period: Period, previous: Period, tz: ZoneInfo
) -> list[FindingCount]:
    start, end = _local_midnight(period.start, tz), _local_midnight(period.end, tz)
    rows = await session.execute(
        text(
            "SELECT rule_code, "
            "count(*) FILTER (WHERE opened_at >= :start AND opened_at < :end) AS opened, "
            "count(*) FILTER (WHERE opened_at >= :prev AND opened_at < :start) AS previous, "
            "count(*) FILTER (WHERE opened_at < :end AND (status <> 'resolved' "
            "OR resolved_at >= :end)) AS open_at_end "
            "FROM finding_record WHERE enterprise_id = ANY(CAST(:ids AS text[])) "
            "AND opened_at < :end GROUP BY rule_code"
        ),
        {
            "ids": list(ids),
            "start": start,
            "end": end,
            "prev": _local_midnight(previous.start, tz),
        },
    )
    out = [
        FindingCount(
            rule_code=r.rule_code,
            name=FINDING_NAMES.get(r.rule_code, r.rule_code),
            opened=int(r.opened),
            previous=int(r.previous),
            change_pct=_pct(int(r.opened), int(r.previous)),
            open_at_end=int(r.open_at_end),
        )
        for r in rows
        if r.opened or r.previous or r.open_at_end
    ]
    return sorted(out, key=lambda f: (-f.opened, -f.open_at_end, f.rule_code))


async def _compliance(
    session: AsyncSession, ids: Sequence[str], period: Period, tz: ZoneInfo
) -> list[ComplianceCount]:
    rows = await session.execute(
        text(
            "SELECT verdict, count(*) AS hours, count(DISTINCT enterprise_id) AS enterprises "
            "FROM compliance_hour WHERE enterprise_id = ANY(CAST(:ids AS text[])) "
            "AND hour_start >= :start AND hour_start < :end GROUP BY verdict"
        ),
        {
            "ids": list(ids),
            "start": _local_midnight(period.start, tz),
            "end": _local_midnight(period.end, tz),
        },
    )
    found = {r.verdict: r for r in rows}
    return [
        ComplianceCount(
            verdict=verdict,
            name=name,
            hours=int(found[verdict].hours) if verdict in found else 0,
            enterprises=int(found[verdict].enterprises) if verdict in found else 0,
        )
        for verdict, name in VERDICT_ZH.items()
    ]
