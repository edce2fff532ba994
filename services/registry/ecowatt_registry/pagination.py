"""Sorting for the list endpoints; pages come from the kernel (`ecowatt_kernel.pagination`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from ecowatt_kernel.pagination import Page, PageParams, PageRequest, fetch_page
from ecowatt_kernel.problems import Problem
from fastapi import Query
from sqlalchemy import Row, Select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

__all__ = ["Page", "PageParams", "SortParam", "order_by", "paginate"]

SortParam = Annotated[
    str | None,
    Query(description="Comma-separated fields; a leading '-' sorts descending, e.g. -updated_at"),
]


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
    request: PageRequest,
    sort: str | None,
    allowed_sort: Mapping[str, ColumnElement[Any]],
    default_sort: str,
    tiebreak: ColumnElement[Any],
) -> tuple[list[Row[Any]], int]:
    """The rows of one page of `query`, sorted as asked (then by `tiebreak`), and the total."""
    ordered = query.order_by(*order_by(sort, allowed_sort, default_sort), tiebreak)
    return await fetch_page(session, ordered, request)
