"""Notification endpoints: the log, the district contacts."""

from __future__ import annotations

from typing import Any

from ecowatt_kernel.app import DbSession
from ecowatt_kernel.pagination import Page, PageParams
from fastapi import APIRouter

from ecowatt_alarm.dependencies import Bureau, CitySupervisor, Notifier
from ecowatt_alarm.notifications import service
from ecowatt_alarm.notifications.models import DistrictContact

router = APIRouter(tags=["notifications"])


@router.get("/notifications", summary="The notification log")
async def notifications(
    session: DbSession, page: PageParams, identity: Bureau, alarm_id: str | None = None
) -> Page[dict[str, Any]]:
    return await service.list_notifications(
        session=session, identity=identity, page=page, alarm_id=alarm_id
    )


@router.put("/district-contacts", summary="Add or change a district contact")
async def put_contact(
    body: DistrictContact, session: DbSession, notifier: Notifier, identity: CitySupervisor
) -> dict[str, Any]:
    values = await service.put_contact(session=session, body=body, policy=notifier.webhook_policy)
    await session.commit()
    return values


@router.get("/district-contacts", summary="District contacts")
async def get_contacts(
    session: DbSession, page: PageParams, identity: Bureau
) -> Page[dict[str, Any]]:
    return await service.list_contacts(session=session, identity=identity, page=page)
