"""Alarm endpoints: the list, its Excel export, one alarm, statistics."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from ecowatt_kernel.app import DbSession
from ecowatt_kernel.excel import XLSX_MEDIA_TYPE, rows_to_xlsx
from ecowatt_kernel.identity import CurrentIdentity
from ecowatt_kernel.pagination import Page, PageParams
from fastapi import APIRouter
from fastapi.responses import Response

from ecowatt_alarm.alarms import service
from ecowatt_alarm.alarms.models import EXPORT_COLUMNS, AlarmFilters
from ecowatt_alarm.dependencies import Settings, View

router = APIRouter(tags=["alarms"])


@router.get("/alarms", summary="Live alarms and history, filtered and paginated")
async def list_alarms(
    identity: CurrentIdentity, session: DbSession, filters: AlarmFilters, page: PageParams
) -> Page[dict[str, Any]]:
    return await service.list_alarms(session=session, identity=identity, filters=filters, page=page)


@router.get("/alarms/export.xlsx", summary="Excel export of the filtered alarms")
async def export_alarms(
    identity: CurrentIdentity, session: DbSession, filters: AlarmFilters, settings: Settings
) -> Response:
    items = await service.export_rows(
        session=session,
        identity=identity,
        filters=filters,
        timezone=settings.timezone,
        max_rows=settings.alarm_export_max_rows,
    )
    # Building a workbook is CPU work: off the event loop, which keeps serving meanwhile.
    data = await asyncio.to_thread(rows_to_xlsx, EXPORT_COLUMNS, items, title="报警")
    return Response(
        data,
        media_type=XLSX_MEDIA_TYPE,
        headers={"Content-Disposition": 'attachment; filename="alarms.xlsx"'},
    )


@router.get(
    "/alarms/{alarm_id}",
    summary="One alarm with its evidence series, journal and links to its raw frames",
)
async def get_alarm(
    alarm_id: str, identity: CurrentIdentity, session: DbSession, view: View
) -> dict[str, Any]:
    return await service.alarm_detail(
        session=session, alarm_id=alarm_id, identity=identity, view=view
    )


@router.get("/statistics", summary="Alarm counts by rule, district, industry or day")
async def statistics(
    identity: CurrentIdentity,
    session: DbSession,
    filters: AlarmFilters,
    settings: Settings,
    by: Literal["rule", "district", "industry", "day", "level", "status"] = "rule",
) -> dict[str, Any]:
    items = await service.statistics(
        session=session, identity=identity, filters=filters, by=by, timezone=settings.timezone
    )
    return {"by": by, "items": items}
