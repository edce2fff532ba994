"""Incident endpoints: list, export, open, read, change, the workflow steps, review, similar
cases, knowledge-base links."""

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
from pydantic import BaseModel, Field

from ecowatt_ops.clocks.models import Level
from ecowatt_ops.desk.access import (
    Actor,
    Commenters,
    Editors,
    Operators,
    Readers,
    Reporters,
    Verifiers,
    publish_audit,
)
from ecowatt_ops.desk.exports import EXPORT_LIMIT, local_time, safe_row
from ecowatt_ops.desk.runtime import DeskRuntime, Runtime
from ecowatt_ops.incidents.models import (
    SOURCE_ZH,
    IncidentCreate,
    IncidentDetail,
    IncidentRead,
    IncidentUpdate,
    Note,
)
from ecowatt_ops.incidents.service import (
    Action,
    IncidentFilters,
    add_event,
    incident_detail,
    incident_query,
    load_incident,
    open_incident,
    set_review,
    to_read,
    transition,
    update_incident,
)
from ecowatt_ops.kb.models import LinkIn, SimilarCases
from ecowatt_ops.kb.service import link_case, similar_cases
from ecowatt_ops.support.service import scope_condition

__all__ = ["router"]

router = APIRouter(tags=["incidents"])
CLOCK_ZH = {
    "running": "计时中",
    "overdue": "已超时",
    "met": "达标",
    "missed": "超时",
    "stopped": "—",
}


class OptionalNote(BaseModel):
    text: str = Field("", max_length=4000)


def _filters(
    status: Annotated[
        Literal["open", "responded", "mitigated", "resolved", "verified", "cancelled"] | None,
        Query(),
    ] = None,
    active: Annotated[bool | None, Query(description="true: not verified or cancelled")] = None,
    level: Annotated[Level | None, Query()] = None,
    source: Annotated[Literal["manual", "alertmanager", "platform"] | None, Query()] = None,
    since: Annotated[
        LocalDateTime | None, Query(alias="from", description="opened at or after")
    ] = None,
    until: Annotated[LocalDateTime | None, Query(alias="to", description="opened before")] = None,
    q: Annotated[
        str | None, Query(max_length=200, description="Words in title, number, text")
    ] = None,
    assignee: Annotated[str | None, Query(max_length=128)] = None,
    overdue: Annotated[
        bool, Query(description="Only cases past a deadline, clock running")
    ] = False,
) -> IncidentFilters:
    return IncidentFilters(
        status=status,
        active=active,
        level=level,
        source=source,
        since=since,
        until=until,
        q=q,
        assignee=assignee,
        overdue=overdue,
    )


Filters = Annotated[IncidentFilters, Depends(_filters)]


@router.get("/incidents", summary="Incidents, newest first", response_model=Page[IncidentRead])
async def list_incidents(
    _: Readers, session: DbSession, page: PageParams, filters: Filters, runtime: Runtime
) -> Page[IncidentRead]:
    now = runtime.now()
    rows, total = await fetch_page(session, incident_query(filters, now=now), page)
    return Page.of([to_read(r._mapping, now=now) for r in rows], total, page)


EXPORT_COLUMNS = (
    Column("number", "编号", width=20),
    Column("opened_at", "发生时间", width=18),
    Column("level_name", "级别", width=9),
    Column("status_name", "状态", width=10),
    Column("source", "来源", width=10),
    Column("affected_function", "受影响功能", width=14),
    Column("title", "故障", width=36),
    Column("impact", "影响", width=30),
    Column("assignee_name", "处理人", width=12),
    Column("response_due", "响应时限", width=18),
    Column("responded_at", "响应时间", width=18),
    Column("response_status", "响应", width=8),
    Column("resolution_due", "解决时限", width=18),
    Column("resolved_at", "解决时间", width=18),
    Column("resolution_status", "解决", width=8),
    Column("workaround", "临时措施", width=30),
    Column("root_cause", "原因", width=30),
    Column("resolution", "处理结果", width=30),
    Column("verified_at", "验证时间", width=18),
    Column("review", "复盘", width=40),
)


@router.get(
    "/incidents.xlsx",
    summary="Export the filtered incidents as Excel",
    responses={200: {"content": {XLSX_MEDIA_TYPE: {}}}},
)
async def export_incidents(
    _: Readers, session: DbSession, filters: Filters, runtime: Runtime
) -> Response:
    zone = ZoneInfo(runtime.settings.timezone)
    now = runtime.now()
    rows = []
    query = incident_query(filters, now=now).limit(EXPORT_LIMIT)
    for row in (await session.execute(query)).mappings():
        view = to_read(row, now=now)
        data: dict[str, Any] = view.model_dump()
        data |= {
            "source": SOURCE_ZH[view.source],
            "response_due": view.response.due_at,
            "resolution_due": view.resolution_clock.due_at,
            "response_status": CLOCK_ZH[view.response.status],
            "resolution_status": CLOCK_ZH[view.resolution_clock.status],
        }
        rows.append(local_time(safe_row(data), zone))
    return await xlsx_response([Sheet("故障", EXPORT_COLUMNS, rows)], "incidents.xlsx")


@router.post(
    "/incidents",
    summary="Open an incident by hand",
    status_code=201,
    response_model=IncidentDetail,
)
async def create_incident(
    body: IncidentCreate,
    request: Request,
    identity: Reporters,
    session: DbSession,
    runtime: Runtime,
) -> IncidentDetail:
    """The clocks start now: response and resolution deadlines follow the level."""
    now = runtime.now()
    incident_id = await open_incident(
        session=session, data=body, actor=Actor.of(identity), now=now, settings=runtime.settings
    )
    await session.commit()
    runtime.wake_escalation()
    await publish_audit(
        request,
        identity=identity,
        action="incident.open",
        resource=f"incident:{incident_id}",
        details={"level": body.level.value, "title": body.title[:100]},
    )
    return await incident_detail(session=session, incident_id=incident_id, now=now)


@router.get(
    "/incidents/{incident_id}",
    summary="One incident with its timeline, signals and linked articles",
    response_model=IncidentDetail,
)
async def read_incident(
    incident_id: str, _: Readers, session: DbSession, runtime: Runtime
) -> IncidentDetail:
    return await incident_detail(session=session, incident_id=incident_id, now=runtime.now())


@router.patch(
    "/incidents/{incident_id}",
    summary="Change an incident (a level change needs a reason; the clocks follow it)",
    response_model=IncidentDetail,
)
async def change_incident(
    incident_id: str,
    body: IncidentUpdate,
    request: Request,
    identity: Operators,
    session: DbSession,
    runtime: Runtime,
) -> IncidentDetail:
    now = runtime.now()
    await update_incident(
        session=session,
        incident_id=incident_id,
        data=body,
        actor=Actor.of(identity),
        now=now,
        settings=runtime.settings,
    )
    await session.commit()
    await publish_audit(
        request,
        identity=identity,
        action="incident.update",
        resource=f"incident:{incident_id}",
        details={"fields": sorted(body.model_dump(exclude_unset=True))},
    )
    return await incident_detail(session=session, incident_id=incident_id, now=now)


async def _step(
    *,
    action: Action,
    incident_id: str,
    text: str,
    request: Request,
    identity: Identity,
    session: DbSession,
    runtime: Runtime,
) -> IncidentDetail:
    now = runtime.now()
    await transition(
        session=session,
        incident_id=incident_id,
        action=action,
        actor=Actor.of(identity),
        now=now,
        text=text,
    )
    await session.commit()
    await publish_audit(
        request,
        identity=identity,
        action=f"incident.{action}",
        resource=f"incident:{incident_id}",
        details={"text": text[:200]} if text else None,
    )
    return await incident_detail(session=session, incident_id=incident_id, now=now)


def _step_route(action: Action, path: str, who: Any, body: type[BaseModel], summary: str) -> None:
    """Register `POST /incidents/{incident_id}/<path>` for one workflow step."""

    async def endpoint(**values: Any) -> IncidentDetail:
        return await _step(
            action=action,
            incident_id=values["incident_id"],
            text=values["body"].text,
            request=values["request"],
            identity=values["identity"],
            session=values["session"],
            runtime=values["runtime"],
        )

    parameters = [
        ("incident_id", str),
        ("body", body),
        ("request", Request),
        ("identity", who),
        ("session", DbSession),
        ("runtime", Runtime),
    ]
    endpoint.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, annotation=a) for n, a in parameters],
        return_annotation=IncidentDetail,
    )
    endpoint.__name__ = action
    router.post(
        f"/incidents/{{incident_id}}/{path}", summary=summary, response_model=IncidentDetail
    )(endpoint)


for _action, _path, _who, _body, _summary in (
    (
        "respond",
        "respond",
        Operators,
        OptionalNote,
        "Respond: O&M has taken the incident (stops the response clock)",
    ),
    (
        "workaround",
        "workaround",
        Operators,
        Note,
        "Record a temporary workaround (service restored, cause not yet removed)",
    ),
    ("root_cause", "root-cause", Operators, Note, "Record (or correct) the root cause"),
    (
        "resolve",
        "resolve",
        Operators,
        Note,
        "Resolve: the fault is removed (stops the resolution clock)",
    ),
    (
        "verify",
        "verify",
        Verifiers,
        OptionalNote,
        "Verify a resolved incident (the bureau confirms the service is back)",
    ),
    (
        "reopen",
        "reopen",
        Editors,
        Note,
        "Reopen a resolved or verified incident (the fault is back); a reason is needed",
    ),
    (
        "cancel",
        "cancel",
        Operators,
        Note,
        "Cancel an incident that was no fault (false alarm, duplicate); a reason is needed",
    ),
):
    _step_route(_action, _path, _who, _body, _summary)  # type: ignore[arg-type]


@router.post(
    "/incidents/{incident_id}/comments",
    summary="Add a remark to the timeline",
    response_model=IncidentDetail,
)
async def comment(
    incident_id: str,
    body: Note,
    request: Request,
    identity: Commenters,
    session: DbSession,
    runtime: Runtime,
) -> IncidentDetail:
    now = runtime.now()
    await load_incident(session=session, incident_id=incident_id)
    await add_event(
        session=session,
        incident_id=incident_id,
        kind="comment",
        actor=Actor.of(identity),
        at=now,
        text=body.text,
    )
    await session.commit()
    await publish_audit(
        request, identity=identity, action="incident.comment", resource=f"incident:{incident_id}"
    )
    return await incident_detail(session=session, incident_id=incident_id, now=now)


@router.put(
    "/incidents/{incident_id}/review",
    summary="Write the post-incident review (复盘) of a resolved incident",
    response_model=IncidentDetail,
)
async def review(
    incident_id: str,
    body: Note,
    request: Request,
    identity: Operators,
    session: DbSession,
    runtime: Runtime,
) -> IncidentDetail:
    now = runtime.now()
    await set_review(
        session=session, incident_id=incident_id, text=body.text, actor=Actor.of(identity), now=now
    )
    await session.commit()
    await publish_audit(
        request, identity=identity, action="incident.review", resource=f"incident:{incident_id}"
    )
    return await incident_detail(session=session, incident_id=incident_id, now=now)


@router.get(
    "/incidents/{incident_id}/similar",
    summary="Similar past cases: knowledge-base articles, closed incidents and requests",
    response_model=SimilarCases,
)
async def similar(incident_id: str, identity: Readers, session: DbSession) -> SimilarCases:
    row = await load_incident(session=session, incident_id=incident_id)
    return await similar_cases(
        session=session,
        text=f"{row['title']} {row['affected_function']}",
        subject_kind="incident",
        subject_id=incident_id,
        request_scope=scope_condition(identity.scope),
    )


@router.post(
    "/incidents/{incident_id}/articles",
    summary="Link a knowledge-base article to the incident",
    response_model=IncidentDetail,
)
async def link(
    incident_id: str,
    body: LinkIn,
    request: Request,
    identity: Editors,
    session: DbSession,
    runtime: Runtime,
) -> IncidentDetail:
    return await _link(incident_id, body.article_id, True, request, identity, session, runtime)


@router.delete(
    "/incidents/{incident_id}/articles/{article_id}",
    summary="Remove a knowledge-base link",
    response_model=IncidentDetail,
)
async def unlink(
    incident_id: str,
    article_id: str,
    request: Request,
    identity: Editors,
    session: DbSession,
    runtime: Runtime,
) -> IncidentDetail:
    return await _link(incident_id, article_id, False, request, identity, session, runtime)


async def _link(
    incident_id: str,
    article_id: str,
    linked: bool,
    request: Request,
    identity: Identity,
    session: DbSession,
    runtime: DeskRuntime,
) -> IncidentDetail:
    now = runtime.now()
    await load_incident(session=session, incident_id=incident_id)
    await link_case(
        session=session,
        subject_kind="incident",
        subject_id=incident_id,
        article_id=article_id,
        actor=Actor.of(identity),
        now=now,
        linked=linked,
    )
    await session.commit()
    await publish_audit(
        request,
        identity=identity,
        action="incident.link-article" if linked else "incident.unlink-article",
        resource=f"incident:{incident_id}",
        details={"article_id": article_id},
    )
    return await incident_detail(session=session, incident_id=incident_id, now=now)
