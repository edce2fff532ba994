"""Every service in standalone mode: migrations, and /healthz and /readyz through the gateway.

The gateway is built exactly as `make run` builds it (in-process bus, every service mounted),
against the real PostgreSQL and Redis of the test infrastructure.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager
from ecowatt_kernel.app import Infrastructure, create_app
from ecowatt_kernel.bus import InProcessBus
from ecowatt_kernel.db import Database
from ecowatt_kernel.identity import verifier_from_settings
from ecowatt_kernel.redis_client import create_redis
from ecowatt_kernel.settings import KernelSettings
from ecowatt_standalone.gateway import SERVICES, build_gateway
from pydantic import SecretStr
from sqlalchemy import text

pytestmark = pytest.mark.integration


@pytest.fixture
async def gateway(
    empty_database: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    # ingest's HJ 212 server on a free port: 9212 may be a running `make run`'s
    monkeypatch.setenv("ECOWATT_HJ212_HOST", "127.0.0.1")
    monkeypatch.setenv("ECOWATT_HJ212_PORT", "0")
    settings = KernelSettings(environment="test")
    infrastructure = Infrastructure(
        bus=InProcessBus(),
        redis=create_redis(redis_url),
        database_url=empty_database,
        verifier=verifier_from_settings(settings),
    )
    apps = {
        spec.name: create_app(
            spec,
            settings=spec.settings_class(
                environment="test",
                bus_backend="memory",
                database_url=SecretStr(empty_database),
                redis_url=SecretStr(redis_url),
            ),
            infrastructure=infrastructure,
        )
        for spec in SERVICES
    }
    app = build_gateway(infrastructure, apps)
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=30) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield client


async def test_gateway_and_every_service_answer_health_and_readiness(
    gateway: httpx.AsyncClient,
) -> None:
    response = await gateway.get("/healthz")
    assert response.status_code == 200
    assert sorted(response.json()["services"]) == sorted(s.name for s in SERVICES)
    for spec in SERVICES:
        health = await gateway.get(f"/api/{spec.name}/healthz")
        assert health.status_code == 200, spec.name
        assert health.json()["service"] == spec.name
        ready = await gateway.get(f"/api/{spec.name}/readyz")
        assert ready.status_code == 200, (spec.name, ready.text)
        assert ready.json()["checks"]["database"] is True
        assert ready.json()["checks"]["redis"] is True
        metrics = await gateway.get(f"/api/{spec.name}/metrics")
        assert b"ecowatt_http_requests_total" in metrics.content


async def test_unknown_routes_are_problem_details(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/api/registry/no-such-thing")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-trace-id"]


async def test_every_service_migrates_an_empty_database_twice(empty_database: str) -> None:
    for spec in SERVICES:
        assert spec.schema and spec.migrations
        database = Database(empty_database, schema=spec.schema)
        try:
            await database.migrate(spec.migrations)
            await database.migrate(spec.migrations)
            async with database.session() as session:
                version = (
                    await session.execute(
                        text(f'SELECT version_num FROM "{spec.schema}".alembic_version')
                    )
                ).all()
            assert len(version) == 1, spec.name
        finally:
            await database.dispose()
