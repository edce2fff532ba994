"""Compliance endpoints: verdicts, hourly statuses, the dashboard board, the holiday calendar,
and running the pass now."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime
from typing import Annotated, Any

from ecowatt_kernel.app import DbSession
from ecowatt_kernel.identity import CurrentIdentity, CurrentScope, Role, require_roles
from ecowatt_kernel.pagination import Page, PageParams, fetch_page
from ecowatt_kernel.problems import NotFound
from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert

from ecowatt_control_plan import access, audit
from ecowatt_control_plan.compliance.models import (
    STATUSES,
    EnterpriseHourRead,
    HolidayIn,
    HolidayRead,
    PassResult,
    StatusBoard,
    VerdictRead,
    enterprise_hour,
    holiday,
    verdict,
)
from ecowatt_control_plan.runtime import CurrentRuntime

router = APIRouter(tags=["compliance"])


@router.get("/compliance/verdicts", summary="Verdicts per target and hour, in your scope")
async def list_verdicts(
    db_session: DbSession,
    scope: CurrentScope,
    page: PageParams,
    alert_id: str | None = None,
    task_id: str | None = None,
    enterprise_id: str | None = None,
    verdict_is: str | None = Query(
        None, alias="verdict", description="compliant, non_compliant, unknown"
    ),
    action: str | None = None,
    since: Annotated[datetime | None, Query(alias="from")] = None,
    until: Annotated[datetime | None, Query(alias="to")] = None,
    final: bool | None = Query(None, description="true: only final hours"),
) -> Page[VerdictRead]:
    query = select(verdict).where(access.visible(scope, verdict))
    for column, value in (
        (verdict.c.alert_id, alert_id),
        (verdict.c.task_id, task_id),
        (verdict.c.enterprise_id, enterprise_id),
        (verdict.c.verdict, verdict_is),
        (verdict.c.action, action),
    ):
        if value:
            query = query.where(column == value)
    if since:
        query = query.where(verdict.c.hour_start >= since)
    if until:
        query = query.where(verdict.c.hour_start < until)
    if final is not None:
        query = query.where(verdict.c.provisional.is_(not final))
    query = query.order_by(
        verdict.c.hour_start.desc(), verdict.c.enterprise_id, verdict.c.task_id, verdict.c.target_id
    )
    rows, total = await fetch_page(db_session, query, page)
    return Page[VerdictRead].of(
        [VerdictRead.model_validate(dict(r._mapping)) for r in rows], total, page
    )


@router.get("/compliance/hours", summary="Enterprise status per hour, in your scope")
async def list_hours(
    db_session: DbSession,
    scope: CurrentScope,
    page: PageParams,
    alert_id: str | None = None,
    enterprise_id: str | None = None,
    district: str | None = None,
    status: str | None = Query(None, description="One of " + "、".join(STATUSES)),
    since: Annotated[datetime | None, Query(alias="from")] = None,
    until: Annotated[datetime | None, Query(alias="to")] = None,
) -> Page[EnterpriseHourRead]:
    query = select(enterprise_hour).where(access.visible(scope, enterprise_hour))
    for column, value in (
        (enterprise_hour.c.alert_id, alert_id),
        (enterprise_hour.c.enterprise_id, enterprise_id),
        (enterprise_hour.c.district_code, district),
        (enterprise_hour.c.status, status),
    ):
        if value:
            query = query.where(column == value)
    if since:
        query = query.where(enterprise_hour.c.hour_start >= since)
    if until:
        query = query.where(enterprise_hour.c.hour_start < until)
    query = query.order_by(enterprise_hour.c.hour_start.desc(), enterprise_hour.c.enterprise_id)
    rows, total = await fetch_page(db_session, query, page)
    return Page[EnterpriseHourRead].of(
        [EnterpriseHourRead.model_validate(dict(r._mapping)) for r in rows], total, page
    )


@router.get("/compliance/board", summary="Statuses of one hour for the dashboard (default: latest)")
async def board(
    db_session: DbSession,
    scope: CurrentScope,
    alert_id: str | None = None,
    hour: Annotated[
        datetime | None, Query(description="Hour start; default the latest judged")
    ] = None,
) -> StatusBoard:
    condition = [access.visible(scope, enterprise_hour)]
    if alert_id:
        condition.append(enterprise_hour.c.alert_id == alert_id)
    if hour is None:
        hour = await db_session.scalar(
            select(func.max(enterprise_hour.c.hour_start)).where(*condition)
        )
    if hour is None:
        return StatusBoard(
            hour_start=None,
            provisional=False,
            totals=dict.fromkeys(STATUSES, 0),
            by_district={},
            enterprises=[],
        )
    rows = (
        (
            await db_session.execute(
                select(enterprise_hour)
                .where(*condition, enterprise_hour.c.hour_start == hour)
                .order_by(enterprise_hour.c.district_code, enterprise_hour.c.enterprise_id)
            )
        )
        .mappings()
        .all()
    )
    totals = dict.fromkeys(STATUSES, 0)
    by_district: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(STATUSES, 0))
    for r in rows:
        totals[r["status"]] += 1
        by_district[r["district_code"]][r["status"]] += 1
    return StatusBoard(
        hour_start=hour,
        provisional=any(r["provisional"] for r in rows),
        totals=totals,
        by_district=dict(by_district),
        enterprises=[EnterpriseHourRead.model_validate(dict(r)) for r in rows],
    )


@router.get(
    "/compliance/enterprises/{enterprise_id}/series",
    summary="Baseline against actual, hour by hour",
)
async def series(
    enterprise_id: str,
    db_session: DbSession,
    scope: CurrentScope,
    since: Annotated[datetime | None, Query(alias="from")] = None,
    until: Annotated[datetime | None, Query(alias="to")] = None,
) -> list[dict[str, Any]]:
    query = select(enterprise_hour).where(
        enterprise_hour.c.enterprise_id == enterprise_id, access.visible(scope, enterprise_hour)
    )
    if since:
        query = query.where(enterprise_hour.c.hour_start >= since)
    if until:
        query = query.where(enterprise_hour.c.hour_start < until)
    rows = (await db_session.execute(query.order_by(enterprise_hour.c.hour_start))).mappings().all()
    if not rows and not scope.allows(enterprise_id=enterprise_id):
        raise NotFound(f"enterprise {enterprise_id} not found")
    return [
        {
            "hour_start": r["hour_start"],
            "status": r["status"],
            "provisional": r["provisional"],
            "baseline_kwh": r["baseline_kwh"],
            "actual_kwh": r["actual_kwh"],
        }
        for r in rows
    ]


@router.post(
    "/compliance/run",
    summary="Run the compliance pass now (normally every few minutes)",
    dependencies=[access.CanOperate],
)
async def run_now(
    request: Request, runtime: CurrentRuntime, identity: CurrentIdentity
) -> PassResult:
    result: PassResult = await runtime.judge.run()
    async with runtime.database.transaction() as session:
        await runtime.audit(
            session,
            identity=identity,
            action="control_plan.compliance.run",
            resource="compliance",
            details=result.model_dump(),
            request=request,
        )
    audit.mark_committed(session)
    runtime.relay.wake()
    return result


@router.get("/holidays", summary="Days left out of baselines (the bureau's holiday calendar)")
async def list_holidays(
    db_session: DbSession,
    _: CurrentIdentity,
    year: Annotated[int | None, Query(ge=2000, le=2100, description="calendar year")] = None,
) -> list[HolidayRead]:
    query = select(holiday).order_by(holiday.c.day)
    if year:
        query = query.where(holiday.c.day >= date(year, 1, 1), holiday.c.day < date(year + 1, 1, 1))
    return [
        HolidayRead.model_validate(dict(r)) for r in (await db_session.execute(query)).mappings()
    ]


@router.put(
    "/holidays/{day}",
    summary="Mark a day as a holiday",
    dependencies=[require_roles(Role.CITY_SUPERVISOR)],
)
async def put_holiday(
    day: date,
    body: HolidayIn,
    request: Request,
    db_session: DbSession,
    runtime: CurrentRuntime,
    identity: CurrentIdentity,
) -> HolidayRead:
    actor = access.actor_of(identity)
    statement = insert(holiday).values(day=day, name=body.name, updated_by=actor)
    await db_session.execute(
        statement.on_conflict_do_update(
            index_elements=["day"], set_={"name": body.name, "updated_by": actor}
        )
    )
    await runtime.audit(
        db_session,
        identity=identity,
        action="control_plan.holiday.put",
        resource=f"holiday:{day.isoformat()}",
        details={"name": body.name},
        request=request,
    )
    await runtime.commit(db_session)
    return HolidayRead(day=day, name=body.name, updated_by=actor)


@router.delete(
    "/holidays/{day}",
    status_code=204,
    summary="Remove a holiday",
    dependencies=[require_roles(Role.CITY_SUPERVISOR)],
)
async def delete_holiday(
    day: date,
    request: Request,
    db_session: DbSession,
    runtime: CurrentRuntime,
    identity: CurrentIdentity,
) -> Response:
    result = await db_session.execute(holiday.delete().where(holiday.c.day == day))
    if not getattr(result, "rowcount", 0):
        raise NotFound(f"{day} is not a holiday")
    await runtime.audit(
        db_session,
        identity=identity,
        action="control_plan.holiday.delete",
        resource=f"holiday:{day.isoformat()}",
        details={},
        request=request,
    )
    await runtime.commit(db_session)
    return Response(status_code=204)
