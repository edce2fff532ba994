"""Partner datasets: read-only, paginated, incremental since a cursor (see service.py)."""

from __future__ import annotations

from typing import Annotated, Any

from ecowatt_kernel.app import DbSession
from ecowatt_kernel.identity import CurrentIdentity
from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from ecowatt_reporting.datasets.service import (
    DATASETS,
    SCOPE_NAMES,
    check_access,
    dataset_or_404,
    read_page,
)

router = APIRouter(tags=["datasets"])
DEFAULT_LIMIT, MAX_LIMIT = 500, 5000


class DatasetInfo(BaseModel):
    name: str
    title: str
    description: str
    scope: str = Field(description="The API-key scope that grants this dataset")
    key: list[str]
    columns: list[str]
    example: dict[str, Any]


class DatasetCatalogue(BaseModel):
    datasets: list[DatasetInfo]
    scopes: list[str] = Field(description="Every scope name; `dataset:*` grants all datasets")


class DatasetPageOut(BaseModel):
    dataset: str
    items: list[dict[str, Any]]
    next_cursor: str | None = Field(
        description="Pass it as `cursor` for the rows written after these; keep it when "
        "`has_more` is false and ask again later for new rows"
    )
    has_more: bool


@router.get(
    "/datasets",
    summary="The partner datasets and the API-key scopes that grant them",
    response_model=DatasetCatalogue,
)
async def catalogue(identity: CurrentIdentity) -> DatasetCatalogue:
    return DatasetCatalogue(
        datasets=[
            DatasetInfo(
                name=d.name,
                title=d.title,
                description=d.description,
                scope=d.scope,
                key=list(d.key),
                columns=list(d.columns),
                example=d.example,
            )
            for d in DATASETS.values()
        ],
        scopes=SCOPE_NAMES,
    )


_EXAMPLE = {
    "dataset": "energy_15min",
    "items": [DATASETS["energy_15min"].example],
    "next_cursor": "WzE4MzQ1LCJwLTAwMDEiLCIyMDI2LTEyLTA3VDAyOjAwOjAwKzAwOjAwIl0",
    "has_more": True,
}


@router.get(
    "/datasets/{name}",
    summary="One page of a dataset, after a cursor (incremental; never skips or repeats)",
    response_model=DatasetPageOut,
    responses={
        200: {"content": {"application/json": {"example": _EXAMPLE}}},
        403: {"description": "The API key lacks `dataset:<name>` (or `dataset:*`)"},
    },
)
async def page(
    name: str,
    session: DbSession,
    identity: CurrentIdentity,
    cursor: Annotated[
        str | None, Query(description="`next_cursor` of the previous page; none: from the start")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    district: Annotated[
        str | None, Query(description="Narrow to one district (within the key's districts)")
    ] = None,
) -> DatasetPageOut:
    dataset = dataset_or_404(name)
    check_access(identity, dataset)
    found = await read_page(
        session,
        dataset=dataset,
        scope=identity.scope,
        cursor=cursor,
        limit=limit,
        district=district,
    )
    return DatasetPageOut(
        dataset=name, items=found.items, next_cursor=found.next_cursor, has_more=found.has_more
    )
