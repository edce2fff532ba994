"""Every service in standalone mode: migrations; /healthz, /readyz and /metrics on the
operations app and not through the public gateway.

The gateway is built exactly as `make run` builds it (in-process bus, every service behind
it), against the real PostgreSQL and Redis of the test infrastructure.
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
from ecowatt_standalone.gateway import SERVICES, build_gateway, build_operations
from pydantic import SecretStr
from sqlalchemy import text

pytestmark = pytest.mark.integration


@pytest.fixture
async def gateway(
    empty_database: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
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
    operations = build_operations(infrastructure, apps)
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=30):
        public = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gateway"
        )
        ops = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=operations), base_url="http://operations"
        )
        async with public, ops:
            yield public, ops


async def test_every_service_answers_health_and_readiness_on_the_operations_port(
    gateway: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    public, ops = gateway
    response = await ops.get("/healthz")
    assert response.status_code == 200
    assert sorted(response.json()["services"]) == sorted(s.name for s in SERVICES)
    ready = await ops.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert set(ready.json()["checks"]) == {"bus", *(s.name for s in SERVICES)}
    for spec in SERVICES:
        health = await ops.get(f"/{spec.name}/healthz")
        assert health.status_code == 200, spec.name
        assert health.json()["service"] == spec.name
        ready = await ops.get(f"/{spec.name}/readyz")
        assert ready.status_code == 200, (spec.name, ready.text)
        assert ready.json()["checks"]["database"] is True
        assert ready.json()["checks"]["redis"] is True
        # not through the public gateway: they stay on the service (operations) port
        for path in ("readyz", "metrics", "healthz"):
            hidden = await public.get(f"/api/{spec.name}/{path}")
            assert hidden.status_code == 404, (spec.name, path)
    metrics = await ops.get("/metrics")
    assert b"ecowatt_http_requests_total" in metrics.content
    assert (await public.get("/healthz")).json() == {"status": "ok", "service": "gateway"}


async def test_unknown_routes_are_problem_details(
    gateway: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    public, _ = gateway
    response = await public.get("/api/registry/no-such-thing")
    assert response.status_code == 401  # the gateway asks who is calling before anything else
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-trace-id"]
    unknown = await public.get("/api/no-such-service/x")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"


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
