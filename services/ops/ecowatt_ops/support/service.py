"""Raising, working and reading support requests; deadlines on the working calendar.

Scope: a request carries the enterprise and/or district it concerns, and every read and
action is filtered by the caller's data scope in SQL (`CurrentScope.where`), so an enterprise
user sees only its own enterprise's requests and a district officer its district's. A caller
may only raise a request that it could then see.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from ecowatt_kernel.identity import DataScope, Identity, Role
from ecowatt_kernel.ids import new_id
from ecowatt_kernel.problems import Conflict, Forbidden, NotFound, Problem
from sqlalchemy import ColumnElement, RowMapping, Select, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_ops.clocks.models import REQUEST_KIND_ZH, REQUEST_SLAS, RequestKind, clock_state
from ecowatt_ops.clocks.service import WorkCalendar, request_deadline
from ecowatt_ops.desk import timeline
from ecowatt_ops.desk.access import Actor
from ecowatt_ops.kb.models import kb_article, kb_link
from ecowatt_ops.support.models import (
    CLOCK_RUNNING,
    OPEN_STATUSES,
    REQUEST_EVENT_ZH,
    REQUEST_STATUS_ZH,
    LinkedArticleRef,
    RequestCreate,
    RequestDetail,
    RequestRead,
    request_event,
    request_number,
    support_request,
)

__all__ = [
    "RequestFilters",
    "add_request_event",
    "create_request",
    "load_request",
    "recompute_deadlines",
    "request_detail",
    "request_query",
    "request_transition",
    "scope_condition",
    "to_read",
]

MAX_BACKDATE = timedelta(days=30)
"""How far back a request taken by phone may be dated."""

RequestAction = Literal[
    "accept", "reply", "resolve", "close", "reopen", "reject", "withdraw", "comment"
]
_ALLOWED: dict[str, tuple[str, ...]] = {
    "accept": ("submitted", "accepted"),
    "reply": ("submitted", "accepted", "answered"),
    "resolve": ("submitted", "accepted", "answered"),
    "close": ("answered", "resolved"),
    "reopen": ("answered", "resolved", "closed"),
    "reject": ("submitted", "accepted"),
    "withdraw": ("submitted", "accepted", "answered"),
    "comment": ("submitted", "accepted", "answered", "resolved", "closed", "rejected"),
}


def scope_condition(scope: DataScope) -> ColumnElement[bool]:
    """The requests a scope may see."""
    c = support_request.c
    return scope.where(district_column=c.district_code, enterprise_column=c.enterprise_id)


def _placement(data: RequestCreate, identity: Identity) -> tuple[str | None, str | None]:
    """The enterprise and district of a new request, defaulted from a narrow scope and
    checked against it."""
    scope = identity.scope
    enterprise, district = data.enterprise_id, data.district_code
    if not scope.all:
        if enterprise is None and len(scope.enterprises) == 1 and not scope.districts:
            enterprise = next(iter(scope.enterprises))
        if district is None and enterprise is None and len(scope.districts) == 1:
            district = next(iter(scope.districts))
        if enterprise is None and district is None:
            raise Problem(
                "name the enterprise_id or district_code the request concerns (your data "
                "scope covers several)",
                status=422,
                type_suffix="request-needs-scope",
            )
        if not scope.allows(district=district, enterprise_id=enterprise):
            raise Forbidden("the request concerns an enterprise or district outside your scope")
    return enterprise, district


async def add_request_event(
    *,
    session: AsyncSession,
    request_id: str,
    kind: str,
    actor: Actor,
    at: datetime,
    text: str = "",
    details: dict[str, Any] | None = None,
) -> None:
    """Append one row to a request's timeline."""
    await timeline.append(
        session,
        request_event,
        request_id,
        kind=kind,
        actor=actor,
        at=at,
        text=text,
        details=details,
    )


async def create_request(
    *,
    session: AsyncSession,
    data: RequestCreate,
    identity: Identity,
    now: datetime,
    calendar: WorkCalendar,
    warning: float,
    zone: ZoneInfo,
) -> str:
    """Record a request with its deadline; returns its id (the caller commits)."""
    enterprise, district = _placement(data, identity)
    received = data.received_at or now
    if received > now + timedelta(minutes=1):
        raise Problem("received_at lies in the future", status=422, type_suffix="future-time")
    if received < now - MAX_BACKDATE:
        raise Problem(
            f"received_at may lie at most {MAX_BACKDATE.days} days back",
            status=422,
            type_suffix="received-too-early",
        )
    deadline = request_deadline(
        calendar=calendar, kind=data.kind, received_at=received, warning=warning
    )
    request_id = new_id()
    seq = await session.scalar(select(request_number.next_value()))
    await session.execute(
        support_request.insert().values(
            id=request_id,
            number=f"REQ-{received.astimezone(zone):%Y%m%d}-{int(seq or 0):04d}",
            kind=data.kind.value,
            title=data.title,
            description=data.description,
            enterprise_id=enterprise,
            district_code=district,
            status="submitted",
            requester=identity.subject,
            requester_name=identity.name,
            received_at=received,
            due_at=deadline.due_at,
            warn_at=deadline.warn_at,
            calendar_estimated=deadline.estimated,
            updated_at=now,
        )
    )
    await add_request_event(
        session=session,
        request_id=request_id,
        kind="submitted",
        actor=Actor.of(identity),
        at=now,
        text=data.title,
        details={"kind": data.kind.value, "due_at": deadline.due_at.isoformat()},
    )
    return request_id


async def load_request(
    *,
    session: AsyncSession,
    request_id: str,
    scope: DataScope,
    lock: bool = False,
) -> RowMapping:
    """A request the scope may see (404 otherwise: its existence is not revealed)."""
    query = select(support_request).where(
        support_request.c.id == request_id, scope_condition(scope)
    )
    if lock:
        query = query.with_for_update()
    row = (await session.execute(query)).mappings().first()
    if row is None:
        raise NotFound(f"request {request_id} not found")
    return row


async def request_transition(
    *,
    session: AsyncSession,
    request_id: str,
    action: RequestAction,
    identity: Identity,
    now: datetime,
    text: str = "",
    assignee: str | None = None,
    assignee_name: str | None = None,
) -> None:
    """One step of a request's workflow (409 when it does not apply now)."""
    row = await load_request(
        session=session, request_id=request_id, scope=identity.scope, lock=True
    )
    status = row["status"]
    if status not in _ALLOWED[action]:
        raise Conflict(f"cannot {action} a request that is {status} ({REQUEST_STATUS_ZH[status]})")
    actor = Actor.of(identity)
    mine = row["requester"] == identity.subject or identity.has_any_role(Role.ADMIN)
    if action == "withdraw" and not mine:
        raise Forbidden("only the requester may withdraw a request")
    values: dict[str, Any] = {"updated_at": now}
    kind: str = action if action != "withdraw" else "withdrawn"
    details: dict[str, Any] = {}
    question = row["kind"] == RequestKind.QUESTION.value
    if action in ("accept", "reply", "resolve") and row["accepted_at"] is None:
        values |= {"accepted_at": now}
        values |= {
            "assignee": assignee or actor.subject,
            "assignee_name": assignee_name or actor.name,
        }
    if action == "accept":
        kind = "accepted"
        values |= {
            "status": "accepted",
            "assignee": assignee or actor.subject,
            "assignee_name": assignee_name or (None if assignee else actor.name),
        }
        details = {"assignee": values["assignee"]}
    elif action == "reply":
        kind = "answered"
        values |= {"answer": text}
        if row["answered_at"] is None:
            values["answered_at"] = now
        if question:
            values["status"] = "answered"
            if row["sla_stopped_at"] is None:
                values["sla_stopped_at"] = now
        elif status == "submitted":
            values["status"] = "accepted"
    elif action == "resolve":
        kind = "resolved"
        values |= {"status": "resolved", "resolved_at": now, "resolution": text}
        if row["sla_stopped_at"] is None:
            values["sla_stopped_at"] = now
        if question and row["answered_at"] is None:
            values |= {"answered_at": now, "answer": text}
    elif action == "close":
        kind = "closed"
        values |= {"status": "closed", "closed_at": now}
    elif action == "reopen":
        kind = "reopened"
        values |= {"status": "accepted", "closed_at": None}
    elif action == "reject":
        kind = "rejected"
        values |= {"status": "rejected", "resolution": text, "sla_stopped_at": now}
    elif action == "withdraw":
        values |= {"status": "withdrawn", "sla_stopped_at": row["sla_stopped_at"] or now}
    if len(values) > 1:
        await session.execute(
            update(support_request).where(support_request.c.id == request_id).values(**values)
        )
    await add_request_event(
        session=session,
        request_id=request_id,
        kind=kind,
        actor=actor,
        at=now,
        text=text,
        details=details,
    )


async def recompute_deadlines(
    *, session: AsyncSession, calendar: WorkCalendar, warning: float, now: datetime
) -> int:
    """Recompute the deadlines of requests whose clock runs (after a calendar change);
    returns how many moved."""
    rows = (
        await session.execute(
            select(support_request)
            .where(
                support_request.c.sla_stopped_at.is_(None),
                support_request.c.status.in_(CLOCK_RUNNING),
            )
            .with_for_update()
        )
    ).mappings()
    moved = 0
    for row in list(rows):
        deadline = request_deadline(
            calendar=calendar,
            kind=RequestKind(row["kind"]),
            received_at=row["received_at"],
            warning=warning,
        )
        if (deadline.due_at, deadline.estimated) == (row["due_at"], row["calendar_estimated"]):
            continue
        await session.execute(
            update(support_request)
            .where(support_request.c.id == row["id"])
            .values(
                due_at=deadline.due_at,
                warn_at=deadline.warn_at,
                calendar_estimated=deadline.estimated,
                updated_at=now,
            )
        )
        await add_request_event(
            session=session,
            request_id=row["id"],
            kind="deadline_changed",
            actor=Actor("ops.calendar", "工作日历"),
            at=now,
            text="工作日历调整，时限重新计算",
            details={"from": row["due_at"].isoformat(), "to": deadline.due_at.isoformat()},
        )
        moved += 1
    return moved


def to_read(row: RowMapping, *, now: datetime) -> RequestRead:
    """The API view of a request row with its clock as of `now`."""
    kind = RequestKind(row["kind"])
    return RequestRead(
        **{k: row[k] for k in RequestRead.model_fields if k in row},
        kind_name=REQUEST_KIND_ZH[kind],
        status_name=REQUEST_STATUS_ZH[row["status"]],
        sla=REQUEST_SLAS[kind].text,
        clock=clock_state(
            due_at=row["due_at"],
            warn_at=row["warn_at"],
            stopped_at=row["sla_stopped_at"],
            now=now,
            cancelled=row["status"] == "withdrawn",
        ),
    )


async def request_detail(
    *, session: AsyncSession, request_id: str, scope: DataScope, now: datetime
) -> RequestDetail:
    """A request with its timeline and linked articles."""
    row = await load_request(session=session, request_id=request_id, scope=scope)
    everyone_only = not scope.all and bool(scope.enterprises) and not scope.districts
    articles = select(
        kb_article.c.id, kb_article.c.title, kb_article.c.category, kb_link.c.linked_at
    ).join(kb_link, kb_link.c.article_id == kb_article.c.id)
    articles = articles.where(
        kb_link.c.subject_kind == "request", kb_link.c.subject_id == request_id
    )
    if everyone_only:
        articles = articles.where(kb_article.c.visibility == "everyone")
    return RequestDetail(
        **to_read(row, now=now).model_dump(),
        timeline=await timeline.entries(session, request_event, request_id, REQUEST_EVENT_ZH),
        articles=[
            LinkedArticleRef.model_validate(dict(a))
            for a in (await session.execute(articles.order_by(kb_link.c.linked_at))).mappings()
        ],
    )


@dataclass
class RequestFilters:
    status: str | None = None
    open: bool | None = None
    kind: RequestKind | None = None
    enterprise_id: str | None = None
    assignee: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    q: str | None = None
    overdue: bool = False


def request_query(filters: RequestFilters, scope: DataScope, *, now: datetime) -> Select[Any]:
    """The requests `filters` select within `scope`, newest first (`now` judges overdue)."""
    c = support_request.c
    query = select(support_request).where(scope_condition(scope))
    if filters.status:
        query = query.where(c.status == filters.status)
    if filters.open is not None:
        query = query.where(
            c.status.in_(OPEN_STATUSES) if filters.open else c.status.not_in(OPEN_STATUSES)
        )
    if filters.kind:
        query = query.where(c.kind == filters.kind.value)
    if filters.enterprise_id:
        query = query.where(c.enterprise_id == filters.enterprise_id)
    if filters.assignee:
        query = query.where(c.assignee == filters.assignee)
    if filters.since:
        query = query.where(c.received_at >= filters.since)
    if filters.until:
        query = query.where(c.received_at < filters.until)
    if filters.q:
        for term in filters.q.split():
            query = query.where(
                or_(
                    *(
                        column.icontains(term, autoescape=True)
                        for column in (c.title, c.number, c.description)
                    )
                )
            )
    if filters.overdue:
        query = query.where(c.sla_stopped_at.is_(None), c.status.in_(CLOCK_RUNNING), c.due_at < now)
    return query.order_by(c.received_at.desc(), c.id)
