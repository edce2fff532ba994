"""Support-request endpoints: raise, list, export, read, the workflow steps, similar cases,
knowledge-base links. Every query is filtered by the caller's data scope."""

from __future__ import annotations

import inspect
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from ecowatt_kernel.app import DbSession
from ecowatt_kernel.excel import XLSX_MEDIA_TYPE, Column, Sheet, xlsx_response
from ecowatt_kernel.identity import Identity
from ecowatt_kernel.pagination import Page, PageParams, fetch_page
from ecowatt_kernel.times import LocalDateTime
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel

from ecowatt_ops.clocks.models import RequestKind
from ecowatt_ops.clocks.service import load_calendar
from ecowatt_ops.desk.access import Actor, Editors, Operators, People, Requesters, publish_audit
from ecowatt_ops.desk.exports import EXPORT_LIMIT, local_time, safe_row
from ecowatt_ops.desk.runtime import DeskRuntime, Runtime
from ecowatt_ops.kb.models import LinkIn, SimilarCases
from ecowatt_ops.kb.service import link_case, similar_cases
from ecowatt_ops.support.models import Accept, Reply, RequestCreate, RequestDetail, RequestRead
from ecowatt_ops.support.service import (
    RequestAction,
    RequestFilters,
    create_request,
    load_request,
    request_detail,
    request_query,
    request_transition,
    scope_condition,
    to_read,
)

__all__ = ["router"]

router = APIRouter(tags=["support requests"])


def _filters(
    status: Annotated[
        Literal["submitted", "accepted", "answered", "resolved", "closed", "rejected", "withdrawn"]
        | None,
        Query(),
    ] = None,
    open_only: Annotated[
        bool | None, Query(alias="open", description="true: submitted, accepted or answered")
    ] = None,
    kind: Annotated[RequestKind | None, Query()] = None,
    enterprise_id: Annotated[str | None, Query(max_length=128)] = None,
    assignee: Annotated[str | None, Query(max_length=128)] = None,
    since: Annotated[
        LocalDateTime | None, Query(alias="from", description="received at or after")
    ] = None,
    until: Annotated[LocalDateTime | None, Query(alias="to", description="received before")] = None,
    q: Annotated[
        str | None, Query(max_length=200, description="Words in title, number, text")
    ] = None,
    overdue: Annotated[bool, Query(description="Only requests past their deadline")] = False,
) -> RequestFilters:
    return RequestFilters(
        status=status,
        open=open_only,
        kind=kind,
        enterprise_id=enterprise_id,
        assignee=assignee,
        since=since,
        until=until,
        q=q,
        overdue=overdue,
    )


Filters = Annotated[RequestFilters, Depends(_filters)]


@router.get(
    "/requests",
    summary="Support requests in your scope, newest first",
    response_model=Page[RequestRead],
)
async def list_requests(
    identity: People, session: DbSession, page: PageParams, filters: Filters, runtime: Runtime
) -> Page[RequestRead]:
    now = runtime.now()
    rows, total = await fetch_page(session, request_query(filters, identity.scope, now=now), page)
    return Page.of([to_read(r._mapping, now=now) for r in rows], total, page)


EXPORT_COLUMNS = (
    Column("number", "编号", width=20),
    Column("received_at", "提交时间", width=18),
    Column("kind_name", "类型", width=12),
    Column("title", "标题", width=36),
    Column("enterprise_id", "企业", width=20),
    Column("district_code", "区县", width=10),
    Column("requester_name", "提交人", width=12),
    Column("status_name", "状态", width=10),
    Column("assignee_name", "处理人", width=12),
    Column("sla", "时限要求", width=16),
    Column("due_at", "截止时间", width=18),
    Column("answered_at", "答复时间", width=18),
    Column("resolved_at", "完成时间", width=18),
    Column("clock_status", "时限", width=8),
    Column("answer", "答复", width=40),
    Column("resolution", "处理结果", width=40),
)
_CLOCK_ZH = {
    "running": "计时中",
    "overdue": "已超时",
    "met": "按时",
    "missed": "超时",
    "stopped": "—",
}


@router.get(
    "/requests.xlsx",
    summary="Export the filtered requests as Excel",
    responses={200: {"content": {XLSX_MEDIA_TYPE: {}}}},
)
async def export_requests(
    identity: People, session: DbSession, filters: Filters, runtime: Runtime
) -> Response:
    zone = ZoneInfo(runtime.settings.timezone)
    now = runtime.now()
    query = request_query(filters, identity.scope, now=now).limit(EXPORT_LIMIT)
    rows = []
    for row in (await session.execute(query)).mappings():
        view = to_read(row, now=now)
        data = view.model_dump() | {
            "due_at": view.clock.due_at,
            "clock_status": _CLOCK_ZH[view.clock.status],
        }
        rows.append(local_time(safe_row(data), zone))
    return await xlsx_response([Sheet("服务请求", EXPORT_COLUMNS, rows)], "requests.xlsx")


@router.post(
    "/requests",
    summary="Raise a support request (its deadline is set now, on working time)",
    status_code=201,
    response_model=RequestDetail,
)
async def raise_request(
    body: RequestCreate,
    request: Request,
    identity: Requesters,
    session: DbSession,
    runtime: Runtime,
) -> RequestDetail:
    """An enterprise user's request concerns its own enterprise (the default when its scope
    names one); a district officer's its district."""
    now = runtime.now()
    settings = runtime.settings
    request_id = await create_request(
        session=session,
        data=body,
        identity=identity,
        now=now,
        calendar=await load_calendar(session=session, settings=settings),
        warning=settings.ops_escalation_warning,
        zone=ZoneInfo(settings.timezone),
    )
    await session.commit()
    runtime.wake_escalation()
    await publish_audit(
        request,
        identity=identity,
        action="request.raise",
        resource=f"request:{request_id}",
        details={"kind": body.kind.value, "title": body.title[:100]},
    )
    return await request_detail(
        session=session, request_id=request_id, scope=identity.scope, now=now
    )


@router.get(
    "/requests/{request_id}",
    summary="One request with its timeline and linked articles",
    response_model=RequestDetail,
)
async def read_request(
    request_id: str, identity: People, session: DbSession, runtime: Runtime
) -> RequestDetail:
    return await request_detail(
        session=session, request_id=request_id, scope=identity.scope, now=runtime.now()
    )


async def _step(
    *,
    action: RequestAction,
    request_id: str,
    request: Request,
    identity: Identity,
    session: DbSession,
    runtime: Runtime,
    text: str = "",
    assignee: str | None = None,
    assignee_name: str | None = None,
) -> RequestDetail:
    now = runtime.now()
    await request_transition(
        session=session,
        request_id=request_id,
        action=action,
        identity=identity,
        now=now,
        text=text,
        assignee=assignee,
        assignee_name=assignee_name,
    )
    await session.commit()
    await publish_audit(
        request,
        identity=identity,
        action=f"request.{action}",
        resource=f"request:{request_id}",
        details={"text": text[:200]} if text else None,
    )
    return await request_detail(
        session=session, request_id=request_id, scope=identity.scope, now=now
    )


def _step_route(
    action: RequestAction, path: str, who: Any, body: type[BaseModel] | None, summary: str
) -> None:
    """Register `POST /requests/{request_id}/<path>` for one workflow step."""

    async def endpoint(**values: Any) -> RequestDetail:
        data = values.get("body")
        return await _step(
            action=action,
            request_id=values["request_id"],
            request=values["request"],
            identity=values["identity"],
            session=values["session"],
            runtime=values["runtime"],
            text=getattr(data, "text", ""),
            assignee=getattr(data, "assignee", None),
            assignee_name=getattr(data, "assignee_name", None),
        )

    parameters = [
        ("request_id", str),
        *([("body", body)] if body is not None else []),
        ("request", Request),
        ("identity", who),
        ("session", DbSession),
        ("runtime", Runtime),
    ]
    endpoint.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, annotation=a) for n, a in parameters],
        return_annotation=RequestDetail,
    )
    endpoint.__name__ = f"request_{action}"
    router.post(f"/requests/{{request_id}}/{path}", summary=summary, response_model=RequestDetail)(
        endpoint
    )


for _action, _who, _body, _summary in (
    ("accept", Operators, Accept, "Accept (take) a request, or hand it to another engineer"),
    ("reply", Operators, Reply, "Answer the requester (stops a question's clock)"),
    ("resolve", Operators, Reply, "Mark a request done (stops its clock)"),
    (
        "reject",
        Operators,
        Reply,
        "Reject a request that is not the supplier's to do (a reason is needed)",
    ),
    ("close", Requesters, None, "Close an answered or resolved request (the requester confirms)"),
    (
        "reopen",
        Requesters,
        Reply,
        "Reopen an answered, resolved or closed request (a reason is needed)",
    ),
    ("withdraw", Requesters, None, "Withdraw your own request"),
    ("comment", Requesters, Reply, "Add a message to the request's timeline"),
):
    _step_route(
        _action,  # type: ignore[arg-type]
        "comments" if _action == "comment" else _action,
        _who,
        _body,
        _summary,
    )


def _enterprise_only(identity: Identity) -> bool:
    scope = identity.scope
    return not scope.all and bool(scope.enterprises) and not scope.districts


@router.get(
    "/requests/{request_id}/similar",
    summary="Similar past cases: articles and resolved requests (in your scope)",
    response_model=SimilarCases,
)
async def similar(request_id: str, identity: People, session: DbSession) -> SimilarCases:
    row = await load_request(session=session, request_id=request_id, scope=identity.scope)
    return await similar_cases(
        session=session,
        text=row["title"],
        subject_kind="request",
        subject_id=request_id,
        everyone_only=_enterprise_only(identity),
        request_scope=scope_condition(identity.scope),
    )


@router.post(
    "/requests/{request_id}/articles",
    summary="Link a knowledge-base article to the request",
    response_model=RequestDetail,
)
async def link(
    request_id: str,
    body: LinkIn,
    request: Request,
    identity: Editors,
    session: DbSession,
    runtime: Runtime,
) -> RequestDetail:
    return await _link(request_id, body.article_id, True, request, identity, session, runtime)


@router.delete(
    "/requests/{request_id}/articles/{article_id}",
    summary="Remove a knowledge-base link",
    response_model=RequestDetail,
)
async def unlink(
    request_id: str,
    article_id: str,
    request: Request,
    identity: Editors,
    session: DbSession,
    runtime: Runtime,
) -> RequestDetail:
    return await _link(request_id, article_id, False, request, identity, session, runtime)


async def _link(
    request_id: str,
    article_id: str,
    linked: bool,
    request: Request,
    identity: Identity,
    session: DbSession,
    runtime: DeskRuntime,
) -> RequestDetail:
    now = runtime.now()
    await load_request(session=session, request_id=request_id, scope=identity.scope)
    await link_case(
        session=session,
        subject_kind="request",
        subject_id=request_id,
        article_id=article_id,
        actor=Actor.of(identity),
        now=now,
        linked=linked,
    )
    await session.commit()
    await publish_audit(
        request,
        identity=identity,
        action="request.link-article" if linked else "request.unlink-article",
        resource=f"request:{request_id}",
        details={"article_id": article_id},
    )
    return await request_detail(
        session=session, request_id=request_id, scope=identity.scope, now=now
    )
