"""Duty contacts (CRUD, export) and the notification log (list, export)."""

from __future__ import annotations

from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from ecowatt_kernel.app import DbSession
from ecowatt_kernel.excel import XLSX_MEDIA_TYPE, Column, Sheet, xlsx_response
from ecowatt_kernel.ids import new_id
from ecowatt_kernel.pagination import Page, PageParams, fetch_page
from ecowatt_kernel.problems import NotFound
from ecowatt_kernel.times import LocalDateTime
from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy import Select, select, update

from ecowatt_ops.clocks.models import LEVEL_ZH
from ecowatt_ops.desk.access import Editors, publish_audit
from ecowatt_ops.desk.exports import EXPORT_LIMIT, local_time, safe_row
from ecowatt_ops.desk.runtime import Runtime
from ecowatt_ops.escalation.models import (
    EVENT_ZH,
    ContactIn,
    ContactOut,
    ContactUpdate,
    NotificationOut,
    duty_contact,
    notification,
)

__all__ = ["router"]

router = APIRouter(tags=["escalation"])


def _contacts() -> Select[tuple[object, ...]]:
    return select(duty_contact).order_by(duty_contact.c.name, duty_contact.c.id)


@router.get(
    "/contacts",
    summary="Duty contacts told about new cases, near and missed deadlines, reports",
    response_model=Page[ContactOut],
)
async def list_contacts(_: Editors, session: DbSession, page: PageParams) -> Page[ContactOut]:
    rows, total = await fetch_page(session, _contacts(), page)
    return Page.of([ContactOut.model_validate(dict(r._mapping)) for r in rows], total, page)


CONTACT_COLUMNS = (
    Column("name", "姓名", width=12),
    Column("phone", "手机", width=14),
    Column("webhook_url", "Webhook", width=40),
    Column("levels", "故障级别", width=24),
    Column("events", "通知事项", width=40),
    Column("active", "启用", width=6),
    Column("note", "备注", width=30),
)


@router.get(
    "/contacts.xlsx",
    summary="Export the duty contacts as Excel",
    responses={200: {"content": {XLSX_MEDIA_TYPE: {}}}},
)
async def export_contacts(_: Editors, session: DbSession) -> Response:
    rows = []
    for row in (await session.execute(_contacts())).mappings():
        rows.append(
            safe_row(
                dict(row)
                | {
                    "levels": [
                        LEVEL_ZH[level] for level in ContactOut.model_validate(dict(row)).levels
                    ]
                    or ["全部"],
                    "events": [EVENT_ZH[e] for e in row["events"]],
                    "active": "是" if row["active"] else "否",
                }
            )
        )
    return await xlsx_response([Sheet("值班联系人", CONTACT_COLUMNS, rows)], "contacts.xlsx")


async def _contact(session: DbSession, contact_id: str) -> ContactOut:
    row = (
        (await session.execute(select(duty_contact).where(duty_contact.c.id == contact_id)))
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"contact {contact_id} not found")
    return ContactOut.model_validate(dict(row))


@router.post("/contacts", summary="Add a duty contact", status_code=201, response_model=ContactOut)
async def add_contact(
    body: ContactIn, request: Request, identity: Editors, session: DbSession, runtime: Runtime
) -> ContactOut:
    contact_id = new_id()
    await session.execute(
        duty_contact.insert().values(
            id=contact_id,
            **body.model_dump(mode="json"),
            updated_by=identity.subject,
            updated_at=runtime.now(),
        )
    )
    await session.commit()
    await publish_audit(
        request, identity=identity, action="contact.create", resource=f"contact:{contact_id}"
    )
    return await _contact(session, contact_id)


@router.patch("/contacts/{contact_id}", summary="Change a duty contact", response_model=ContactOut)
async def change_contact(
    contact_id: str,
    body: ContactUpdate,
    request: Request,
    identity: Editors,
    session: DbSession,
    runtime: Runtime,
) -> ContactOut:
    await _contact(session, contact_id)
    values = body.model_dump(mode="json", exclude_unset=True)
    if values:
        await session.execute(
            update(duty_contact)
            .where(duty_contact.c.id == contact_id)
            .values(**values, updated_by=identity.subject, updated_at=runtime.now())
        )
        await session.commit()
        await publish_audit(
            request,
            identity=identity,
            action="contact.update",
            resource=f"contact:{contact_id}",
            details={"fields": sorted(values)},
        )
    return await _contact(session, contact_id)


@router.delete("/contacts/{contact_id}", summary="Remove a duty contact", status_code=204)
async def remove_contact(
    contact_id: str, request: Request, identity: Editors, session: DbSession
) -> Response:
    await _contact(session, contact_id)
    await session.execute(duty_contact.delete().where(duty_contact.c.id == contact_id))
    await session.commit()
    await publish_audit(
        request, identity=identity, action="contact.delete", resource=f"contact:{contact_id}"
    )
    return Response(status_code=204)


def _notifications(
    event: Annotated[
        Literal["incident_opened", "request_submitted", "warning", "breached", "report"] | None,
        Query(),
    ] = None,
    outcome: Annotated[Literal["sent", "logged", "failed"] | None, Query()] = None,
    subject_id: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[LocalDateTime | None, Query(alias="from")] = None,
    until: Annotated[LocalDateTime | None, Query(alias="to")] = None,
) -> Select[tuple[object, ...]]:
    c = notification.c
    query = select(notification)
    if event:
        query = query.where(c.event == event)
    if outcome:
        query = query.where(c.outcome == outcome)
    if subject_id:
        query = query.where(c.subject_id == subject_id)
    if since:
        query = query.where(c.at >= since)
    if until:
        query = query.where(c.at < until)
    return query.order_by(c.at.desc(), c.id.desc())


Notifications = Annotated[Select[tuple[object, ...]], Depends(_notifications)]


@router.get(
    "/notifications",
    summary="Every notification the desk sent (or failed to send), newest first",
    response_model=Page[NotificationOut],
)
async def list_notifications(
    _: Editors, session: DbSession, page: PageParams, query: Notifications
) -> Page[NotificationOut]:
    rows, total = await fetch_page(session, query, page)
    return Page.of(
        [
            NotificationOut.model_validate(dict(r._mapping) | {"event_name": EVENT_ZH[r.event]})
            for r in rows
        ],
        total,
        page,
    )


NOTIFICATION_COLUMNS = (
    Column("at", "时间", width=18),
    Column("event", "事项", width=12),
    Column("channel", "渠道", width=8),
    Column("recipient", "接收方", width=20),
    Column("outcome", "结果", width=8),
    Column("message", "内容", width=60),
    Column("detail", "说明", width=30),
)
_OUTCOME = {"sent": "已发送", "logged": "仅记录日志", "failed": "失败"}


@router.get(
    "/notifications.xlsx",
    summary="Export the notification log as Excel",
    responses={200: {"content": {XLSX_MEDIA_TYPE: {}}}},
)
async def export_notifications(
    _: Editors, session: DbSession, query: Notifications, runtime: Runtime
) -> Response:
    zone = ZoneInfo(runtime.settings.timezone)
    rows = [
        local_time(
            safe_row(
                dict(r)
                | {
                    "event": EVENT_ZH[r["event"]],
                    "outcome": _OUTCOME[r["outcome"]],
                    "channel": "短信" if r["channel"] == "sms" else "Webhook",
                }
            ),
            zone,
        )
        for r in (await session.execute(query.limit(EXPORT_LIMIT))).mappings()
    ]
    return await xlsx_response(
        [Sheet("通知记录", NOTIFICATION_COLUMNS, rows)], "notifications.xlsx"
    )
