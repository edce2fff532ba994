"""Building, storing and listing abnormal-event reports."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ecowatt_kernel.db import Database
from ecowatt_kernel.ids import new_id
from ecowatt_kernel.problems import NotFound, Problem
from sqlalchemy import and_, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_ops.clocks.models import LEVEL_ZH, REQUEST_KIND_ZH, Level, RequestKind
from ecowatt_ops.desk.settings import DeskSettings
from ecowatt_ops.escalation.service import Notifier
from ecowatt_ops.incidents.models import SOURCE_ZH, incident
from ecowatt_ops.incidents.service import to_read
from ecowatt_ops.reports.models import (
    AbnormalReport,
    Figures,
    LevelFigures,
    ReportEvent,
    ReportRequest,
    RequestFigures,
    abnormal_report,
)
from ecowatt_ops.support.models import OPEN_STATUSES, support_request
from ecowatt_ops.support.service import to_read as request_read

__all__ = [
    "build_report",
    "load_report",
    "month_period",
    "period_of",
    "store_monthly_report",
    "store_report",
]

MAX_PERIOD = timedelta(days=366)


def month_period(month: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """[first day, first day of the next month) of `month`'s month, local midnight."""
    start = datetime(month.year, month.month, 1, tzinfo=zone)
    following = datetime(month.year + (month.month == 12), month.month % 12 + 1, 1, tzinfo=zone)
    return start, following


def period_of(request: ReportRequest, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The period a report request names (at most a year)."""
    if request.month is not None:
        year, month = (int(part) for part in request.month.split("-"))
        return month_period(date(year, month, 1), zone)
    assert request.period_from is not None and request.period_to is not None
    if request.period_to - request.period_from > MAX_PERIOD:
        raise Problem(
            "a report covers at most a year", status=422, type_suffix="report-period-too-long"
        )
    return request.period_from, request.period_to


def _title(start: datetime, end: datetime, zone: ZoneInfo, kind: str) -> str:
    local_start, last = start.astimezone(zone), (end - timedelta(seconds=1)).astimezone(zone)
    if kind == "monthly" or (
        local_start == month_period(local_start.date(), zone)[0]
        and end == month_period(local_start.date(), zone)[1]
    ):
        return f"系统运行异常事件报告（{local_start:%Y年%m月}）"
    return f"系统运行异常事件报告（{local_start:%Y-%m-%d} 至 {last:%Y-%m-%d}）"


def _event(row: Any, now: datetime) -> ReportEvent:
    view = to_read(row, now=now)
    handling = "；".join(
        f"{label}：{value}"
        for label, value in (
            ("临时措施", row["workaround"]),
            ("原因", row["root_cause"]),
            ("处理结果", row["resolution"]),
        )
        if value
    )
    end = row["resolved_at"]
    return ReportEvent(
        id=row["id"],
        number=row["number"],
        title=row["title"],
        level=row["level"],
        level_name=view.level_name,
        source_name=SOURCE_ZH[row["source"]],
        affected_function=row["affected_function"],
        status_name=view.status_name,
        opened_at=row["opened_at"],
        responded_at=row["responded_at"],
        resolved_at=row["resolved_at"],
        verified_at=row["verified_at"],
        duration_min=round((end - row["opened_at"]).total_seconds() / 60, 1) if end else None,
        impact=row["impact"],
        handling=handling,
        response_sla=view.response.status,
        resolution_sla=view.resolution_clock.status,
        review=row["review"],
    )


async def build_report(
    *,
    session: AsyncSession,
    start: datetime,
    end: datetime,
    kind: str,
    now: datetime,
    generated_by: str,
    zone: ZoneInfo,
) -> AbnormalReport:
    """The report of `[start, end)` as of `now`, from the incidents and requests stored."""
    c = incident.c
    opened = (
        (
            await session.execute(
                select(incident)
                .where(c.opened_at >= start, c.opened_at < end)
                .order_by(c.opened_at, c.number)
            )
        )
        .mappings()
        .all()
    )
    events = [_event(r, now) for r in opened if r["status"] != "cancelled"]
    tracking_rows = (
        (
            await session.execute(
                select(incident)
                .where(
                    c.opened_at < end,
                    or_(c.verified_at.is_(None), c.verified_at >= end),
                    or_(c.cancelled_at.is_(None), c.cancelled_at >= end),
                )
                .order_by(c.opened_at, c.number)
            )
        )
        .mappings()
        .all()
    )
    tracking = [_event(r, now) for r in tracking_rows]

    by_level = []
    for level in Level:
        mine = [e for e in events if e.level == level.value]
        by_level.append(
            LevelFigures(
                level=level.value,
                level_name=LEVEL_ZH[level],
                events=len(mine),
                response_met=sum(e.response_sla == "met" for e in mine),
                response_missed=sum(e.response_sla in ("missed", "overdue") for e in mine),
                resolution_met=sum(e.resolution_sla == "met" for e in mine),
                resolution_missed=sum(e.resolution_sla in ("missed", "overdue") for e in mine),
                duration_min=round(sum(e.duration_min or 0 for e in mine), 1),
            )
        )
    resolved = [e for e in events if e.duration_min is not None]
    response_met = sum(f.response_met for f in by_level)
    response_missed = sum(f.response_missed for f in by_level)
    resolution_met = sum(f.resolution_met for f in by_level)
    resolution_missed = sum(f.resolution_missed for f in by_level)
    duration = round(sum(e.duration_min or 0 for e in resolved), 1)
    figures = Figures(
        events=len(events),
        cancelled=sum(r["status"] == "cancelled" for r in opened),
        resolved=len(resolved),
        response_met=response_met,
        response_missed=response_missed,
        resolution_met=resolution_met,
        resolution_missed=resolution_missed,
        response_rate=_rate(response_met, response_missed),
        resolution_rate=_rate(resolution_met, resolution_missed),
        duration_min=duration,
        mean_duration_min=round(duration / len(resolved), 1) if resolved else None,
        open_at_end=len(tracking),
        by_level=by_level,
        by_source=dict(Counter(e.source_name for e in events)),
        by_function=dict(Counter(e.affected_function or "未注明" for e in events)),
    )
    return AbnormalReport(
        kind=kind,  # type: ignore[arg-type]
        title=_title(start, end, zone, kind),
        period_start=start,
        period_end=end,
        generated_at=now,
        generated_by=generated_by,
        figures=figures,
        events=events,
        tracking=tracking,
        requests=await _request_figures(session, start, end, now),
    )


def _rate(met: int, missed: int) -> float | None:
    return round(met / (met + missed), 4) if met + missed else None


async def _request_figures(
    session: AsyncSession, start: datetime, end: datetime, now: datetime
) -> list[RequestFigures]:
    r = support_request.c
    rows = (
        (
            await session.execute(
                select(support_request).where(r.received_at >= start, r.received_at < end)
            )
        )
        .mappings()
        .all()
    )
    open_rows = (
        (
            await session.execute(
                select(r.kind).where(
                    r.received_at < end,
                    or_(
                        r.status.in_(OPEN_STATUSES),
                        and_(r.resolved_at.is_not(None), r.resolved_at >= end),
                    ),
                    r.status.not_in(("rejected", "withdrawn")),
                )
            )
        )
        .scalars()
        .all()
    )
    figures = []
    for kind in RequestKind:
        states = [
            request_read(row, now=now).clock.status for row in rows if row["kind"] == kind.value
        ]
        figures.append(
            RequestFigures(
                kind=kind.value,
                kind_name=REQUEST_KIND_ZH[kind],
                received=len(states),
                met=states.count("met"),
                missed=states.count("missed") + states.count("overdue"),
                running=states.count("running"),
                open_at_end=sum(k == kind.value for k in open_rows),
            )
        )
    return figures


async def store_report(*, session: AsyncSession, report: AbnormalReport) -> str | None:
    """Store a report; None when the month's monthly report exists already."""
    report_id = new_id()
    statement = insert(abnormal_report).values(
        id=report_id,
        kind=report.kind,
        period_start=report.period_start,
        period_end=report.period_end,
        title=report.title,
        generated_at=report.generated_at,
        generated_by=report.generated_by,
        content=report.model_dump(mode="json"),
    )
    if report.kind == "monthly":
        statement = statement.on_conflict_do_nothing(
            index_elements=["period_start"], index_where=abnormal_report.c.kind == "monthly"
        )
    stored = await session.scalar(statement.returning(abnormal_report.c.id))
    return str(stored) if stored is not None else None


async def load_report(*, session: AsyncSession, report_id: str) -> AbnormalReport:
    """A stored report (404 when there is none)."""
    content = await session.scalar(
        select(abnormal_report.c.content).where(abnormal_report.c.id == report_id)
    )
    if content is None:
        raise NotFound(f"report {report_id} not found")
    return AbnormalReport.model_validate(content)


async def store_monthly_report(
    *, db: Database, day: date, settings: DeskSettings, notifier: Notifier, now: datetime
) -> str | None:
    """On the last day of a month (closed by the daily job): store that month's report once
    and tell the contacts who want reports."""
    if (day + timedelta(days=1)).day != 1:
        return None
    zone = ZoneInfo(settings.timezone)
    start, end = month_period(day, zone)
    async with db.transaction() as session:
        report = await build_report(
            session=session,
            start=start,
            end=end,
            kind="monthly",
            now=now,
            generated_by="ops.monthly-report",
            zone=zone,
        )
        report_id = await store_report(session=session, report=report)
        if report_id is None:
            return None
        f = report.figures
        await notifier.send(
            session=session,
            event="report",
            text=f"【EcoWatt 运维】{report.title}已生成：异常事件 {f.events} 起，"
            f"未结 {f.open_at_end} 起。",
            payload={"report_id": report_id, "title": report.title, "events": f.events},
            now=now,
        )
    return report_id
