"""Pagination of list endpoints: `page`/`page_size` query parameters, a counted SQL page.

    @router.get("/findings")
    async def findings(page: PageParams, session: DbSession) -> Page[FindingOut]:
        query = select(FINDINGS).where(...).order_by(FINDINGS.c.opened_at.desc())
        rows, total = await fetch_page(session, query, page)
        return Page.of([FindingOut.model_validate(r._asdict()) for r in rows], total, page)

Every list answers `{items, total, page, page_size, pages}`; `page_size` is capped at
`MAX_PAGE_SIZE`, so a client cannot ask for everything in one request (exports stream
instead), and `page` at `MAX_PAGE` (an offset PostgreSQL can hold). Lists that let the
client choose the order take `sort: SortParam` and `fetch_sorted_page`:

    rows, total = await fetch_sorted_page(
        session, query, page, sort=sort, allowed={"name": T.c.name}, default="name",
        tiebreak=T.c.id,
    )
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel
from sqlalchemy import ColumnElement, Row, Select, SQLColumnExpression, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_kernel.problems import Problem

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE",
    "MAX_PAGE_SIZE",
    "Page",
    "PageParams",
    "PageRequest",
    "SearchParam",
    "SortParam",
    "fetch_page",
    "fetch_sorted_page",
    "order_by",
]

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
MAX_PAGE = 10_000_000
"""More pages than any list holds even at one item per page; bounds the SQL offset."""

ItemT = TypeVar("ItemT")


@dataclass(frozen=True)
class PageRequest:
    """Which page a client asked for (1-based)."""

    page: int = 1
    page_size: int = DEFAULT_PAGE_SIZE

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.page_size


def _page_request(
    page: Annotated[int, Query(ge=1, le=MAX_PAGE, description="1-based page number")] = 1,
    page_size: Annotated[
        int, Query(ge=1, le=MAX_PAGE_SIZE, description="Items per page")
    ] = DEFAULT_PAGE_SIZE,
) -> PageRequest:
    return PageRequest(page=page, page_size=page_size)


PageParams = Annotated[PageRequest, Depends(_page_request)]


class Page(BaseModel, Generic[ItemT]):
    """One page of a list and where it sits in the whole."""

    items: list[ItemT]
    total: int
    page: int
    page_size: int
    pages: int

    @classmethod
    def of(cls, items: Sequence[ItemT], total: int, request: PageRequest) -> Page[ItemT]:
        pages = (total + request.page_size - 1) // request.page_size
        return cls(
            items=list(items),
            total=total,
            page=request.page,
            page_size=request.page_size,
            pages=pages,
        )


SearchParam = Annotated[
    str | None, Query(max_length=200, description="Text search (substring, case-insensitive)")
]

SortParam = Annotated[
    str | None,
    Query(
        max_length=500,
        description="Comma-separated fields; a leading '-' sorts descending, e.g. -updated_at",
    ),
]


def order_by(
    sort: str | None, allowed: Mapping[str, SQLColumnExpression[Any]], default: str
) -> list[ColumnElement[Any]]:
    """ORDER BY clauses for `sort` (else `default`); 400 for a field not in `allowed`."""
    clauses: list[ColumnElement[Any]] = []
    for part in (sort or default).split(","):
        name = part.strip()
        if not name:
            continue
        column = allowed.get(name.lstrip("-+"))
        if column is None:
            raise Problem(
                f"cannot sort by {name.lstrip('-+')!r}; "
                f"sortable fields: {', '.join(sorted(allowed))}",
                status=400,
                type_suffix="invalid-sort",
            )
        descending = name.startswith("-")
        clauses.append(column.desc().nulls_last() if descending else column.asc().nulls_last())
    return clauses


async def fetch_page(
    session: AsyncSession, query: Select[Any], request: PageRequest
) -> tuple[list[Row[Any]], int]:
    """The rows of one page of `query` (which must be ordered) and the total row count."""
    total = await session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = (await session.execute(query.limit(request.page_size).offset(request.offset))).all()
    return list(rows), int(total or 0)


async def fetch_sorted_page(
    session: AsyncSession,
    query: Select[Any],
    request: PageRequest,
    *,
    sort: str | None,
    allowed: Mapping[str, SQLColumnExpression[Any]],
    default: str,
    tiebreak: SQLColumnExpression[Any],
) -> tuple[list[Row[Any]], int]:
    """`fetch_page` of `query` sorted as the client asked (then by `tiebreak`, for a stable
    order across pages)."""
    ordered = query.order_by(*order_by(sort, allowed, default), tiebreak)
    return await fetch_page(session, ordered, request)
