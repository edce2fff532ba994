"""Enterprise endpoints: CRUD, export, the performance-grade history, the whole archive."""

from __future__ import annotations

from typing import Any

from ecowatt_kernel.app import DbSession
from ecowatt_kernel.identity import CurrentIdentity
from fastapi import Query
from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_registry import validation
from ecowatt_registry.archive import ENTERPRISE
from ecowatt_registry.control_groups.models import ControlGroup, ControlGroupRead
from ecowatt_registry.control_groups.views import RESOURCE as GROUPS
from ecowatt_registry.crud import Conditions, EnterpriseFilters, Resource, build_router
from ecowatt_registry.devices.models import Device, DeviceRead
from ecowatt_registry.devices.views import RESOURCE as DEVICES
from ecowatt_registry.enterprises.models import (
    Enterprise,
    EnterpriseCreate,
    EnterpriseRead,
    EnterpriseUpdate,
    GradeRead,
    GradeRecord,
)
from ecowatt_registry.excel.exporter import exporter
from ecowatt_registry.facilities.models import Facility, FacilityRead
from ecowatt_registry.facilities.views import RESOURCE as FACILITIES
from ecowatt_registry.points.models import Point, PointRead
from ecowatt_registry.points.views import RESOURCE as POINTS
from ecowatt_registry.production_lines.models import ProductionLine, ProductionLineRead
from ecowatt_registry.production_lines.views import RESOURCE as LINES
from ecowatt_registry.reference import tables


def filters(
    common: EnterpriseFilters,
    key_industry: str | None = Query(None, description="重点行业类型"),
    control_type: str | None = Query(None, description="管控类型"),
    credit_code_missing: bool | None = Query(None, description="true: only without a credit code"),
) -> Conditions:
    conditions = list(common)
    if key_industry:
        conditions.append(Enterprise.key_industry == key_industry)
    if control_type:
        conditions.append(Enterprise.control_type == control_type)
    if credit_code_missing is not None:
        conditions.append(
            Enterprise.credit_code.is_(None)
            if credit_code_missing
            else Enterprise.credit_code.is_not(None)
        )
    return conditions


async def counts(session: AsyncSession, ids: list[str]) -> dict[str, dict[str, Any]]:
    """Facility, point and device counts of the enterprises `ids`."""
    result: dict[str, dict[str, Any]] = {key: {} for key in ids}
    facilities = await session.execute(
        select(Facility.enterprise_id, Facility.kind, func.count())
        .where(Facility.enterprise_id.in_(ids))
        .group_by(Facility.enterprise_id, Facility.kind)
    )
    for enterprise_id, kind, count in facilities.all():
        result[enterprise_id][f"{kind}_facility_count"] = count
    for model, name in ((Point, "point_count"), (Device, "device_count")):
        rows = await session.execute(
            select(model.enterprise_id, func.count())
            .where(model.enterprise_id.in_(ids))
            .group_by(model.enterprise_id)
        )
        for owner, count in rows.all():
            if owner is not None:  # `IN` matches no NULL; narrows the nullable column's type
                result[owner][name] = count
    return result


def derived(row: dict[str, Any]) -> dict[str, Any]:
    """Fields computed from the stored ones."""
    industry = tables.industries().get(row.get("industry_code") or "")
    path = tables.industry_path(row.get("industry_code"))
    zone = tables.zones().get(row.get("zone") or "")
    return {
        "credit_code_valid": validation.is_valid_credit_code(row.get("credit_code")),
        "zone_name": zone.name if zone else None,
        "industry_level": industry.level if industry else None,
        "industry_group": path["group"].code if "group" in path else None,
    }


async def dependents(session: AsyncSession, key: str) -> list[str]:
    """What still belongs to the enterprise."""
    found = []
    for model, label in (
        (ProductionLine, "production lines"),
        (Facility, "facilities"),
        (Point, "points"),
        (Device, "devices"),
        (ControlGroup, "control groups"),
    ):
        count = await session.scalar(
            select(func.count()).select_from(model).where(model.enterprise_id == key)
        )
        if count:
            found.append(f"{count} {label}")
    return found


RESOURCE = Resource(
    kind=ENTERPRISE,
    path="/enterprises",
    tag="enterprises",
    label="enterprise",
    create_model=EnterpriseCreate,
    update_model=EnterpriseUpdate,
    read_model=EnterpriseRead,
    sortable={
        "name": Enterprise.name,
        "district_code": Enterprise.district_code,
        "zone": Enterprise.zone,
        "industry_code": Enterprise.industry_code,
        "performance_grade": Enterprise.performance_grade,
        "production_status": Enterprise.production_status,
        "updated_at": Enterprise.updated_at,
        "created_at": Enterprise.created_at,
    },
    default_sort="name",
    search=(Enterprise.name, Enterprise.credit_code, Enterprise.address, Enterprise.om_company),
    filters=filters,
    required=("name", "district_code", "performance_grade", "exempt", "production_status",
              "contacts"),
    extras=counts,
    dependents=dependents,
    to_read=derived,
    export=exporter("enterprise"),
)  # fmt: skip

router = build_router(RESOURCE)


@router.get("/{key}/grades", summary="Performance-grade history of an enterprise")
async def list_grades(
    key: str, db_session: DbSession, identity: CurrentIdentity
) -> list[GradeRead]:
    """Every grade period of the enterprise, newest first."""
    await RESOURCE.read_one(db_session, identity.scope, key)
    rows = await db_session.scalars(
        select(GradeRecord)
        .where(GradeRecord.enterprise_id == key)
        .order_by(GradeRecord.valid_from.desc(), GradeRecord.id.desc())
    )
    return [
        GradeRead(
            grade=r.grade,  # type: ignore[arg-type]
            valid_from=r.valid_from,
            valid_to=r.valid_to,
            actor=r.actor,
            reason=r.reason,
            recorded_at=r.recorded_at,
        )
        for r in rows
    ]


__all__ = ["RESOURCE", "router"]


class EnterpriseArchive(BaseModel):
    """一企一档: an enterprise with everything that belongs to it."""

    enterprise: EnterpriseRead
    production_lines: list[ProductionLineRead]
    facilities: list[FacilityRead]
    control_groups: list[ControlGroupRead]
    devices: list[DeviceRead]
    points: list[PointRead]


@router.get("/{key}/archive", summary="The whole archive of one enterprise (一企一档)")
async def read_archive(key: str, db_session: DbSession, identity: CurrentIdentity) -> Any:
    """The enterprise, its lines, facilities, control groups, devices and points."""
    enterprise = await RESOURCE.read_one(db_session, identity.scope, key)
    parts: dict[str, Any] = {"enterprise": enterprise}
    for name, resource in (
        ("production_lines", LINES),
        ("facilities", FACILITIES),
        ("control_groups", GROUPS),
        ("devices", DEVICES),
        ("points", POINTS),
    ):
        column = resource.table.c.enterprise_id
        ids = list(
            (
                await db_session.scalars(
                    select(resource.pk_column)
                    .where(column == key)
                    .order_by(*resource.default_order(), resource.pk_column)
                )
            ).all()
        )
        parts[name] = await resource.read_many(db_session, ids)
    return EnterpriseArchive.model_validate(parts)
