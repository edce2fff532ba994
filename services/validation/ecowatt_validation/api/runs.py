"""Unbound readings (data no point binds) and the day-close runs (list, and re-run a past day)."""

from __future__ import annotations

from datetime import date
from typing import Any

from ecowatt_kernel.app import DbSession
from ecowatt_kernel.excel import Column
from ecowatt_kernel.identity import CurrentIdentity, CurrentScope, Role, require_roles
from ecowatt_kernel.pagination import Page, PageParams, fetch_page
from ecowatt_kernel.problems import NotFound, Problem
from fastapi import APIRouter, Request
from pydantic import BaseModel
from sqlalchemy import ColumnElement, and_, select

from ecowatt_validation.api.common import (
    Format,
    export_rows,
    scoped,
    xlsx_download,
)
from ecowatt_validation.models import DAILY_RUNS, ENTERPRISES, UNBOUND
from ecowatt_validation.runtime import CurrentRuntime

router = APIRouter(tags=["validation"])


@router.get("/unbound", summary="Readings and values that no point binds, by device and day")
async def unbound(
    request: Request,
    identity: CurrentIdentity,
    scope: CurrentScope,
    session: DbSession,
    page: PageParams,
    day: date | None = None,
    format: Format = "json",
) -> Any:
    u, e = UNBOUND.c, ENTERPRISES.c
    conditions: list[ColumnElement[bool]] = []
    if day:
        conditions.append(u.day == day)
    if not scope.all:
        # Readings of unknown devices belong to nobody: only city-wide callers see them.
        conditions.append(
            and_(
                u.enterprise_id.is_not(None),
                u.enterprise_id.in_(select(e.id).where(scoped(scope, e.district_code, e.id))),
            )
        )
    query = select(UNBOUND).where(*conditions).order_by(u.day.desc(), u.mn, u.reason, u.detail)
    if format == "xlsx":
        columns = [
            Column("day", "日期", width=12),
            Column("mn", "设备MN", width=28),
            Column("reason", "原因", width=16),
            Column("detail", "回路/编码", width=16),
            Column("enterprise_id", "企业编号", width=20),
            Column("count", "条数", width=10),
            Column("last_seen_at", "最近接收", width=20),
        ]
        return await xlsx_download(
            columns,
            (dict(r._mapping) for r in await export_rows(session, query)),
            "未绑定数据",
            "unbound",
        )
    rows, total = await fetch_page(session, query, page)
    return Page.of([dict(r._mapping) for r in rows], total, page)


class RunRequest(BaseModel):
    day: date


@router.post(
    "/runs",
    summary="Re-run the day-close rules for a past day",
    dependencies=[require_roles(Role.CITY_SUPERVISOR)],
    status_code=200,
)
async def rerun(body: RunRequest, validation: CurrentRuntime) -> dict[str, Any]:
    if body.day >= validation.checks.today():
        raise Problem(
            "only a closed (past) day can be run", status=422, type_suffix="day-not-closed"
        )
    stats = await validation.run_day(body.day, "api")
    return {"day": body.day, **stats}


class ArchiveComplete(BaseModel):
    enterprise_id: str


@router.post(
    "/archive/complete",
    summary="Declare an enterprise's archive complete: judge it now, without the settle time",
    dependencies=[require_roles(Role.CITY_SUPERVISOR, Role.OM_OPERATOR)],
)
async def archive_complete(
    body: ArchiveComplete, identity: CurrentIdentity, validation: CurrentRuntime
) -> dict[str, Any]:
    enterprise = validation.view.enterprise(body.enterprise_id)
    if enterprise is None or not identity.scope.allows(
        district=enterprise.district_code, enterprise_id=body.enterprise_id
    ):
        raise NotFound(f"enterprise {body.enterprise_id} not found")
    validation.checks.complete(body.enterprise_id)
    events = await validation.checks.check_archive()
    return {"enterprise_id": body.enterprise_id, "events": events}


@router.get("/runs", summary="Day-close runs, newest first")
async def runs(
    identity: CurrentIdentity, session: DbSession, page: PageParams
) -> Page[dict[str, Any]]:
    query = select(DAILY_RUNS).order_by(DAILY_RUNS.c.id.desc())
    rows, total = await fetch_page(session, query, page)
    return Page.of([dict(r._mapping) for r in rows], total, page)
