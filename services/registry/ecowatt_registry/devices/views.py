"""Device (数采仪) endpoints; the password is set, verified by ingest, never returned."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from ecowatt_kernel.app import DbSession
from ecowatt_kernel.identity import CurrentIdentity
from ecowatt_kernel.passwords import hash_password
from ecowatt_kernel.problems import Conflict
from fastapi import Query, Request, Response
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_registry import access
from ecowatt_registry.archive import DEVICE, ArchiveWriter
from ecowatt_registry.crud import Conditions, EnterpriseFilters, Resource, build_router
from ecowatt_registry.devices.models import (
    Device,
    DeviceCreate,
    DeviceRead,
    DeviceUpdate,
    PasswordChange,
)
from ecowatt_registry.events.relay import commit
from ecowatt_registry.excel.exporter import exporter
from ecowatt_registry.points.models import Point


def filters(
    common: EnterpriseFilters,
    status: Annotated[list[str] | None, Query(description="active, disabled, removed")] = None,
    protocol_version: str | None = None,
) -> Conditions:
    conditions = list(common)
    if status:
        conditions.append(Device.status.in_(status))
    if protocol_version:
        conditions.append(Device.protocol_version == protocol_version)
    return conditions


async def point_counts(session: AsyncSession, ids: list[str]) -> dict[str, dict[str, Any]]:
    rows = await session.execute(
        select(Point.device_mn, func.count())
        .where(Point.device_mn.in_(ids))
        .group_by(Point.device_mn)
    )
    # `IN` matches no NULL device; the test only narrows the nullable column's type.
    return {mn: {"point_count": count} for mn, count in rows.all() if mn is not None}


async def dependents(session: AsyncSession, key: str) -> list[str]:
    count = await session.scalar(
        select(func.count()).select_from(Point).where(Point.device_mn == key)
    )
    return [f"{count} points"] if count else []


def to_read(row: dict[str, Any]) -> dict[str, Any]:
    return {"has_password": bool(row.get("password_hash"))}


RESOURCE = Resource(
    kind=DEVICE,
    path="/devices",
    tag="devices",
    label="device",
    create_model=DeviceCreate,
    update_model=DeviceUpdate,
    read_model=DeviceRead,
    sortable={
        "mn": Device.mn,
        "name": Device.name,
        "status": Device.status,
        "updated_at": Device.updated_at,
    },
    default_sort="mn",
    search=(Device.mn, Device.name),
    filters=filters,
    required=("protocol_version", "electricity_profile", "crc_variant", "status"),
    extras=point_counts,
    dependents=dependents,
    to_read=to_read,
    export=exporter("device"),
)
router = build_router(RESOURCE)


@router.put(
    "/{key}/password",
    summary="Set a device's HJ 212 password",
    status_code=204,
    dependencies=[access.CanEdit],
)
async def set_password(
    key: str,
    body: PasswordChange,
    request: Request,
    db_session: DbSession,
    identity: CurrentIdentity,
) -> Response:
    """Store the scrypt hash of the new PW; the PW itself is never stored or returned."""
    await RESOURCE.read_one(db_session, identity.scope, key)
    digest = await asyncio.to_thread(hash_password, body.password.get_secret_value())
    writer = ArchiveWriter(db_session, actor=access.actor_of(identity), reason=body.reason)
    result = await writer.upsert(DEVICE, [{"mn": key, "password_hash": digest}])
    if not result.updated:
        raise Conflict(f"device {key} was not updated")
    await commit(request, db_session)
    return Response(status_code=204)
