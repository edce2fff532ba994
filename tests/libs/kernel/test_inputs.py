"""Every service's API answers bad input with a 4xx problem and writes nothing.

A probe service built by the kernel's `create_app` (so it gets exactly what every service
gets) against the real PostgreSQL: unknown query parameters, control characters in query and
path parameters, integers beyond 64 bits, non-finite numbers, NUL in JSON bodies, oversized
bodies, and a value PostgreSQL itself refuses as data.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import pytest
from asgi_lifespan import LifespanManager
from ecowatt_kernel.app import DbSession, ServiceContext, ServiceSpec, create_app
from ecowatt_kernel.pagination import MAX_PAGE, Page, PageParams
from ecowatt_kernel.settings import KernelSettings
from ecowatt_kernel.times import LocalDateTime
from fastapi import APIRouter, Query
from pydantic import BaseModel, SecretStr
from sqlalchemy import text

pytestmark = pytest.mark.integration

router = APIRouter()


class Note(BaseModel):
    text: str
    level: int = 0


@router.get("/notes")
async def list_notes(
    session: DbSession,
    page: PageParams,
    q: str | None = None,
    level: int | None = None,
    weight: float | None = None,
    since: Annotated[LocalDateTime | None, Query(alias="from")] = None,
) -> Page[str]:
    query = "SELECT text FROM probe_inputs.note WHERE (CAST(:q AS text) IS NULL OR text = :q)"
    rows = (await session.execute(text(query), {"q": q})).scalars().all()
    return Page.of(list(rows), len(rows), page)


@router.get("/notes/{key}")
async def read_note(key: str, session: DbSession) -> dict[str, Any]:
    found = await session.scalar(
        text("SELECT count(*) FROM probe_inputs.note WHERE text = :k"), {"k": key}
    )
    return {"key": key, "found": found}


@router.post("/notes", status_code=201)
async def create_note(note: Note, session: DbSession) -> dict[str, Any]:
    # level is a smallint column: 40000 is a valid int for the API, not for PostgreSQL.
    await session.execute(
        text("INSERT INTO probe_inputs.note (text, level) VALUES (:t, :l)"),
        {"t": note.text, "l": note.level},
    )
    await session.commit()
    return {"text": note.text}


@router.get("/echo-time")
async def echo_time(at: LocalDateTime) -> dict[str, str]:
    return {"at": at.isoformat()}


async def _create_table(context: ServiceContext) -> None:
    async with context.database.session() as session:
        await session.execute(text("CREATE SCHEMA IF NOT EXISTS probe_inputs"))
        await session.execute(
            text("CREATE TABLE IF NOT EXISTS probe_inputs.note (text text, level smallint)")
        )
        await session.commit()


@pytest.fixture
async def client(empty_database: str, redis_url: str) -> AsyncIterator[httpx.AsyncClient]:
    spec = ServiceSpec(
        name="probe-inputs",
        title="probe",
        description="",
        schema="probe_inputs",
        routers=[router],
        on_startup=_create_table,
    )
    settings = KernelSettings(
        environment="test",
        bus_backend="memory",
        database_url=SecretStr(empty_database),
        redis_url=SecretStr(redis_url),
        http_max_body_bytes=4096,
        timezone="Asia/Shanghai",
    )
    app = create_app(spec, settings=settings)
    async with LifespanManager(app, startup_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://probe") as http:
            yield http


async def _rows(client: httpx.AsyncClient) -> int:
    response = await client.get("/notes", params={"page_size": 500})
    assert response.status_code == 200, response.text
    return int(response.json()["total"])


def _refused(response: httpx.Response, status: int, location: list[str] | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    if location is not None:
        assert response.json()["errors"][0]["loc"] == location


async def test_unknown_query_parameters_are_refused_naming_the_accepted_ones(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/notes", params={"pgae": "2"})
    _refused(response, 422, ["query", "pgae"])
    assert "page_size" in response.json()["errors"][0]["msg"]
    assert (await client.get("/notes", params={"page": "2", "q": "x"})).status_code == 200


@pytest.mark.parametrize("bad", ["\x00", "a\x00b", "line\r\nbreak", "\x1b[31m", "\x7f", "\x85"])
async def test_control_characters_in_query_and_path_parameters_are_refused(
    client: httpx.AsyncClient, bad: str
) -> None:
    _refused(await client.get("/notes", params={"q": bad}), 422, ["query", "q"])
    _refused(await client.get(f"/notes/{quote(bad)}"), 422, ["path", "key"])
    _refused(await client.get("/notes", params={bad: "1"}), 422)


async def test_integers_beyond_64_bits_and_non_finite_numbers_are_refused(
    client: httpx.AsyncClient,
) -> None:
    huge = str(2**64)
    _refused(await client.get("/notes", params={"page": huge}), 422, ["query", "page"])
    _refused(await client.get("/notes", params={"page": str(MAX_PAGE + 1)}), 422)
    _refused(await client.get("/notes", params={"level": "9" * 30}), 422, ["query", "level"])
    for value in ("inf", "-Infinity", "nan"):
        _refused(await client.get("/notes", params={"weight": value}), 422, ["query", "weight"])
    assert (await client.get("/notes", params={"level": str(2**63 - 1)})).status_code == 200


async def test_nul_in_a_json_body_is_refused_and_nothing_is_written(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/notes", content=b'{"text": "a\\u0000b"}', headers={"content-type": "application/json"}
    )
    _refused(response, 422, ["body"])
    assert await _rows(client) == 0
    # An escaped backslash followed by "u0000" is six ordinary characters, not NUL.
    literal = await client.post(
        "/notes", content=b'{"text": "a\\\\u0000b"}', headers={"content-type": "application/json"}
    )
    assert literal.status_code == 201, literal.text
    assert literal.json()["text"] == "a\\u0000b"
    # Line breaks are text (a reason may have several lines).
    assert (await client.post("/notes", json={"text": "one\ntwo"})).status_code == 201


async def test_a_value_postgresql_refuses_as_data_is_a_422_and_nothing_is_written(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/notes", json={"text": "too big", "level": 40000})
    _refused(response, 422)
    assert response.json()["type"].endswith("/value-out-of-range")
    assert "40000" in response.json()["detail"]
    assert await _rows(client) == 0


async def test_a_body_over_the_limit_is_a_413_stating_the_limit(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/notes", json={"text": "x" * 5000})
    _refused(response, 413)
    assert response.json()["max_bytes"] == 4096
    assert "4096 bytes" in response.json()["detail"]
    assert await _rows(client) == 0


async def test_datetimes_without_an_offset_are_local_time_of_the_deployment(
    client: httpx.AsyncClient,
) -> None:
    local = await client.get("/echo-time", params={"at": "2026-12-07T08:30:00"})
    assert local.status_code == 200, local.text
    assert datetime.fromisoformat(local.json()["at"]).utcoffset().total_seconds() == 8 * 3600
    explicit = await client.get("/echo-time", params={"at": "2026-12-07T08:30:00Z"})
    assert datetime.fromisoformat(explicit.json()["at"]).utcoffset().total_seconds() == 0
    _refused(await client.get("/echo-time", params={"at": "9999-12-31T23:59:59"}), 422)
