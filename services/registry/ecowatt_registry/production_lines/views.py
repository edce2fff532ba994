"""Production-line endpoints."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_registry.archive import PRODUCTION_LINE
from ecowatt_registry.crud import Conditions, EnterpriseFilters, Resource, build_router
from ecowatt_registry.excel.exporter import exporter
from ecowatt_registry.facilities.models import Facility
from ecowatt_registry.production_lines.models import (
    ProductionLine,
    ProductionLineCreate,
    ProductionLineRead,
    ProductionLineUpdate,
)


def filters(common: EnterpriseFilters) -> Conditions:
    return list(common)


async def dependents(session: AsyncSession, key: str) -> list[str]:
    count = await session.scalar(
        select(func.count()).select_from(Facility).where(Facility.production_line_id == key)
    )
    return [f"{count} facilities"] if count else []


RESOURCE = Resource(
    kind=PRODUCTION_LINE,
    path="/production-lines",
    tag="production lines",
    label="production line",
    create_model=ProductionLineCreate,
    update_model=ProductionLineUpdate,
    read_model=ProductionLineRead,
    sortable={"name": ProductionLine.name, "updated_at": ProductionLine.updated_at},
    default_sort="name",
    search=(ProductionLine.name, ProductionLine.process),
    filters=filters,
    required=("enterprise_id", "name"),
    dependents=dependents,
    immutable=("enterprise_id",),
    export=exporter("production_line"),
)
router = build_router(RESOURCE)
