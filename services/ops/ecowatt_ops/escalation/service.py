"""Announcing new cases and escalating deadlines, with an injectable clock.

`run_escalations(now=…)` is one pass (the background job runs it every
`ECOWATT_OPS_ESCALATION_EVERY_S` seconds with the wall clock; tests pass the moment they
want). For each incident and request it finds, in SQL, the stage its clock has reached and
that was not yet recorded:

- `opened`: a case of the last day not yet announced (`incident_opened`, `request_submitted`);
- `warning`: the warning moment (`warn_at`) passed, the deadline not yet;
- `breached`: the deadline passed while the clock still runs.

An incident has two clocks (response while `open`; resolution while not resolved), a
request one. Each new stage is recorded (`ops.escalation`, unique), written to the case's
timeline, and sent to the duty contacts who want the event and the configured webhooks
(`Notifier`), every attempt logged in `ops.notification`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import httpx
from ecowatt_kernel.db import Database
from ecowatt_kernel.notify import SmsGateway, mask_phone, post_webhook, sms_gateway
from sqlalchemy import ColumnElement, any_, case, exists, literal, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_ops.clocks.models import LEVEL_ZH, REQUEST_KIND_ZH, Level, RequestKind
from ecowatt_ops.desk.access import ESCALATION
from ecowatt_ops.desk.settings import DeskSettings
from ecowatt_ops.escalation.models import duty_contact, escalation, notification
from ecowatt_ops.incidents.models import incident
from ecowatt_ops.incidents.service import add_event
from ecowatt_ops.support.models import CLOCK_RUNNING, support_request
from ecowatt_ops.support.service import add_request_event

__all__ = ["Escalated", "Notifier", "notifier_from_settings", "run_escalations"]

_logger = logging.getLogger(__name__)
ANNOUNCE_WITHIN = timedelta(days=1)
"""Cases older than this are not announced any more (e.g. after the desk was down a week)."""
BATCH = 200


class Notifier:
    """Sends one desk event to the contacts who want it and to the configured webhooks."""

    def __init__(
        self,
        *,
        sms: SmsGateway,
        webhook_urls: Sequence[str],
        webhook_secret: str | None,
        timeout_s: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.sms = sms
        self.webhook_urls = tuple(webhook_urls)
        self.webhook_secret = webhook_secret
        self.timeout_s = timeout_s
        self.transport = transport

    async def send(
        self,
        *,
        session: AsyncSession,
        event: str,
        text: str,
        payload: dict[str, Any],
        now: datetime,
        level: Level | None = None,
        subject_kind: str | None = None,
        subject_id: str | None = None,
    ) -> int:
        """Send and log; returns the number of deliveries that did not fail."""
        c = duty_contact.c
        wanted = [c.active, literal(event) == any_(c.events)]
        if level is not None:
            wanted.append(or_(c.levels == [], literal(level.value) == any_(c.levels)))
        contacts = (await session.execute(select(duty_contact).where(*wanted))).mappings().all()
        targets: list[tuple[str, str, str]] = []  # (channel, address, shown recipient)
        for contact in contacts:
            if contact["phone"]:
                targets.append(("sms", contact["phone"], mask_phone(contact["phone"])))
            if contact["webhook_url"]:
                targets.append(("webhook", contact["webhook_url"], _host(contact["webhook_url"])))
        targets += [("webhook", url, _host(url)) for url in self.webhook_urls]
        body = {**payload, "event": event, "text": text}
        delivered = 0
        for channel, address, shown in dict.fromkeys(targets):
            try:
                if channel == "sms":
                    detail = await self.sms.send(address, text)
                    outcome = "logged" if detail == "logged" else "sent"
                else:
                    detail = await post_webhook(
                        address,
                        body,
                        secret=self.webhook_secret,
                        timeout_s=self.timeout_s,
                        transport=self.transport,
                    )
                    outcome = "sent"
                delivered += 1
            except Exception as exc:
                detail, outcome = f"{type(exc).__name__}: {exc}"[:300], "failed"
                _logger.warning("desk notification %s to %s failed: %s", event, shown, detail)
            await session.execute(
                notification.insert().values(
                    at=now,
                    event=event,
                    subject_kind=subject_kind,
                    subject_id=subject_id,
                    channel=channel,
                    recipient=shown,
                    outcome=outcome,
                    detail=str(detail)[:300],
                    message=text,
                )
            )
        return delivered


def _host(url: str) -> str:
    return urlsplit(url).netloc or url[:40]


def notifier_from_settings(settings: DeskSettings) -> Notifier:
    """The notifier the settings describe (SMS to the log when no provider is set)."""
    key = settings.ops_sms_api_key.get_secret_value() if settings.ops_sms_api_key else None
    secret = settings.ops_webhook_secret
    return Notifier(
        sms=sms_gateway(
            provider="http" if settings.ops_sms_url else "log",
            url=settings.ops_sms_url,
            api_key=key,
            sign=settings.ops_sms_sign,
        ),
        webhook_urls=settings.ops_webhook_urls,
        webhook_secret=secret.get_secret_value() if secret else None,
        timeout_s=settings.ops_notify_timeout_s,
    )


@dataclass(frozen=True)
class Escalated:
    subject_kind: str
    subject_id: str
    number: str
    clock: str
    stage: str
    due_at: datetime
    """The deadline escalated (for `opened`: when the case was opened or received)."""


def _stage(due_at: Any, now: datetime) -> ColumnElement[Any]:
    return case((due_at <= now, literal("breached")), else_=literal("warning"))


def _not_recorded(kind: str, subject: Any, clock: str, stage: Any, due: Any) -> ColumnElement[bool]:
    e = escalation.c
    return ~exists().where(
        e.subject_kind == kind,
        e.subject_id == subject,
        e.clock == clock,
        e.stage == stage,
        e.due_at == due,
    )


async def _candidates(session: AsyncSession, now: datetime) -> list[Escalated]:
    i, r = incident.c, support_request.c
    found: list[Escalated] = []
    queries = []
    # incidents: announce, response clock (while open), resolution clock (until resolved)
    queries.append(
        select(
            literal("incident"),
            i.id,
            i.number,
            literal("response"),
            literal("opened"),
            i.opened_at,
        ).where(
            i.status.in_(("open", "responded", "mitigated", "resolved")),
            i.opened_at > now - ANNOUNCE_WITHIN,
            _not_recorded("incident", i.id, "response", "opened", i.opened_at),
        )
    )
    response_stage = _stage(i.response_due, now)
    queries.append(
        select(
            literal("incident"),
            i.id,
            i.number,
            literal("response"),
            response_stage,
            i.response_due,
        ).where(
            i.status == "open",
            i.response_warn_at <= now,
            _not_recorded("incident", i.id, "response", response_stage, i.response_due),
        )
    )
    resolution_stage = _stage(i.resolution_due, now)
    queries.append(
        select(
            literal("incident"),
            i.id,
            i.number,
            literal("resolution"),
            resolution_stage,
            i.resolution_due,
        ).where(
            i.status.in_(("open", "responded", "mitigated")),
            i.resolution_warn_at <= now,
            _not_recorded("incident", i.id, "resolution", resolution_stage, i.resolution_due),
        )
    )
    # requests: announce, then their one clock
    queries.append(
        select(
            literal("request"), r.id, r.number, literal("request"), literal("opened"), r.received_at
        ).where(
            r.status.in_(CLOCK_RUNNING),
            r.received_at > now - ANNOUNCE_WITHIN,
            _not_recorded("request", r.id, "request", "opened", r.received_at),
        )
    )
    request_stage = _stage(r.due_at, now)
    queries.append(
        select(
            literal("request"), r.id, r.number, literal("request"), request_stage, r.due_at
        ).where(
            r.sla_stopped_at.is_(None),
            r.status.in_(CLOCK_RUNNING),
            r.warn_at <= now,
            _not_recorded("request", r.id, "request", request_stage, r.due_at),
        )
    )
    for query in queries:
        for row in (await session.execute(query.limit(BATCH))).all():
            found.append(Escalated(*row))
    # announcements first, then by deadline
    found.sort(key=lambda e: (e.stage != "opened", e.due_at))
    return found


async def _message(
    session: AsyncSession, item: Escalated, zone: ZoneInfo
) -> tuple[str, str, dict[str, Any], Level | None]:
    def shown(moment: datetime) -> str:
        return moment.astimezone(zone).strftime("%m-%d %H:%M")

    due = shown(item.due_at)
    if item.subject_kind == "incident":
        row = (
            (await session.execute(select(incident).where(incident.c.id == item.subject_id)))
            .mappings()
            .one()
        )
        level = Level(row["level"])
        head = f"故障 {row['number']}（{LEVEL_ZH[level]}）"
        what = row["title"]
        clock = "响应时限" if item.clock == "response" else "解决时限"
        if item.stage == "opened":
            text = (
                f"新{head}：{what}。响应时限 {shown(row['response_due'])}，"
                f"解决时限 {shown(row['resolution_due'])}。"
            )
            event = "incident_opened"
        elif item.stage == "warning":
            text = f"{head}即将超出{clock}（{due}），请尽快处理：{what}"
            event = "warning"
        else:
            text = f"{head}已超出{clock}（{due}）：{what}"
            event = "breached"
        payload = {"level": level.value, "title": what, "status": row["status"]}
    else:
        row = (
            (
                await session.execute(
                    select(support_request).where(support_request.c.id == item.subject_id)
                )
            )
            .mappings()
            .one()
        )
        level = None
        head = f"服务请求 {row['number']}（{REQUEST_KIND_ZH[RequestKind(row['kind'])]}）"
        what = row["title"]
        if item.stage == "opened":
            text, event = f"新{head}：{what}。时限 {shown(row['due_at'])}。", "request_submitted"
        elif item.stage == "warning":
            text, event = f"{head}即将超时（{due}），请尽快处理：{what}", "warning"
        else:
            text, event = f"{head}已超时（{due}）：{what}", "breached"
        payload = {"kind": row["kind"], "title": what, "status": row["status"]}
    deadline = item.due_at
    if item.stage == "opened":
        deadline = row["response_due"] if item.subject_kind == "incident" else row["due_at"]
    payload |= {
        "subject_kind": item.subject_kind,
        "subject_id": item.subject_id,
        "number": item.number,
        "clock": item.clock,
        "stage": item.stage,
        "due_at": deadline.isoformat(),
    }
    return "【EcoWatt 运维】" + text, event, payload, level


async def run_escalations(
    *, db: Database, notifier: Notifier, settings: DeskSettings, now: datetime
) -> list[Escalated]:
    """One pass at `now`: record, log and send every stage newly reached; returns them."""
    zone = ZoneInfo(settings.timezone)
    async with db.session() as session:
        candidates = await _candidates(session, now)
    done: list[Escalated] = []
    for item in candidates:
        async with db.transaction() as session:
            inserted = await session.scalar(
                insert(escalation)
                .values(
                    subject_kind=item.subject_kind,
                    subject_id=item.subject_id,
                    clock=item.clock,
                    stage=item.stage,
                    due_at=item.due_at,
                    at=now,
                )
                .on_conflict_do_nothing()
                .returning(escalation.c.id)
            )
            if inserted is None:
                continue
            text, event, payload, level = await _message(session, item, zone)
            details = {"clock": item.clock, "stage": item.stage}
            if item.stage != "opened" and item.subject_kind == "incident":
                await add_event(
                    session=session,
                    incident_id=item.subject_id,
                    kind="escalated",
                    actor=ESCALATION,
                    at=now,
                    text=text,
                    details=details,
                )
            elif item.stage != "opened":
                await add_request_event(
                    session=session,
                    request_id=item.subject_id,
                    kind="escalated",
                    actor=ESCALATION,
                    at=now,
                    text=text,
                    details=details,
                )
            await notifier.send(
                session=session,
                event=event,
                text=text,
                payload=payload,
                now=now,
                level=level,
                subject_kind=item.subject_kind,
                subject_id=item.subject_id,
            )
        done.append(item)
    return done
