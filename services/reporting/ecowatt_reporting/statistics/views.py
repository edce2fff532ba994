"""Statistics over any period, filtered by district, zone, industry and grade, in scope."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from ecowatt_kernel.app import DbSession
from ecowatt_kernel.excel import XLSX_MEDIA_TYPE
from ecowatt_kernel.identity import Identity, Role, require_roles
from ecowatt_kernel.problems import Problem
from fastapi import APIRouter, Query
from fastapi.responses import Response

from ecowatt_reporting.reports.render import ReportDocument, render_xlsx
from ecowatt_reporting.runtime import CurrentRuntime
from ecowatt_reporting.statistics.models import Filters, Period, Statistics
from ecowatt_reporting.statistics.service import compute_statistics

router = APIRouter(tags=["statistics"])

Viewer = Annotated[
    Identity,
    require_roles(
        Role.CITY_SUPERVISOR, Role.DISTRICT_OFFICER, Role.OM_OPERATOR, Role.ENTERPRISE_USER
    ),
]
MAX_DAYS = 366


def period_from(
    period: str, day: date | None, start: date | None, end: date | None, today: date
) -> Period:
    """The period a query asks for: a day/week/month around `day`, or [start, end)."""
    if period == "custom":
        if start is None or end is None:
            raise Problem("a custom period needs `start` and `end` (local dates)", status=422)
        if end <= start:
            raise Problem("`end` must be after `start` (end is exclusive)", status=422)
        if (end - start).days > MAX_DAYS:
            raise Problem(f"a period may span at most {MAX_DAYS} days", status=422)
        return Period(start, end, "custom")
    return Period.of(period, day or today)  # type: ignore[arg-type]


@router.get(
    "/statistics",
    summary="Online rate, completeness, alarms, timeliness, offenders, findings, electricity",
    response_model=Statistics,
    responses={200: {"content": {XLSX_MEDIA_TYPE: {}}}},
)
async def statistics(
    runtime: CurrentRuntime,
    session: DbSession,
    identity: Viewer,
    period: Annotated[
        Literal["day", "week", "month", "custom"],
        Query(description="day, ISO week or calendar month holding `day`; or custom"),
    ] = "day",
    day: Annotated[date | None, Query(description="Local date (default: today)")] = None,
    start: Annotated[date | None, Query(description="custom: first local date")] = None,
    end: Annotated[date | None, Query(description="custom: local date after the last")] = None,
    district: Annotated[list[str] | None, Query(description="GB/T 2260 codes")] = None,
    zone: str | None = None,
    industry: Annotated[str | None, Query(description="GB/T 4754 code or prefix")] = None,
    grade: Annotated[
        Literal["A", "B", "C", "D", "leading", "none"] | None, Query(description="绩效分级")
    ] = None,
    format: Annotated[Literal["json", "xlsx"], Query()] = "json",
) -> Any:
    tz = ZoneInfo(runtime.settings.timezone)
    today = datetime.now(UTC).astimezone(tz).date()
    chosen = period_from(period, day, start, end, today)
    filters = Filters(district=district, zone=zone, industry=industry, grade=grade)
    result = await compute_statistics(
        session, period=chosen, filters=filters, scope=identity.scope, params=runtime.reports.params
    )
    if format == "json":
        return result
    document = ReportDocument(
        title=f"{chosen.label()}用电监管统计",
        kind_name="统计",
        period_label=chosen.label(),
        scope_label="所选范围",
        generated_at=datetime.now(UTC).astimezone(tz),
        definition="statistics",
        inputs_version="-",
        provisional=chosen.end > today,
        notes=(),
        top_n=20,
        daily_charts=chosen.days > 1,
    )
    last = chosen.end - timedelta(days=1)
    return Response(
        render_xlsx(result, document),
        media_type=XLSX_MEDIA_TYPE,
        headers={
            "Content-Disposition": f'attachment; filename="statistics-{chosen.start}-{last}.xlsx"'
        },
    )
