"""Supervision-issue endpoints: the district's list, evidence and chart, feedback, verification,
closing (销号), comments, Excel."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ecowatt_kernel.app import DbSession
from ecowatt_kernel.excel import Column, rows_to_xlsx
from ecowatt_kernel.identity import CurrentIdentity, CurrentScope, Identity, Role
from ecowatt_kernel.pagination import Page, PageParams, fetch_page
from ecowatt_kernel.problems import Forbidden
from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_control_plan import access, charts
from ecowatt_control_plan.issues import service
from ecowatt_control_plan.issues.models import (
    STATE_ZH,
    VERIFY_ZH,
    Feedback,
    IssueDetail,
    IssueRead,
    IssueState,
    JournalRead,
    Note,
    Verification,
    issue,
    journal,
)
from ecowatt_control_plan.measures.views import attachment
from ecowatt_control_plan.runtime import CurrentRuntime, Runtime

router = APIRouter(prefix="/issues", tags=["supervision issues"])


def _query(
    scope: Any,
    state: str | None,
    category: str | None,
    alert_id: str | None,
    enterprise_id: str | None,
    district: str | None,
) -> Any:
    query = select(issue).where(access.visible(scope, issue))
    for column, value in (
        (issue.c.state, state),
        (issue.c.category, category),
        (issue.c.alert_id, alert_id),
        (issue.c.enterprise_id, enterprise_id),
        (issue.c.district_code, district),
    ):
        if value:
            query = query.where(column == value)
    return query.order_by(issue.c.opened_at.desc(), issue.c.id)


@router.get("", summary="Issues in your scope (a district: its own; an enterprise: its own)")
async def list_issues(
    db_session: DbSession,
    scope: CurrentScope,
    page: PageParams,
    state: IssueState | None = None,
    category: str | None = Query(None, description="未开启治污设备, 未响应停产, 未响应减产"),
    alert_id: str | None = None,
    enterprise_id: str | None = None,
    district: str | None = None,
) -> Page[IssueRead]:
    query = _query(scope, state, category, alert_id, enterprise_id, district)
    rows, total = await fetch_page(db_session, query, page)
    return Page[IssueRead].of(
        [IssueRead.model_validate(dict(r._mapping)) for r in rows], total, page
    )


_COLUMNS = (
    Column("id", "问题编号", width=16),
    Column("enterprise_name", "企业名称", width=28),
    Column("district_code", "区县代码", width=10),
    Column("category", "问题类型", width=16),
    Column("state", "处理状态", width=10),
    Column("first_hour", "首次时段", width=18),
    Column("last_hour", "最近时段", width=18),
    Column("hours", "违规小时数", width=10),
    Column("verification", "核查结果", width=14),
    Column("closed_at", "销号时间", width=18),
)


@router.get("/export.xlsx", summary="Issues as Excel (问题清单)", response_class=Response)
async def export_issues(
    db_session: DbSession,
    scope: CurrentScope,
    state: IssueState | None = None,
    alert_id: str | None = None,
    district: str | None = None,
) -> Response:
    rows = [
        dict(r)
        | {
            "state": STATE_ZH[r["state"]],
            "verification": VERIFY_ZH.get(r["verification"] or "", None),
        }
        for r in (
            await db_session.execute(_query(scope, state, None, alert_id, None, district))
        ).mappings()
    ]
    return attachment(rows_to_xlsx(_COLUMNS, rows, title="问题清单"), "control-issues.xlsx")


async def _detail(db_session: AsyncSession, scope: Any, issue_id: str) -> IssueDetail:
    row = await service.load(db_session, issue_id=issue_id, condition=access.visible(scope, issue))
    entries = (
        await db_session.execute(
            select(journal).where(journal.c.issue_id == issue_id).order_by(journal.c.id)
        )
    ).mappings()
    return IssueDetail.model_validate(
        row | {"journal": [JournalRead.model_validate(dict(e)) for e in entries]}
    )


@router.get("/{issue_id}", summary="One issue with its evidence and journal")
async def read_issue(issue_id: str, db_session: DbSession, scope: CurrentScope) -> IssueDetail:
    return await _detail(db_session, scope, issue_id)


@router.get(
    "/{issue_id}/chart.svg",
    summary="Evidence chart: baseline against actual for each violating hour",
    response_class=Response,
    responses={200: {"content": {"image/svg+xml": {}}}},
)
async def issue_chart(issue_id: str, db_session: DbSession, scope: CurrentScope) -> Response:
    row = await service.load(db_session, issue_id=issue_id, condition=access.visible(scope, issue))
    hours = row["evidence"]["hours"]
    labels = [datetime.fromisoformat(h["hour"]).strftime("%m-%d %H:%M") for h in hours]
    svg = charts.bars(
        title=f"{row['enterprise_name'] or row['enterprise_id']}：{row['category']}",
        labels=labels,
        series=[
            ("基线电量 (kWh)", [h.get("baseline_kwh") for h in hours], "#9aa5b1"),
            ("实际电量 (kWh)", [h.get("actual_kwh") for h in hours], "#d64545"),
        ],
    )
    return Response(svg, media_type="image/svg+xml")


async def _step(
    request: Request,
    db_session: AsyncSession,
    runtime: Runtime,
    identity: Identity,
    issue_id: str,
    action: str,
    text: str | None,
    details: dict[str, Any],
) -> IssueDetail:
    row = await service.load(
        db_session, issue_id=issue_id, condition=access.visible(identity.scope, issue), lock=True
    )
    await service.act(
        db_session,
        row=row,
        action=action,
        actor=access.actor_of(identity),
        role=access.role_of(identity),
        text=text,
        details=details,
        now=runtime.now(),
    )
    await runtime.audit(
        db_session,
        identity=identity,
        action=f"control_plan.issue.{action}",
        resource=f"issue:{issue_id}",
        details=details | {"text": text},
        request=request,
    )
    await runtime.commit(db_session)
    return await _detail(db_session, identity.scope, issue_id)


@router.post(
    "/{issue_id}/feedback", summary="The enterprise (or its district) explains what happened"
)
async def feedback(
    issue_id: str,
    body: Feedback,
    request: Request,
    db_session: DbSession,
    runtime: CurrentRuntime,
    identity: CurrentIdentity,
) -> IssueDetail:
    if not identity.has_any_role(
        Role.ADMIN,
        Role.ENTERPRISE_USER,
        Role.DISTRICT_OFFICER,
        Role.OM_OPERATOR,
        Role.CITY_SUPERVISOR,
    ):
        raise Forbidden("feedback is given by the enterprise, its district or its O&M company")
    return await _step(
        request,
        db_session,
        runtime,
        identity,
        issue_id,
        "feedback",
        body.text,
        {"cause": body.cause},
    )


@router.post(
    "/{issue_id}/verify",
    summary="The district verifies (核查): confirmed, rectified, equipment fault or false positive",
    dependencies=[access.CanHandleIssues],
)
async def verify(
    issue_id: str,
    body: Verification,
    request: Request,
    db_session: DbSession,
    runtime: CurrentRuntime,
    identity: CurrentIdentity,
) -> IssueDetail:
    return await _step(
        request,
        db_session,
        runtime,
        identity,
        issue_id,
        "verify",
        body.note,
        {"result": body.result},
    )


@router.post(
    "/{issue_id}/close",
    summary="Close (销号) a verified issue",
    dependencies=[access.CanHandleIssues],
)
async def close(
    issue_id: str,
    body: Note,
    request: Request,
    db_session: DbSession,
    runtime: CurrentRuntime,
    identity: CurrentIdentity,
) -> IssueDetail:
    return await _step(request, db_session, runtime, identity, issue_id, "close", body.text, {})


@router.post("/{issue_id}/comments", summary="A note in the journal")
async def comment(
    issue_id: str,
    body: Note,
    request: Request,
    db_session: DbSession,
    runtime: CurrentRuntime,
    identity: CurrentIdentity,
) -> IssueDetail:
    return await _step(request, db_session, runtime, identity, issue_id, "comment", body.text, {})
