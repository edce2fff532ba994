"""Curves, timelines and the history's own health (partitions, refused readings)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from ecowatt_kernel.app import DbSession
from ecowatt_kernel.excel import XLSX_MEDIA_TYPE, Column, rows_to_xlsx
from ecowatt_kernel.identity import Identity, Role, require_roles
from ecowatt_kernel.pagination import Page, PageParams, fetch_page
from ecowatt_kernel.problems import Problem
from fastapi import APIRouter, Path, Query
from fastapi.responses import Response
from pydantic import AwareDatetime, BaseModel
from sqlalchemy import select, text

from ecowatt_reporting.archive.models import ENTERPRISE
from ecowatt_reporting.events.models import ALARM_STATUS_ZH, LEVEL_ZH, STATE_ZH
from ecowatt_reporting.history.models import HISTORY_REJECT
from ecowatt_reporting.history.series import (
    SeriesOut,
    SubjectKind,
    choose_resolution,
    load_series,
    resolve_subject,
    table_rows,
)
from ecowatt_reporting.runtime import CurrentRuntime

router = APIRouter(tags=["history"])

READERS = (
    Role.CITY_SUPERVISOR,
    Role.DISTRICT_OFFICER,
    Role.ENTERPRISE_USER,
    Role.OM_OPERATOR,
)
Reader = Annotated[Identity, require_roles(*READERS)]
Operator = Annotated[Identity, require_roles(Role.OM_OPERATOR, Role.CITY_SUPERVISOR)]
From = Annotated[
    AwareDatetime | None, Query(alias="from", description="Window start (default: to − 1 day)")
]
To = Annotated[
    AwareDatetime | None, Query(alias="to", description="Window end, exclusive (default: now)")
]


def _window(since: datetime | None, until: datetime | None) -> tuple[datetime, datetime]:
    end = until or datetime.now(UTC)
    start = since or end - timedelta(days=1)
    if end <= start:
        raise Problem("`to` must be after `from`", status=422)
    return start, end


@router.get(
    "/series/{subject_kind}/{subject_id}",
    summary="Curves of a point, facility, control group or enterprise on one time axis",
    response_model=SeriesOut,
    responses={200: {"content": {"text/csv": {}, XLSX_MEDIA_TYPE: {}}}},
)
async def series(
    runtime: CurrentRuntime,
    session: DbSession,
    identity: Reader,
    subject_kind: Annotated[SubjectKind, Path(description="point, facility, group or enterprise")],
    subject_id: str,
    since: From = None,
    until: To = None,
    resolution: Annotated[
        Literal["auto", "raw", "15m", "1h", "1d"],
        Query(description="auto: raw ≤ 1 day, 15m ≤ 14 days, 1h ≤ 92 days, else 1d"),
    ] = "auto",
    quantity: Annotated[Literal["power", "energy"], Query()] = "power",
    format: Annotated[Literal["json", "csv", "xlsx"], Query()] = "json",
) -> Any:
    start, end = _window(since, until)
    chosen = choose_resolution(start, end, resolution)
    subject = await resolve_subject(
        session, kind=subject_kind, subject_id=subject_id, scope=identity.scope
    )
    timezone = runtime.settings.timezone
    result = await load_series(
        session,
        subject=subject,
        since=start,
        until=end,
        resolution=chosen,
        quantity=quantity,
        timezone=timezone,
    )
    if format == "json":
        # Serialised once, without FastAPI validating a month of values again.
        return Response(result.model_dump_json(), media_type="application/json")
    columns, rows = table_rows(result, ZoneInfo(timezone))
    name = f"{subject_kind}-{subject_id}-{chosen}"
    if format == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow([header for _, header in columns])
        for row in rows:
            writer.writerow(["" if row[k] is None else row[k] for k, _ in columns])
        return Response(
            "\ufeff" + buffer.getvalue(),  # BOM: Excel opens UTF-8 CSV with Chinese correctly
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    if len(rows) > 1_048_575:
        raise Problem("too many rows for one Excel sheet: choose a coarser resolution", status=422)
    return Response(
        rows_to_xlsx(
            [Column(k, h, width=20 if k == "time" else 24) for k, h in columns], rows, title="曲线"
        ),
        media_type=XLSX_MEDIA_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"'},
    )


class Interval(BaseModel):
    kind: Literal["state", "alarm"]
    subject_kind: str
    subject_id: str
    label: str
    started_at: datetime
    ended_at: datetime | None
    detail: dict[str, Any]


class Timeline(BaseModel):
    enterprise_id: str
    since: datetime
    until: datetime
    intervals: list[Interval]


@router.get(
    "/timelines/enterprises/{enterprise_id}",
    summary="States of points and facilities, and alarms, as intervals (过程监控)",
    response_model=Timeline,
)
async def timeline(
    session: DbSession,
    identity: Reader,
    enterprise_id: str,
    since: From = None,
    until: To = None,
) -> Timeline:
    start, end = _window(since, until)
    await resolve_subject(
        session, kind="enterprise", subject_id=enterprise_id, scope=identity.scope
    )
    states = await session.execute(
        text(
            "SELECT subject_kind, subject_id, state, reason, started_at, ended_at, facility_id "
            "FROM state_interval WHERE enterprise_id = :e AND started_at < :end "
            "AND (ended_at IS NULL OR ended_at > :start) ORDER BY subject_kind, subject_id, "
            "started_at"
        ),
        {"e": enterprise_id, "start": start, "end": end},
    )
    intervals = [
        Interval(
            kind="state",
            subject_kind=r.subject_kind,
            subject_id=r.subject_id,
            label=STATE_ZH.get(r.state, r.state),
            started_at=r.started_at,
            ended_at=r.ended_at,
            detail={"state": r.state, "reason": r.reason, "facility_id": r.facility_id},
        )
        for r in states
    ]
    alarms = await session.execute(
        text(
            "SELECT alarm_id, rule_code, rule_name, subject_kind, subject_id, max_level, status, "
            "first_at, coalesce(recovered_at, CASE WHEN active THEN NULL ELSE last_at END) AS "
            "ended_at FROM alarm_record WHERE enterprise_id = :e AND first_at < :end "
            "AND coalesce(recovered_at, last_at, first_at) >= :start ORDER BY first_at"
        ),
        {"e": enterprise_id, "start": start, "end": end},
    )
    intervals += [
        Interval(
            kind="alarm",
            subject_kind=r.subject_kind or "group",
            subject_id=r.subject_id,
            label=r.rule_name or r.rule_code,
            started_at=r.first_at,
            ended_at=r.ended_at,
            detail={
                "alarm_id": r.alarm_id,
                "rule_code": r.rule_code,
                "level": r.max_level,
                "level_name": LEVEL_ZH.get(r.max_level),
                "status": r.status,
                "status_name": ALARM_STATUS_ZH.get(r.status, r.status),
            },
        )
        for r in alarms
    ]
    return Timeline(enterprise_id=enterprise_id, since=start, until=end, intervals=intervals)


class PartitionOut(BaseModel):
    table: str
    name: str
    start: datetime
    end: datetime
    rows_estimate: int
    bytes: int


class HistoryHealth(BaseModel):
    raw_retention_days: int
    partitions: list[PartitionOut]
    table_bytes: dict[str, int]


@router.get(
    "/history/partitions",
    summary="History partitions and table sizes (retention, capacity)",
    response_model=HistoryHealth,
)
async def partitions(
    runtime: CurrentRuntime, session: DbSession, identity: Operator
) -> HistoryHealth:
    found = await runtime.maintenance.partitions()
    sizes = {
        name: int(size)
        for name, size in await session.execute(
            text(
                "SELECT c.relname, coalesce(sum(pg_total_relation_size(i.inhrelid)), 0) "
                "+ pg_total_relation_size(c.oid) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'reporting' "
                "LEFT JOIN pg_inherits i ON i.inhparent = c.oid "
                "WHERE c.relname IN ('point_sample', 'rollup_15m', 'rollup_1h', 'rollup_1d', "
                "'latest_value') GROUP BY c.relname, c.oid"
            )
        )
    }
    return HistoryHealth(
        raw_retention_days=runtime.settings.reporting_raw_retention_days,
        partitions=[PartitionOut(**p.__dict__) for p in found],
        table_bytes=sizes,
    )


class RejectOut(BaseModel):
    day: Any
    point_id: str
    enterprise_id: str
    reason: str
    count: int
    first_data_time: datetime
    last_data_time: datetime


@router.get(
    "/history/rejects",
    summary="Readings the history refused (too old for the retention, too far in the future)",
)
async def rejects(session: DbSession, identity: Operator, page: PageParams) -> Page[RejectOut]:
    h = HISTORY_REJECT.c
    query = select(
        h.day, h.point_id, h.enterprise_id, h.reason, h.count, h.first_data_time, h.last_data_time
    ).order_by(h.day.desc(), h.point_id, h.reason)
    if not identity.scope.all:
        e = ENTERPRISE.c
        visible = select(e.id).where(
            identity.scope.where(district_column=e.district_code, enterprise_column=e.id)
        )
        query = query.where(h.enterprise_id.in_(visible))
    rows, total = await fetch_page(session, query, page)
    return Page.of([RejectOut(**r._asdict()) for r in rows], total, page)
