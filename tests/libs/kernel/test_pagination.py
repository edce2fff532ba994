from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from ecowatt_kernel.db import Database
from ecowatt_kernel.pagination import MAX_PAGE_SIZE, Page, PageParams, PageRequest, fetch_page
from ecowatt_kernel.problems import install_problem_handlers
from fastapi import FastAPI
from sqlalchemy import Column, Integer, MetaData, Table, insert, select


def test_page_arithmetic() -> None:
    request = PageRequest(page=3, page_size=20)
    assert request.offset == 40
    page = Page.of(["x"] * 5, total=45, request=request)
    assert (page.pages, page.page, page.total, len(page.items)) == (3, 3, 45, 5)
    assert Page.of([], total=0, request=PageRequest()).pages == 0


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/items")
    async def items(page: PageParams) -> dict[str, int]:
        return {"page": page.page, "page_size": page.page_size}

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as http:
        yield http


async def test_page_parameters_are_bounded(client: httpx.AsyncClient) -> None:
    assert (await client.get("/items")).json() == {"page": 1, "page_size": 50}
    assert (await client.get("/items?page=2&page_size=10")).json() == {"page": 2, "page_size": 10}
    too_big = await client.get(f"/items?page_size={MAX_PAGE_SIZE + 1}")
    assert too_big.status_code == 422
    assert too_big.json()["errors"][0]["loc"] == ["query", "page_size"]
    assert (await client.get("/items?page=0")).status_code == 422


@pytest.mark.integration
async def test_fetch_page_counts_and_slices_in_postgresql(empty_database: str) -> None:
    metadata = MetaData(schema="pages")
    numbers = Table("numbers", metadata, Column("n", Integer, primary_key=True))
    database = Database(empty_database, schema="pages")
    try:
        async with database.engine.begin() as connection:
            await connection.exec_driver_sql("CREATE SCHEMA pages")
            await connection.run_sync(metadata.create_all)
            await connection.execute(insert(numbers), [{"n": i} for i in range(1, 24)])
        async with database.session() as session:
            query = select(numbers.c.n).where(numbers.c.n % 2 == 1).order_by(numbers.c.n.desc())
            rows, total = await fetch_page(session, query, PageRequest(page=2, page_size=5))
        assert total == 12  # odd numbers 1..23
        assert [r.n for r in rows] == [13, 11, 9, 7, 5]
    finally:
        await database.dispose()
