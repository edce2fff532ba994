"""Opening, working and reading incidents; the one path every alert and signal takes.

`apply_signal` is how Alertmanager and the platform's own checks touch incidents. A signal is
one source's view of one condition (`source_key`: an alert's fingerprint, or `platform`),
grouped into an incident by its correlation key (`service:alarm`, `lag:<group>:<topic>`, …,
or `alert:<fingerprint>` for an alert the desk does not know), so that Prometheus and the
platform's own check of the same fault feed one incident. Under a transaction-level advisory
lock per key:

- the same state again (a re-sent notification, a replayed payload) changes nothing;
- a firing signal opens an incident, or updates the active one (reopening it when it had
  been resolved: the fault is back);
- a resolved signal resolves the incident once every signal feeding it is resolved; a
  resolved signal for which the desk never saw the firing (it was down) opens the incident
  and resolves it at once, so that the fault is on record;
- a signal of an occurrence whose incident was already verified or cancelled (same start)
  is written to that incident's timeline and reopens nothing: people closed it.

Why one module of ~640 lines: the people's transitions (`transition`, `update_incident`,
`set_review`) and `apply_signal` open, change and resolve the same incident rows and write the
same timeline (`add_event`), and the read model (`to_read`, `incident_query`) reads those
rows with the same clock rules; the signal path (`SignalInput` to the end, ~180 lines) is the
seam if the module grows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from ecowatt_kernel.ids import new_id
from ecowatt_kernel.problems import Conflict, NotFound
from sqlalchemy import RowMapping, Select, and_, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_ops.clocks.models import LEVEL_ZH, Level, clock_state
from ecowatt_ops.clocks.service import incident_deadlines
from ecowatt_ops.desk import timeline
from ecowatt_ops.desk.access import Actor
from ecowatt_ops.desk.settings import DeskSettings
from ecowatt_ops.incidents.models import (
    ACTIVE,
    EVENT_ZH,
    STATUS_ZH,
    IncidentCreate,
    IncidentDetail,
    IncidentRead,
    IncidentUpdate,
    LinkedArticle,
    incident,
    incident_event,
    incident_number,
)
from ecowatt_ops.kb.models import kb_article, kb_link

__all__ = [
    "TRANSITIONS",
    "Outcome",
    "SignalInput",
    "add_event",
    "apply_signal",
    "incident_detail",
    "incident_query",
    "load_incident",
    "open_incident",
    "set_review",
    "to_read",
    "transition",
    "update_incident",
]

Action = Literal["respond", "workaround", "root_cause", "resolve", "verify", "reopen", "cancel"]
TRANSITIONS: dict[str, tuple[frozenset[str], str | None, str]] = {
    # action: (statuses it applies to, the status after (None: unchanged), timeline kind)
    "respond": (frozenset({"open"}), "responded", "responded"),
    "workaround": (frozenset({"open", "responded"}), "mitigated", "workaround"),
    "root_cause": (frozenset(ACTIVE), None, "root_cause"),
    "resolve": (frozenset({"open", "responded", "mitigated"}), "resolved", "resolved"),
    "verify": (frozenset({"resolved"}), "verified", "verified"),
    "reopen": (frozenset({"resolved", "verified"}), "responded", "reopened"),
    "cancel": (frozenset({"open", "responded", "mitigated"}), "cancelled", "cancelled"),
}


async def _number(session: AsyncSession, now: datetime, zone: ZoneInfo) -> str:
    seq = await session.scalar(select(incident_number.next_value()))
    return f"INC-{now.astimezone(zone):%Y%m%d}-{int(seq or 0):04d}"


async def add_event(
    *,
    session: AsyncSession,
    incident_id: str,
    kind: str,
    actor: Actor,
    at: datetime,
    text: str = "",
    details: dict[str, Any] | None = None,
) -> None:
    """Append one row to an incident's timeline."""
    await timeline.append(
        session,
        incident_event,
        incident_id,
        kind=kind,
        actor=actor,
        at=at,
        text=text,
        details=details,
    )


async def open_incident(
    *,
    session: AsyncSession,
    data: IncidentCreate,
    actor: Actor,
    now: datetime,
    settings: DeskSettings,
    source: str = "manual",
    correlation: str | None = None,
    signals: dict[str, Any] | None = None,
    details: dict[str, Any] | None = None,
) -> str:
    """Open an incident with its clocks; returns its id (the caller commits)."""
    incident_id = new_id()
    deadlines = incident_deadlines(
        level=data.level, hardware=data.hardware, opened_at=now, settings=settings
    )
    await session.execute(
        incident.insert().values(
            id=incident_id,
            number=await _number(session, now, ZoneInfo(settings.timezone)),
            title=data.title,
            description=data.description,
            impact=data.impact,
            affected_function=data.affected_function,
            level=data.level.value,
            hardware=data.hardware,
            status="open",
            source=source,
            correlation=correlation,
            signals=signals or {},
            opened_at=now,
            opened_by=actor.subject,
            opened_by_name=actor.name,
            assignee=data.assignee,
            assignee_name=data.assignee_name,
            updated_at=now,
            **deadlines,
        )
    )
    await add_event(
        session=session,
        incident_id=incident_id,
        kind="opened",
        actor=actor,
        at=now,
        text=data.title,
        details={"level": data.level.value, "source": source, **(details or {})},
    )
    return incident_id


async def load_incident(
    *, session: AsyncSession, incident_id: str, lock: bool = False
) -> RowMapping:
    """The incident's row (404 when there is none)."""
    query = select(incident).where(incident.c.id == incident_id)
    if lock:
        query = query.with_for_update()
    row = (await session.execute(query)).mappings().first()
    if row is None:
        raise NotFound(f"incident {incident_id} not found")
    return row


async def transition(
    *,
    session: AsyncSession,
    incident_id: str,
    action: Action,
    actor: Actor,
    now: datetime,
    text: str = "",
) -> None:
    """Move an incident along its workflow (409 when the action does not apply now)."""
    row = await load_incident(session=session, incident_id=incident_id, lock=True)
    allowed, after, kind = TRANSITIONS[action]
    if row["status"] not in allowed:
        raise Conflict(
            f"cannot {action.replace('_', ' ')} an incident that is {row['status']} "
            f"({STATUS_ZH[row['status']]})"
        )
    values: dict[str, Any] = {"updated_at": now}
    if after is not None:
        values["status"] = after
    if action == "respond":
        values |= {"responded_at": now, "responded_by": actor.subject}
    elif action == "workaround":
        values |= {"workaround_at": now, "workaround": text}
    elif action == "root_cause":
        values |= {"root_cause_at": now, "root_cause": text}
    elif action == "resolve":
        values |= {"resolved_at": now, "resolved_by": actor.subject, "resolution": text}
    elif action == "verify":
        values |= {"verified_at": now, "verified_by": actor.subject}
    elif action == "reopen":
        values |= {"resolved_at": None, "resolved_by": None, "resolution": None}
        values |= {"verified_at": None, "verified_by": None}
        values["status"] = "responded" if row["responded_at"] else "open"
    elif action == "cancel":
        values |= {"cancelled_at": now, "cancel_reason": text}
    if action in ("workaround", "resolve") and row["responded_at"] is None:
        # working on it is answering it: the response clock stops
        values |= {"responded_at": now, "responded_by": actor.subject}
    try:
        async with session.begin_nested():
            await session.execute(
                update(incident).where(incident.c.id == incident_id).values(**values)
            )
    except IntegrityError:
        raise Conflict("another incident for the same alert is active: work on that one") from None
    await add_event(
        session=session, incident_id=incident_id, kind=kind, actor=actor, at=now, text=text
    )


async def update_incident(
    *,
    session: AsyncSession,
    incident_id: str,
    data: IncidentUpdate,
    actor: Actor,
    now: datetime,
    settings: DeskSettings,
) -> None:
    """Change an incident's fields; a level or hardware change recomputes its deadlines."""
    row = await load_incident(session=session, incident_id=incident_id, lock=True)
    if row["status"] in ("verified", "cancelled"):
        raise Conflict(f"the incident is {row['status']}: reopen it first")
    changes = data.model_dump(exclude_unset=True, exclude={"reason"})
    changes = {
        k: v for k, v in changes.items() if row[k] != (v.value if isinstance(v, Level) else v)
    }
    if not changes:
        return
    values: dict[str, Any] = {
        k: (v.value if isinstance(v, Level) else v) for k, v in changes.items()
    }
    if "level" in changes or "hardware" in changes:
        if "level" in changes and not data.reason:
            raise Conflict("changing an incident's level needs a reason")
        level = Level(values.get("level", row["level"]))
        values |= incident_deadlines(
            level=level,
            hardware=bool(values.get("hardware", row["hardware"])),
            opened_at=row["opened_at"],
            settings=settings,
        )
    values["updated_at"] = now
    await session.execute(update(incident).where(incident.c.id == incident_id).values(**values))
    if "level" in changes:
        await add_event(
            session=session,
            incident_id=incident_id,
            kind="level_changed",
            actor=actor,
            at=now,
            text=data.reason or "",
            details={"from": row["level"], "to": values["level"]},
        )
    if "assignee" in changes:
        await add_event(
            session=session,
            incident_id=incident_id,
            kind="assigned",
            actor=actor,
            at=now,
            text=data.assignee_name or data.assignee or "",
            details={"assignee": data.assignee},
        )
    rest = sorted(set(changes) - {"level", "assignee", "assignee_name"})
    if rest:
        await add_event(
            session=session,
            incident_id=incident_id,
            kind="updated",
            actor=actor,
            at=now,
            text=data.reason or "",
            details={"fields": rest},
        )


async def set_review(
    *, session: AsyncSession, incident_id: str, text: str, actor: Actor, now: datetime
) -> None:
    """Write (or rewrite) the post-incident review of a resolved or verified incident."""
    row = await load_incident(session=session, incident_id=incident_id, lock=True)
    if row["status"] not in ("resolved", "verified"):
        raise Conflict("a post-incident review is written once the incident is resolved")
    await session.execute(
        update(incident)
        .where(incident.c.id == incident_id)
        .values(review=text, review_by=actor.subject, review_at=now, updated_at=now)
    )
    await add_event(
        session=session, incident_id=incident_id, kind="review", actor=actor, at=now, text=text
    )


def response_stop(row: RowMapping) -> datetime | None:
    """When the response clock stopped: a response, else a resolution or cancellation (a
    fault that went away before anyone answered needed no answer)."""
    stopped: datetime | None = row["responded_at"] or row["resolved_at"] or row["cancelled_at"]
    return stopped


def resolution_stop(row: RowMapping) -> datetime | None:
    stopped: datetime | None = row["resolved_at"] or row["cancelled_at"]
    return stopped


def to_read(row: RowMapping, *, now: datetime) -> IncidentRead:
    """The API view of an incident row, with its clocks as of `now`."""
    cancelled = row["status"] == "cancelled"
    end = resolution_stop(row)
    data = {k: row[k] for k in IncidentRead.model_fields if k in row}
    return IncidentRead(
        **data,
        level_name=LEVEL_ZH[Level(row["level"])],
        status_name=STATUS_ZH[row["status"]],
        duration_s=(end - row["opened_at"]).total_seconds() if end else None,
        response=clock_state(
            due_at=row["response_due"],
            warn_at=row["response_warn_at"],
            stopped_at=response_stop(row),
            now=now,
            cancelled=cancelled,
        ),
        resolution_clock=clock_state(
            due_at=row["resolution_due"],
            warn_at=row["resolution_warn_at"],
            stopped_at=end,
            now=now,
            cancelled=cancelled,
        ),
    )


async def incident_detail(
    *, session: AsyncSession, incident_id: str, now: datetime
) -> IncidentDetail:
    """An incident with its signals, timeline and linked articles."""
    row = await load_incident(session=session, incident_id=incident_id)
    links = (
        await session.execute(
            select(
                kb_article.c.id,
                kb_article.c.title,
                kb_article.c.category,
                kb_link.c.linked_by,
                kb_link.c.linked_at,
            )
            .join(kb_link, kb_link.c.article_id == kb_article.c.id)
            .where(kb_link.c.subject_kind == "incident", kb_link.c.subject_id == incident_id)
            .order_by(kb_link.c.linked_at)
        )
    ).mappings()
    return IncidentDetail(
        **to_read(row, now=now).model_dump(),
        signals=row["signals"],
        timeline=await timeline.entries(session, incident_event, incident_id, EVENT_ZH),
        articles=[LinkedArticle.model_validate(dict(link)) for link in links],
    )


@dataclass
class IncidentFilters:
    status: str | None = None
    active: bool | None = None
    level: Level | None = None
    source: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    q: str | None = None
    assignee: str | None = None
    overdue: bool = False


def incident_query(filters: IncidentFilters, *, now: datetime) -> Select[Any]:
    """The incidents `filters` select, newest first (`now` judges `overdue`)."""
    c = incident.c
    query = select(incident)
    if filters.status:
        query = query.where(c.status == filters.status)
    if filters.active is not None:
        query = query.where(c.status.in_(ACTIVE) if filters.active else c.status.not_in(ACTIVE))
    if filters.level:
        query = query.where(c.level == filters.level.value)
    if filters.source:
        query = query.where(c.source == filters.source)
    if filters.since:
        query = query.where(c.opened_at >= filters.since)
    if filters.until:
        query = query.where(c.opened_at < filters.until)
    if filters.assignee:
        query = query.where(c.assignee == filters.assignee)
    if filters.q:
        for term in filters.q.split():
            query = query.where(
                or_(
                    *(
                        column.icontains(term, autoescape=True)
                        for column in (c.title, c.number, c.description, c.affected_function)
                    )
                )
            )
    if filters.overdue:
        query = query.where(
            or_(
                and_(c.responded_at.is_(None), c.status == "open", c.response_due < now),
                and_(c.status.in_(("open", "responded", "mitigated")), c.resolution_due < now),
            )
        )
    return query.order_by(c.opened_at.desc(), c.id)


# ------------------------------------------------------------------ alerts and signals


@dataclass(frozen=True)
class SignalInput:
    """One source's current view of one condition (see the module docstring)."""

    correlation: str
    source: Literal["alertmanager", "platform"]
    source_key: str
    firing: bool
    starts_at: datetime
    ends_at: datetime | None
    level: Level
    title: str
    description: str = ""
    affected_function: str = ""
    hardware: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)

    def state(self) -> dict[str, Any]:
        """What is stored per source and compared to tell a repeat from a change."""
        return {
            "status": "firing" if self.firing else "resolved",
            "starts_at": self.starts_at.isoformat(),
            "ends_at": self.ends_at.isoformat() if self.ends_at else None,
            "level": self.level.value,
            "title": self.title,
            "description": self.description,
            "labels": self.labels,
            "annotations": self.annotations,
        }


Outcome = Literal["opened", "updated", "reopened", "resolved", "unchanged", "recorded"]


async def apply_signal(
    *,
    session: AsyncSession,
    signal: SignalInput,
    actor: Actor,
    now: datetime,
    settings: DeskSettings,
) -> tuple[Outcome, str | None]:
    """Open, update, reopen or resolve the incident of `signal` (the caller commits)."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": f"ops.incident:{signal.correlation}"},
    )
    state = signal.state()
    active = (
        (
            await session.execute(
                select(incident)
                .where(incident.c.correlation == signal.correlation, incident.c.status.in_(ACTIVE))
                .with_for_update()
            )
        )
        .mappings()
        .first()
    )
    summary = signal.title + (f"：{signal.description}" if signal.description else "")
    if active is None:
        latest = (
            (
                await session.execute(
                    select(incident)
                    .where(incident.c.correlation == signal.correlation)
                    .order_by(incident.c.opened_at.desc())
                    .limit(1)
                )
            )
            .mappings()
            .first()
        )
        before = latest["signals"].get(signal.source_key) if latest is not None else None
        if latest is not None and before is not None and before["starts_at"] == state["starts_at"]:
            # the occurrence of an incident people verified or cancelled
            if before == state:
                return "unchanged", latest["id"]
            await _store_signal(session, latest, signal, state, now)
            await add_event(
                session=session,
                incident_id=latest["id"],
                kind="signal",
                actor=actor,
                at=now,
                text=("告警仍在触发：" if signal.firing else "告警已恢复：") + summary,
                details={"source": signal.source_key, "status": state["status"]},
            )
            return "recorded", latest["id"]
        incident_id = await open_incident(
            session=session,
            data=IncidentCreate(
                title=signal.title[:200],
                description=signal.description[:8000],
                affected_function=signal.affected_function[:100],
                level=signal.level,
                hardware=signal.hardware,
            ),
            actor=actor,
            now=now,
            settings=settings,
            source=signal.source,
            correlation=signal.correlation,
            signals={signal.source_key: state},
            details={"labels": signal.labels, "starts_at": state["starts_at"]},
        )
        if signal.firing:
            return "opened", incident_id
        row = await load_incident(session=session, incident_id=incident_id, lock=True)
        await _resolve_by_signal(session, row, signal, actor, now, "告警恢复（未收到触发通知）")
        return "resolved", incident_id

    before = active["signals"].get(signal.source_key)
    if before == state:
        return "unchanged", active["id"]
    signals = await _store_signal(session, active, signal, state, now)
    if signal.firing:
        if active["status"] == "resolved":
            await session.execute(
                update(incident)
                .where(incident.c.id == active["id"])
                .values(
                    status="responded" if active["responded_at"] else "open",
                    resolved_at=None,
                    resolved_by=None,
                    resolution=None,
                    updated_at=now,
                )
            )
            await add_event(
                session=session,
                incident_id=active["id"],
                kind="reopened",
                actor=actor,
                at=now,
                text="告警再次触发：" + summary,
                details={"source": signal.source_key},
            )
            return "reopened", active["id"]
        await add_event(
            session=session,
            incident_id=active["id"],
            kind="signal",
            actor=actor,
            at=now,
            text="告警触发：" + summary,
            details={"source": signal.source_key, "status": "firing"},
        )
        return "updated", active["id"]
    await add_event(
        session=session,
        incident_id=active["id"],
        kind="signal",
        actor=actor,
        at=now,
        text="告警已恢复：" + summary,
        details={"source": signal.source_key, "status": "resolved"},
    )
    still_firing = [k for k, s in signals.items() if s.get("status") == "firing"]
    if not still_firing and active["status"] in ("open", "responded", "mitigated"):
        await _resolve_by_signal(session, active, signal, actor, now, "告警恢复（自动）")
        return "resolved", active["id"]
    return "updated", active["id"]


async def _store_signal(
    session: AsyncSession,
    row: RowMapping,
    signal: SignalInput,
    state: dict[str, Any],
    now: datetime,
) -> dict[str, Any]:
    signals = {**row["signals"], signal.source_key: state}
    await session.execute(
        update(incident).where(incident.c.id == row["id"]).values(signals=signals, updated_at=now)
    )
    return signals


async def _resolve_by_signal(
    session: AsyncSession,
    row: RowMapping,
    signal: SignalInput,
    actor: Actor,
    now: datetime,
    note: str,
) -> None:
    # recovered when the condition ended (Alertmanager's endsAt), never before it was opened
    resolved_at = max(min(signal.ends_at or now, now), row["opened_at"])
    await session.execute(
        update(incident)
        .where(incident.c.id == row["id"])
        .values(
            status="resolved",
            resolved_at=resolved_at,
            resolved_by=actor.subject,
            resolution=note,
            updated_at=now,
        )
    )
    await add_event(
        session=session,
        incident_id=row["id"],
        kind="resolved",
        actor=actor,
        at=now,
        text=note,
        details={"resolved_at": resolved_at.isoformat(), "source": signal.source_key},
    )
