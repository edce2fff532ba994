"""The kernel's audit helper: a service that writes its own event marks the response, so the
gateway writes none; the caller's address comes from the gateway's X-Forwarded-For; a
problem with `retry_after` carries the Retry-After header."""

from __future__ import annotations

import httpx
from ecowatt_kernel.app import Infrastructure, ServiceSpec, create_app
from ecowatt_kernel.audit import AUDITED_HEADER, audit_event, client_address, mark_audited
from ecowatt_kernel.bus import InProcessBus
from ecowatt_kernel.identity import Identity, verifier_from_settings
from ecowatt_kernel.problems import Problem
from ecowatt_kernel.redis_client import create_redis
from ecowatt_kernel.settings import KernelSettings
from fastapi import APIRouter, Request

router = APIRouter()
seen: list[dict[str, object]] = []


@router.post("/act")
async def act(request: Request) -> dict[str, str]:
    event = audit_event(
        request,
        identity=Identity(subject="u-7", name="王伟"),
        action="thing.do",
        resource="thing:1",
        details={"why": "test"},
    )
    seen.append(event.model_dump())
    mark_audited(request)
    return {"ok": "yes"}


@router.post("/plain")
async def plain(request: Request) -> dict[str, str | None]:
    return {"address": client_address(request)}


@router.get("/busy")
async def busy() -> None:
    raise Problem("slow down", status=429, type_suffix="rate-limited", retry_after=17)


async def test_marked_responses_and_forwarded_addresses() -> None:
    settings = KernelSettings(environment="test")
    app = create_app(
        ServiceSpec(name="probe", title="probe", description="", routers=[router]),
        settings=settings,
        infrastructure=Infrastructure(
            bus=InProcessBus(),
            redis=create_redis("redis://127.0.0.1:1/0"),  # never used by these routes
            database_url="unused",
            verifier=verifier_from_settings(settings),
        ),
    )
    transport = httpx.ASGITransport(app=app, client=("10.0.0.9", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://probe") as client:
        marked = await client.post("/act", headers={"X-Forwarded-For": "203.0.113.5"})
        assert marked.headers[AUDITED_HEADER] == "1"
        assert seen[-1]["source_ip"] == "203.0.113.5" and seen[-1]["actor"] == "u-7"
        assert seen[-1]["details"] == {
            "method": "POST",
            "path": "/act",
            "name": "王伟",
            "why": "test",
        }
        unmarked = await client.post("/plain")
        assert AUDITED_HEADER not in unmarked.headers
        assert unmarked.json() == {"address": "10.0.0.9"}
        busy = await client.get("/busy")
        assert busy.status_code == 429 and busy.headers["retry-after"] == "17"
        assert busy.json()["retry_after"] == 17
