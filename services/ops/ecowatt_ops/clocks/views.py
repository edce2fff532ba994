"""The service levels and the working-day calendar."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from ecowatt_kernel.app import DbSession
from ecowatt_kernel.problems import NotFound
from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel
from sqlalchemy.dialects.postgresql import insert

from ecowatt_ops.clocks.models import (
    LEVEL_ZH,
    REQUEST_KIND_ZH,
    REQUEST_SLAS,
    CalendarDayIn,
    CalendarDayOut,
    CalendarYear,
    Level,
    RequestKind,
    calendar_day,
    incident_allowances,
)
from ecowatt_ops.clocks.service import calendar_year, load_calendar
from ecowatt_ops.desk.access import Calendar, People, publish_audit
from ecowatt_ops.desk.runtime import Runtime
from ecowatt_ops.support.service import recompute_deadlines

__all__ = ["router"]

router = APIRouter(tags=["service levels"])
Day = Annotated[date, Path(description="YYYY-MM-DD", ge=date(2000, 1, 1), le=date(2100, 12, 31))]


class LevelSla(BaseModel):
    level: Level
    level_name: str
    response_min: float
    resolution_min: float
    hardware_resolution_min: float


class KindSla(BaseModel):
    kind: RequestKind
    kind_name: str
    sla: str
    working_minutes: float
    stops_on: str


class ServiceLevels(BaseModel):
    """The clocks the desk measures (see docs/ops-desk.md)."""

    incident_levels: list[LevelSla]
    request_kinds: list[KindSla]
    workday_start: str
    workday_end: str
    warning_share: float


@router.get(
    "/sla",
    summary="The service levels: incident levels and request kinds",
    response_model=ServiceLevels,
)
async def service_levels(_: People, runtime: Runtime) -> ServiceLevels:
    settings = runtime.settings
    minutes = settings.ops_critical_response_min
    day_min = (
        settings.ops_workday_end.hour * 60
        + settings.ops_workday_end.minute
        - settings.ops_workday_start.hour * 60
        - settings.ops_workday_start.minute
    )
    levels = []
    for level in Level:
        response, resolution = incident_allowances(
            level, hardware=False, critical_response_min=minutes
        )
        hardware = incident_allowances(level, hardware=True, critical_response_min=minutes)[1]
        levels.append(
            LevelSla(
                level=level,
                level_name=LEVEL_ZH[level],
                response_min=response.total_seconds() / 60,
                resolution_min=resolution.total_seconds() / 60,
                hardware_resolution_min=hardware.total_seconds() / 60,
            )
        )
    kinds = [
        KindSla(
            kind=kind,
            kind_name=REQUEST_KIND_ZH[kind],
            sla=sla.text,
            working_minutes=sla.working_minutes
            if sla.working_minutes is not None
            else sla.working_days * day_min,
            stops_on=sla.stops_on,
        )
        for kind, sla in REQUEST_SLAS.items()
    ]
    return ServiceLevels(
        incident_levels=levels,
        request_kinds=kinds,
        workday_start=settings.ops_workday_start.strftime("%H:%M"),
        workday_end=settings.ops_workday_end.strftime("%H:%M"),
        warning_share=settings.ops_escalation_warning,
    )


@router.get(
    "/calendar",
    summary="A year's working days: holidays, make-up working days and the desk's overrides",
    response_model=CalendarYear,
)
async def get_calendar(
    _: People,
    session: DbSession,
    runtime: Runtime,
    year: Annotated[int, Query(ge=2004, le=2100)],
) -> CalendarYear:
    calendar = await load_calendar(session=session, settings=runtime.settings)
    return calendar_year(calendar=calendar, year=year)


async def _recompute(session: DbSession, runtime: Runtime) -> int:
    calendar = await load_calendar(session=session, settings=runtime.settings)
    return await recompute_deadlines(
        session=session,
        calendar=calendar,
        warning=runtime.settings.ops_escalation_warning,
        now=runtime.now(),
    )


@router.put(
    "/calendar/days/{day}",
    summary="Set a day as a working day or a holiday (e.g. next year's schedule, published "
    "before the calendar package knows it); open requests' deadlines are recomputed",
    response_model=CalendarDayOut,
)
async def set_day(
    day: Day,
    body: CalendarDayIn,
    request: Request,
    identity: Calendar,
    session: DbSession,
    runtime: Runtime,
) -> CalendarDayOut:
    values = {"workday": body.workday, "name": body.name, "set_by": identity.subject}
    await session.execute(
        insert(calendar_day)
        .values(day=day, set_at=runtime.now(), **values)
        .on_conflict_do_update(index_elements=["day"], set_=values | {"set_at": runtime.now()})
    )
    moved = await _recompute(session, runtime)
    await session.commit()
    await publish_audit(
        request,
        identity=identity,
        action="calendar.set",
        resource=f"calendar:{day.isoformat()}",
        details={"workday": body.workday, "name": body.name, "requests_moved": moved},
    )
    return CalendarDayOut(day=day, workday=body.workday, name=body.name, source="override")


@router.delete(
    "/calendar/days/{day}",
    summary="Remove the desk's setting of a day (the official calendar applies again)",
    status_code=204,
)
async def clear_day(
    day: Day, request: Request, identity: Calendar, session: DbSession, runtime: Runtime
) -> Response:
    result = await session.execute(calendar_day.delete().where(calendar_day.c.day == day))
    if not result.rowcount:  # type: ignore[attr-defined]
        raise NotFound(f"no setting for {day.isoformat()}")
    moved = await _recompute(session, runtime)
    await session.commit()
    await publish_audit(
        request,
        identity=identity,
        action="calendar.clear",
        resource=f"calendar:{day.isoformat()}",
        details={"requests_moved": moved},
    )
    return Response(status_code=204)
