"""Facility endpoints (production and control facilities)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_registry.archive import FACILITY
from ecowatt_registry.control_groups.models import ControlGroupMember
from ecowatt_registry.crud import Conditions, EnterpriseFilters, Resource, build_router
from ecowatt_registry.excel.exporter import exporter
from ecowatt_registry.facilities.models import (
    Facility,
    FacilityCreate,
    FacilityRead,
    FacilityUpdate,
)
from ecowatt_registry.points.models import Point


def filters(
    common: EnterpriseFilters,
    kind: str | None = Query(None, description="production or control"),
    status: Annotated[list[str] | None, Query(description="active, disabled, removed")] = None,
    production_line_id: str | None = None,
    without_points: bool | None = Query(None, description="true: only facilities with no point"),
) -> Conditions:
    conditions = list(common)
    if kind:
        conditions.append(Facility.kind == kind)
    if status:
        conditions.append(Facility.status.in_(status))
    if production_line_id:
        conditions.append(Facility.production_line_id == production_line_id)
    if without_points is not None:
        has_point = select(Point.id).where(Point.facility_id == Facility.id).exists()
        conditions.append(~has_point if without_points else has_point)
    return conditions


async def point_counts(session: AsyncSession, ids: list[str]) -> dict[str, dict[str, Any]]:
    rows = await session.execute(
        select(Point.facility_id, func.count())
        .where(Point.facility_id.in_(ids))
        .group_by(Point.facility_id)
    )
    # `IN` matches no NULL facility; the test only narrows the nullable column's type.
    return {
        facility: {"point_count": count} for facility, count in rows.all() if facility is not None
    }


async def dependents(session: AsyncSession, key: str) -> list[str]:
    found = []
    points = await session.scalar(
        select(func.count()).select_from(Point).where(Point.facility_id == key)
    )
    if points:
        found.append(f"{points} points")
    groups = await session.scalar(
        select(func.count())
        .select_from(ControlGroupMember)
        .where(ControlGroupMember.facility_id == key)
    )
    if groups:
        found.append(f"{groups} control groups")
    return found


RESOURCE = Resource(
    kind=FACILITY,
    path="/facilities",
    tag="facilities",
    label="facility",
    create_model=FacilityCreate,
    update_model=FacilityUpdate,
    read_model=FacilityRead,
    sortable={
        "name": Facility.name,
        "kind": Facility.kind,
        "code": Facility.code,
        "rated_kw": Facility.rated_kw,
        "updated_at": Facility.updated_at,
    },
    default_sort="name",
    search=(Facility.name, Facility.code, Facility.control_type),
    filters=filters,
    required=("enterprise_id", "kind", "name", "status"),
    extras=point_counts,
    dependents=dependents,
    immutable=("enterprise_id", "kind"),
    export=exporter("facility"),
)
router = build_router(RESOURCE)
