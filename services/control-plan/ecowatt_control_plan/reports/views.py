"""Report endpoints of a control period: the data for the UI (JSON) and the Excel workbooks."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from ecowatt_kernel.app import DbSession
from ecowatt_kernel.identity import CurrentScope
from fastapi import APIRouter, Query, Response

from ecowatt_control_plan.measures.views import attachment
from ecowatt_control_plan.reports import service
from ecowatt_control_plan.runtime import CurrentRuntime

router = APIRouter(prefix="/alerts/{alert_id}/reports", tags=["reports"])
_XLSX: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {}}}
}


@router.get("/launch", summary="Launch notice: listed enterprises by district, industry, grade")
async def launch(
    alert_id: str, db_session: DbSession, runtime: CurrentRuntime, scope: CurrentScope
) -> dict[str, Any]:
    return await service.launch_notice(
        db_session, alert_id=alert_id, view=runtime.view, scope=scope
    )


@router.get(
    "/launch.xlsx", summary="Launch notice as Excel", response_class=Response, responses=_XLSX
)
async def launch_xlsx(
    alert_id: str, db_session: DbSession, runtime: CurrentRuntime, scope: CurrentScope
) -> Response:
    data = await service.launch_notice(
        db_session, alert_id=alert_id, view=runtime.view, scope=scope
    )
    return attachment(await asyncio.to_thread(service.launch_xlsx, data), f"launch-{alert_id}.xlsx")


@router.get("/daily", summary="Daily execution report of one local day")
async def daily(
    alert_id: str,
    db_session: DbSession,
    runtime: CurrentRuntime,
    scope: CurrentScope,
    day: Annotated[date | None, Query(description="Local day; default today")] = None,
) -> dict[str, Any]:
    tz = ZoneInfo(runtime.settings.timezone)
    return await service.daily(
        db_session,
        alert_id=alert_id,
        day=day or runtime.now().astimezone(tz).date(),
        tz=tz,
        view=runtime.view,
        scope=scope,
    )


@router.get(
    "/daily.xlsx",
    summary="Daily execution report as Excel",
    response_class=Response,
    responses=_XLSX,
)
async def daily_xlsx(
    alert_id: str,
    db_session: DbSession,
    runtime: CurrentRuntime,
    scope: CurrentScope,
    day: date | None = None,
) -> Response:
    data = await daily(alert_id, db_session, runtime, scope, day)
    return attachment(
        await asyncio.to_thread(service.daily_xlsx, data), f"daily-{alert_id}-{data['day']}.xlsx"
    )


@router.get("/assessment", summary="End-of-event assessment (electricity as the emission proxy)")
async def assessment(
    alert_id: str, db_session: DbSession, runtime: CurrentRuntime, scope: CurrentScope
) -> dict[str, Any]:
    return await service.assessment(db_session, alert_id=alert_id, view=runtime.view, scope=scope)


@router.get(
    "/assessment.xlsx", summary="Assessment as Excel", response_class=Response, responses=_XLSX
)
async def assessment_xlsx(
    alert_id: str, db_session: DbSession, runtime: CurrentRuntime, scope: CurrentScope
) -> Response:
    data = await service.assessment(db_session, alert_id=alert_id, view=runtime.view, scope=scope)
    return attachment(
        await asyncio.to_thread(service.assessment_xlsx, data), f"assessment-{alert_id}.xlsx"
    )
