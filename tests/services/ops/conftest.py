"""The ops service with the desk on the real PostgreSQL and Redis (a scratch database per
module, the in-process bus), a settable clock, and bearer headers per role and scope."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from ecowatt_kernel.app import ServiceContext, create_app
from ecowatt_kernel.bus import InProcessBus
from ecowatt_kernel.contracts import decode
from ecowatt_kernel.db import scratch_database
from ecowatt_kernel.identity import DataScope, Identity, Role, TokenSigner, dev_key_pair
from ecowatt_ops.desk.runtime import RUNTIME, DeskRuntime
from ecowatt_ops.service import SERVICE
from ecowatt_ops.settings import OpsSettings
from pydantic import SecretStr

from tests.support.bearer import FreshBearer

SIGNER = TokenSigner(dev_key_pair()[0], issuer="ecowatt-auth", audience="ecowatt")
ALERTMANAGER_TOKEN = "test-alertmanager-token-0123456789"


def bearer(
    role: Role,
    *,
    subject: str | None = None,
    enterprises: tuple[str, ...] = (),
    districts: tuple[str, ...] = (),
) -> FreshBearer:
    """Authorization headers of a person with `role` (scope all unless narrowed)."""
    scope = (
        DataScope(enterprises=frozenset(enterprises), districts=frozenset(districts))
        if enterprises or districts
        else DataScope(all=True)
    )
    identity = Identity(
        subject=subject or f"{role.value}-1",
        name=f"{role.value} 测试",
        roles=frozenset({role}),
        scope=scope,
    )
    return FreshBearer(SIGNER, identity)


@dataclass
class Clock:
    """The desk's clock, moved by hand."""

    now: datetime = field(default_factory=lambda: datetime(2026, 12, 7, 1, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@dataclass
class Desk:
    client: httpx.AsyncClient
    context: ServiceContext
    clock: Clock

    @property
    def runtime(self) -> DeskRuntime:
        runtime: DeskRuntime = RUNTIME.get(self.context)
        return runtime

    def audit_events(self) -> list[Any]:
        bus = self.context.bus
        assert isinstance(bus, InProcessBus)
        return [decode(record).data for record in bus.read_all("audit.events")]


def desk_settings(database_url: str, redis_url: str, **overrides: Any) -> OpsSettings:
    values: dict[str, Any] = {
        "environment": "test",
        "bus_backend": "memory",
        "database_url": SecretStr(database_url),
        "redis_url": SecretStr(redis_url),
        "ops_service_urls": "",
        "ops_signals_enabled": False,
        "ops_monthly_report": False,
        "ops_escalation_every_s": 3600.0,
        "ops_alertmanager_token": SecretStr(ALERTMANAGER_TOKEN),
    }
    return OpsSettings(**(values | overrides))


@pytest.fixture(scope="module")
async def desk_factory(database_url: str, redis_url: str) -> AsyncIterator[Callable[..., Any]]:
    """Start the ops service on a scratch database (once per module and settings)."""
    stack: list[Any] = []

    async def start(**overrides: Any) -> Desk:
        scratch = scratch_database(database_url, prefix="ecowatt_ops_test")
        url = await scratch.__aenter__()
        app = create_app(SERVICE, settings=desk_settings(url, redis_url, **overrides))
        manager = LifespanManager(app)
        await manager.__aenter__()
        transport = httpx.ASGITransport(app=app)
        client = httpx.AsyncClient(transport=transport, base_url="http://ops")
        stack.append((client, manager, scratch))
        context: ServiceContext = app.state.context
        clock = Clock()
        runtime: DeskRuntime = RUNTIME.get(context)
        runtime.clock = clock
        # tests run escalation passes themselves, at the moments they choose
        for job in runtime.jobs:
            await job.stop()
        runtime.jobs, runtime.escalation_job = [], None
        return Desk(client=client, context=context, clock=clock)

    yield start
    for client, manager, scratch in reversed(stack):
        await client.aclose()
        await manager.__aexit__(None, None, None)
        await scratch.__aexit__(None, None, None)


@pytest.fixture(scope="module")
async def desk(desk_factory: Callable[..., Any]) -> Desk:
    result: Desk = await desk_factory()
    return result
