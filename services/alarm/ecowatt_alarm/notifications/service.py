"""The notification log and the district contacts, filtered by the caller's scope."""

from __future__ import annotations

from typing import Any

from ecowatt_kernel.identity import Identity
from ecowatt_kernel.pagination import Page, PageRequest, fetch_page
from ecowatt_kernel.problems import Problem
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_alarm import tables as T
from ecowatt_alarm.alarms.models import alarm_scope
from ecowatt_alarm.notifications.models import DistrictContact
from ecowatt_alarm.notifications.webhooks import WebhookPolicy, WebhookRefused, check_url

__all__ = ["list_contacts", "list_notifications", "put_contact"]


async def list_notifications(
    *, session: AsyncSession, identity: Identity, page: PageRequest, alarm_id: str | None = None
) -> Page[dict[str, Any]]:
    """Notification attempts of alarms in scope, newest first."""
    n = T.notification.c
    query = (
        select(T.notification)
        .join(T.alarm, T.alarm.c.id == n.alarm_id)
        .where(alarm_scope(identity.scope))
    )
    if alarm_id:
        query = query.where(n.alarm_id == alarm_id)
    rows, total = await fetch_page(session, query.order_by(n.id.desc()), page)
    return Page.of([dict(r._mapping) for r in rows], total, page)


async def put_contact(
    *, session: AsyncSession, body: DistrictContact, policy: WebhookPolicy
) -> dict[str, Any]:
    """Add or change one contact of a district (by district and name); a webhook URL must
    reach an address the policy allows (422 otherwise, nothing stored)."""
    if body.webhook_url:
        try:
            await check_url(body.webhook_url, policy)
        except WebhookRefused as exc:
            raise Problem(str(exc), status=422, type_suffix="webhook-refused") from None
    values = body.model_dump()
    await session.execute(
        insert(T.district_contact)
        .values(**values)
        .on_conflict_do_update(index_elements=["district_code", "name"], set_=values)
    )
    return values


async def list_contacts(
    *, session: AsyncSession, identity: Identity, page: PageRequest
) -> Page[dict[str, Any]]:
    """District contacts in scope."""
    c = T.district_contact.c
    query = (
        select(T.district_contact)
        .where(identity.scope.where(district_column=c.district_code))
        .order_by(c.district_code, c.name)
    )
    rows, total = await fetch_page(session, query, page)
    return Page.of([dict(r._mapping) for r in rows], total, page)
