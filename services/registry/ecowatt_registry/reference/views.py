"""Read-only reference tables: districts, industries and zones."""

from __future__ import annotations

from typing import Literal

from ecowatt_kernel.identity import CurrentIdentity
from fastapi import APIRouter, Query
from pydantic import BaseModel

from ecowatt_registry.reference import tables

router = APIRouter(prefix="/reference", tags=["reference"])


class DivisionRead(BaseModel):
    code: str
    name: str
    level: str
    parent: str | None


class IndustryRead(BaseModel):
    code: str
    name: str
    level: str
    parent: str | None


class ZoneRead(BaseModel):
    code: str
    name: str


@router.get("/districts", summary="GB/T 2260 divisions of Shaanxi")
async def list_districts(
    _: CurrentIdentity,
    parent: str | None = Query(None, description="Only children of this code, e.g. 610100"),
    level: Literal["province", "city", "county"] | None = None,
) -> list[DivisionRead]:
    """Shaanxi divisions, optionally the children of one code or one level."""
    return [
        DivisionRead(code=d.code, name=d.name, level=d.level, parent=d.parent)
        for d in tables.divisions().values()
        if (parent is None or d.parent == parent) and (level is None or d.level == level)
    ]


@router.get("/industries", summary="GB/T 4754-2017 industries")
async def list_industries(
    _: CurrentIdentity,
    parent: str | None = Query(None, description="Only children of this code, e.g. C or 33"),
    level: Literal["section", "division", "group", "class"] | None = None,
    q: str | None = Query(None, description="Substring of the code or the name"),
) -> list[IndustryRead]:
    """Industries, optionally the children of one code, one level, or matching `q`."""
    return [
        IndustryRead(code=i.code, name=i.name, level=i.level, parent=i.parent)
        for i in tables.industries().values()
        if (parent is None or i.parent == parent)
        and (level is None or i.level == level)
        and (q is None or q in i.code or q in i.name)
    ]


@router.get("/zones", summary="Xi'an management zones")
async def list_zones(_: CurrentIdentity) -> list[ZoneRead]:
    """The Xi'an development and management zones."""
    return [ZoneRead(code=z.code, name=z.name) for z in tables.zones().values()]
