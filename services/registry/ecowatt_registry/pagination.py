"""Pages, sorting and text search shared by every list endpoint."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Generic, TypeVar

from ecowatt_kernel.problems import Problem
from fastapi import Query
from pydantic import BaseModel
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

T = TypeVar("T")
MAX_PAGE_SIZE = 500


class Page(BaseModel, Generic[T]):
    """One page of a list."""

    items: list[T]
    total: int
    page: int
    page_size: int


class PageParams(BaseModel):
    page: int
    page_size: int
    sort: str | None


def page_params(
    page: int = Query(1, ge=1, description="1-based page number"),
    page_size: int = Query(50, ge=1, le=MAX_PAGE_SIZE, description="Items per page"),
    sort: str | None = Query(
        None, description="Comma-separated fields; a leading '-' sorts descending, e.g. -updated_at"
    ),
) -> PageParams:
    return PageParams(page=page, page_size=page_size, sort=sort)


def order_by(
    sort: str | None, allowed: Mapping[str, ColumnElement[Any]], default: str
) -> list[ColumnElement[Any]]:
    """ORDER BY clauses for `sort`; 400 for a field that cannot be sorted on."""
    clauses: list[ColumnElement[Any]] = []
    for part in (sort or default).split(","):
        name = part.strip()
        if not name:
            continue
        descending = name.startswith("-")
        column = allowed.get(name.lstrip("-+"))
        if column is None:
            raise Problem(
                f"cannot sort by {name.lstrip('-+')!r}; "
                f"sortable fields: {', '.join(sorted(allowed))}",
                status=400,
                type_suffix="invalid-sort",
            )
        clauses.append(column.desc().nulls_last() if descending else column.asc().nulls_last())
    return clauses


async def paginate(
    session: AsyncSession,
    query: Select[Any],
    *,
    params: PageParams,
    allowed_sort: Mapping[str, ColumnElement[Any]],
    default_sort: str,
    tiebreak: ColumnElement[Any],
) -> tuple[list[Any], int]:
    """The rows of one page of `query` and the total count."""
    total = await session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    ordered = query.order_by(*order_by(params.sort, allowed_sort, default_sort), tiebreak)
    rows = (
        await session.execute(
            ordered.limit(params.page_size).offset((params.page - 1) * params.page_size)
        )
    ).all()
    return list(rows), int(total or 0)
