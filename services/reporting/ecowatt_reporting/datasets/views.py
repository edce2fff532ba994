"""Partner datasets: read-only, paginated, incremental since a cursor (see service.py).

One route per dataset (`/datasets/enterprises`, `/datasets/energy_15min`, …) rather than a
`/datasets/{name}` template: the gateway's permission matrix gives each its own row (the key
dataset that grants it), and the OpenAPI document shows each one's columns and example.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from ecowatt_kernel.app import DbSession
from ecowatt_kernel.identity import CurrentIdentity
from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from ecowatt_reporting.datasets.service import DATASETS, Dataset, check_access, read_page

router = APIRouter(tags=["datasets"])
DEFAULT_LIMIT, MAX_LIMIT = 500, 5000


class DatasetInfo(BaseModel):
    name: str
    title: str
    description: str
    grant: str = Field(
        description="The API-key dataset that grants this one (GET /api/auth/datasets)"
    )
    path: str = Field(description="Where to read it, under /api/reporting")
    key: list[str]
    columns: list[str]
    example: dict[str, Any]


class DatasetCatalogue(BaseModel):
    datasets: list[DatasetInfo]


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
    summary="The partner datasets and the API-key datasets that grant them",
    response_model=DatasetCatalogue,
)
async def catalogue(identity: CurrentIdentity) -> DatasetCatalogue:
    return DatasetCatalogue(
        datasets=[
            DatasetInfo(
                name=d.name,
                title=d.title,
                description=d.description,
                grant=d.grant,
                path=f"/datasets/{d.name}",
                key=list(d.key),
                columns=list(d.columns),
                example=d.example,
            )
            for d in DATASETS.values()
        ]
    )


Cursor = Annotated[
    str | None, Query(description="`next_cursor` of the previous page; none: from the start")
]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
District = Annotated[
    str | None, Query(description="Narrow to one district (within the key's districts)")
]


def _page_route(dataset: Dataset) -> Callable[..., Awaitable[DatasetPageOut]]:
    async def page(
        session: DbSession,
        identity: CurrentIdentity,
        cursor: Cursor = None,
        limit: Limit = DEFAULT_LIMIT,
        district: District = None,
    ) -> DatasetPageOut:
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
            dataset=dataset.name,
            items=found.items,
            next_cursor=found.next_cursor,
            has_more=found.has_more,
        )

    return page


for _dataset in DATASETS.values():
    router.add_api_route(
        f"/datasets/{_dataset.name}",
        _page_route(_dataset),
        methods=["GET"],
        name=f"dataset_{_dataset.name}",
        summary=f"{_dataset.title}: one page after a cursor (incremental; never skips or repeats)",
        description=_dataset.description,
        response_model=DatasetPageOut,
        responses={
            200: {
                "content": {
                    "application/json": {
                        "example": {
                            "dataset": _dataset.name,
                            "items": [_dataset.example],
                            "next_cursor": "WzE4MzQ1LCJwLTAwMDEiXQ",
                            "has_more": True,
                        }
                    }
                }
            },
            403: {
                "description": f"An API key not granted the dataset `{_dataset.grant}`, or a "
                "role that reads no datasets"
            },
        },
    )
