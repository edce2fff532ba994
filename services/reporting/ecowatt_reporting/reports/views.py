"""Reports: definitions, generation on demand, listing, downloads, inbox, subscriptions.

Visibility: a caller whose scope is the whole city sees every report; a district officer
sees the reports of their districts (city-wide reports need the city scope); others see
none. Generating: city supervisors for the city or any district, district officers for
their own district.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Any, Literal

from ecowatt_kernel.app import DbSession
from ecowatt_kernel.excel import XLSX_MEDIA_TYPE
from ecowatt_kernel.identity import DataScope, Identity, Role, require_roles
from ecowatt_kernel.pagination import Page, PageParams, fetch_page
from ecowatt_kernel.problems import Conflict, Forbidden, NotFound, Problem
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlalchemy import ColumnElement, and_, delete, false, or_, select, true
from sqlalchemy.dialects.postgresql import insert

from ecowatt_reporting.reports.models import (
    DELIVERY,
    KIND_ZH,
    REPORT,
    SUBSCRIPTION,
    ReportOut,
    ReportRequest,
    SubscriptionIn,
    SubscriptionOut,
)
from ecowatt_reporting.reports.service import DEFINITIONS, inputs_of, version_of
from ecowatt_reporting.runtime import CurrentRuntime
from ecowatt_reporting.statistics.models import Period

router = APIRouter(tags=["reports"])

BUREAU = (Role.CITY_SUPERVISOR, Role.DISTRICT_OFFICER)
Bureau = Annotated[Identity, require_roles(*BUREAU)]
Supervisor = Annotated[Identity, require_roles(Role.CITY_SUPERVISOR)]
SUMMARY_COLUMNS = [c for c in REPORT.c if c.name not in ("xlsx", "pdf", "content")]


def _visible(scope: DataScope) -> ColumnElement[bool]:
    if scope.all:
        return true()
    if not scope.districts:
        return false()
    return and_(
        REPORT.c.district_code.is_not(None),
        scope.where(district_column=REPORT.c.district_code),
    )


def _out(row: Any, request: Request, *, full: bool = False) -> ReportOut:
    data = dict(row._mapping)
    base = str(request.url_for("report", report_id=str(data["id"])))
    links = {"self": base}
    if data["status"] == "done":
        links.update(xlsx=base + "/xlsx", pdf=base + "/pdf")
    return ReportOut(
        **{k: v for k, v in data.items() if k in ReportOut.model_fields and k != "inputs"},
        kind_name=KIND_ZH[data["kind"]],
        inputs=data["inputs"] if full else None,
        links=links,
    )


class DefinitionOut(BaseModel):
    kind: str
    kind_name: str
    version: int
    period: str
    sections: list[str]
    schedule: str


@router.get("/report-definitions", summary="What each report contains and when it is made")
async def definitions(identity: Bureau, runtime: CurrentRuntime) -> list[DefinitionOut]:
    at = runtime.settings.reporting_daily_at.strftime("%H:%M")
    schedule = {
        "daily": f"每天 {at} 生成前一日；当日临时报表定时刷新",
        "weekly": f"每周一 {at} 生成上一周（周一至周日）",
        "monthly": f"每月 1 日 {at} 生成上月",
    }
    return [
        DefinitionOut(
            kind=d.kind,
            kind_name=KIND_ZH[d.kind],
            version=d.version,
            period=d.period,
            sections=list(d.sections),
            schedule=schedule[d.kind],
        )
        for d in DEFINITIONS.values()
    ]


@router.get("/reports", summary="Generated reports, newest first")
async def list_reports(
    request: Request,
    session: DbSession,
    identity: Bureau,
    page: PageParams,
    kind: Literal["daily", "weekly", "monthly"] | None = None,
    since: Annotated[
        date | None, Query(alias="from", description="Periods starting on/after")
    ] = None,
    until: Annotated[date | None, Query(alias="to", description="Periods starting before")] = None,
    status: Literal["queued", "running", "done", "failed"] | None = None,
) -> Page[ReportOut]:
    conditions = [_visible(identity.scope)]
    if kind:
        conditions.append(REPORT.c.kind == kind)
    if since:
        conditions.append(REPORT.c.period_start >= since)
    if until:
        conditions.append(REPORT.c.period_start < until)
    if status:
        conditions.append(REPORT.c.status == status)
    query = (
        select(*SUMMARY_COLUMNS)
        .where(*conditions)
        .order_by(REPORT.c.period_start.desc(), REPORT.c.created_at.desc())
    )
    rows, total = await fetch_page(session, query, page)
    return Page.of([_out(r, request) for r in rows], total, page)


@router.post(
    "/reports",
    status_code=202,
    summary="Generate a report for any past (or the current) period; returns at once",
    response_model=ReportOut,
)
async def create_report(
    body: ReportRequest,
    request: Request,
    session: DbSession,
    identity: Bureau,
    runtime: CurrentRuntime,
) -> JSONResponse:
    if body.day > runtime.reports.today():
        raise Problem("the period has not started yet", status=422)
    if body.district_code is None and not identity.scope.all:
        raise Forbidden("city-wide reports need the city scope; give your `district_code`")
    if body.district_code is not None and not identity.scope.allows(district=body.district_code):
        raise Forbidden(f"district {body.district_code} is outside your data scope")
    report_id = await runtime.reports.request_report(
        kind=body.kind,
        day=body.day,
        district_code=body.district_code,
        trigger="manual",
        requested_by=identity.subject,
    )
    row = (await session.execute(select(*SUMMARY_COLUMNS).where(REPORT.c.id == report_id))).one()
    out = _out(row, request)
    return JSONResponse(
        out.model_dump(mode="json"), status_code=202, headers={"Location": out.links["self"]}
    )


class InboxItem(BaseModel):
    report: ReportOut
    channel: str
    delivered_at: Any
    via: str


@router.get("/reports/inbox", summary="Reports delivered to me or to one of my roles")
async def inbox(
    request: Request, session: DbSession, identity: Bureau, page: PageParams
) -> Page[InboxItem]:
    d = DELIVERY.c
    mine = or_(
        and_(d.recipient_kind == "user", d.recipient == identity.subject),
        and_(d.recipient_kind == "role", d.recipient.in_(sorted(r.value for r in identity.roles))),
    )
    query = (
        select(*SUMMARY_COLUMNS, d.channel, d.created_at.label("delivered_at"), d.recipient_kind)
        .join(DELIVERY, d.report_id == REPORT.c.id)
        .where(mine, d.channel == "inbox", _visible(identity.scope))
        .order_by(d.created_at.desc())
    )
    rows, total = await fetch_page(session, query, page)
    return Page.of(
        [
            InboxItem(
                report=_out(r, request),
                channel=r.channel,
                delivered_at=r.delivered_at,
                via=r.recipient_kind,
            )
            for r in rows
        ],
        total,
        page,
    )


async def _load(session: Any, report_id: uuid.UUID, identity: Identity, *columns: Any) -> Any:
    row = (
        await session.execute(
            select(*(columns or SUMMARY_COLUMNS)).where(
                REPORT.c.id == report_id, _visible(identity.scope)
            )
        )
    ).one_or_none()
    if row is None:
        raise NotFound(f"report {report_id} not found")
    return row


class ReportDetail(ReportOut):
    stale: bool | None = None
    """True when the data the report read have changed since it was generated."""


@router.get("/reports/{report_id}", name="report", summary="One report: status, progress, figures")
async def get_report(
    report_id: uuid.UUID,
    request: Request,
    session: DbSession,
    identity: Bureau,
    runtime: CurrentRuntime,
) -> ReportDetail:
    row = await _load(session, report_id, identity)
    out = _out(row, request, full=True)
    stale = None
    if row.status == "done" and row.inputs_version:
        definition = DEFINITIONS[row.kind]
        current = await inputs_of(
            session,
            period=Period(row.period_start, row.period_end, definition.period),
            timezone=runtime.settings.timezone,
            definition=definition,
        )
        stale = version_of(current) != row.inputs_version
    return ReportDetail(**out.model_dump(), stale=stale)


def _file(row: Any, column: str, media_type: str, suffix: str) -> Response:
    if row.status != "done":
        raise Conflict(f"the report is {row.status}: files exist once it is done")
    data = getattr(row, column)
    district = f"-{row.district_code}" if row.district_code else ""
    name = f"report-{row.kind}-{row.period_start}{district}.{suffix}"
    return Response(
        data,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/reports/{report_id}/xlsx", summary="The report as Excel")
async def report_xlsx(report_id: uuid.UUID, session: DbSession, identity: Bureau) -> Response:
    row = await _load(
        session, report_id, identity, REPORT.c.status, REPORT.c.kind, REPORT.c.period_start,
        REPORT.c.district_code, REPORT.c.xlsx,
    )  # fmt: skip
    return _file(row, "xlsx", XLSX_MEDIA_TYPE, "xlsx")


@router.get("/reports/{report_id}/pdf", summary="The report as PDF (charts, Chinese fonts)")
async def report_pdf(report_id: uuid.UUID, session: DbSession, identity: Bureau) -> Response:
    row = await _load(
        session, report_id, identity, REPORT.c.status, REPORT.c.kind, REPORT.c.period_start,
        REPORT.c.district_code, REPORT.c.pdf,
    )  # fmt: skip
    return _file(row, "pdf", "application/pdf", "pdf")


# --------------------------------------------------------------------------- subscriptions


@router.get("/subscriptions", summary="Report subscriptions (mine; all for supervisors)")
async def list_subscriptions(
    session: DbSession, identity: Bureau, page: PageParams
) -> Page[SubscriptionOut]:
    s = SUBSCRIPTION.c
    query = select(SUBSCRIPTION).order_by(s.created_at.desc())
    if not identity.has_any_role(Role.ADMIN, Role.CITY_SUPERVISOR):
        query = query.where(s.created_by == identity.subject)
    rows, total = await fetch_page(session, query, page)
    return Page.of([SubscriptionOut(**r._asdict()) for r in rows], total, page)


@router.post("/subscriptions", status_code=201, summary="Subscribe a person or a role to reports")
async def subscribe(body: SubscriptionIn, session: DbSession, identity: Bureau) -> SubscriptionOut:
    recipient = body.recipient or identity.subject
    supervisor = identity.has_any_role(Role.ADMIN, Role.CITY_SUPERVISOR)
    if body.recipient_kind == "role":
        try:
            Role(recipient)
        except ValueError:
            raise Problem(f"unknown role {recipient!r}", status=422) from None
    if not supervisor and (body.recipient_kind == "role" or recipient != identity.subject):
        raise Forbidden("you may subscribe yourself; roles and other people need a supervisor")
    if body.channel in ("webhook", "sms") and not body.target:
        raise Problem(f"channel {body.channel} needs a `target`", status=422)
    if body.channel == "webhook" and not (body.target or "").startswith(("https://", "http://")):
        raise Problem("a webhook target must be an http(s) URL", status=422)
    if body.district_code is None and not identity.scope.all:
        raise Forbidden("city reports need the city scope; give your `district_code`")
    if body.district_code is not None and not identity.scope.allows(district=body.district_code):
        raise Forbidden(f"district {body.district_code} is outside your data scope")
    values = {
        **body.model_dump(),
        "recipient": recipient,
        "id": uuid.uuid4(),
        "created_by": identity.subject,
        "active": True,
    }
    row = (
        await session.execute(insert(SUBSCRIPTION).values(**values).returning(SUBSCRIPTION))
    ).one()
    await session.commit()
    return SubscriptionOut(**row._asdict())


@router.delete("/subscriptions/{subscription_id}", status_code=204, summary="Unsubscribe")
async def unsubscribe(subscription_id: uuid.UUID, session: DbSession, identity: Bureau) -> Response:
    s = SUBSCRIPTION.c
    condition = s.id == subscription_id
    if not identity.has_any_role(Role.ADMIN, Role.CITY_SUPERVISOR):
        condition = and_(condition, s.created_by == identity.subject)
    result = await session.execute(delete(SUBSCRIPTION).where(condition))
    await session.commit()
    if not result.rowcount:  # type: ignore[attr-defined]
        raise NotFound(f"subscription {subscription_id} not found")
    return Response(status_code=204)
