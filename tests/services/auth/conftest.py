"""The auth service behind its gateway, as standalone mode composes it, on the real
PostgreSQL and Redis: a fresh database per fixture, Redis database 7 emptied first (the
gateway's counters and sessions of one test must not leak into the next)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from ecowatt_auth.audit.models import audit_log
from ecowatt_auth.runtime import RUNTIME, AuthRuntime
from ecowatt_auth.service import SERVICE as AUTH
from ecowatt_auth.settings import AuthSettings
from ecowatt_kernel.app import Infrastructure, ServiceSpec, create_app
from ecowatt_kernel.bus import InProcessBus
from ecowatt_kernel.identity import DataScope, Identity, Role, verifier_from_settings
from ecowatt_kernel.redis_client import create_redis
from ecowatt_registry.service import SERVICE as REGISTRY
from ecowatt_standalone.gateway import build_gateway
from pydantic import SecretStr
from sqlalchemy import select

ADMIN_PASSWORD = "Adm1n!Gateway-Test"
TEST_REDIS_DB = 7


def isolated_redis_url(redis_url: str) -> str:
    base = redis_url.rsplit("/", 1)[0] if redis_url.count("/") >= 3 else redis_url
    return f"{base}/{TEST_REDIS_DB}"


def service_settings(spec: ServiceSpec, database_url: str, redis_url: str, **extra: Any) -> Any:
    values: dict[str, Any] = {
        "environment": "test",
        "bus_backend": "memory",
        "database_url": SecretStr(database_url),
        "redis_url": SecretStr(redis_url),
    }
    if spec.settings_class is AuthSettings:
        values.update(
            auth_cookie_secure=False,
            admin_password=SecretStr(ADMIN_PASSWORD),
            # every test logs in from 127.0.0.1: the per-address limit gets its own test
            auth_rate_anonymous_per_minute=10_000,
        )
        values.update(extra)
    return spec.settings_class(**values)


@dataclass
class Platform:
    gateway: Any
    apps: dict[str, Any]
    infrastructure: Infrastructure
    database_url: str
    redis_url: str
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    @property
    def runtime(self) -> AuthRuntime:
        return RUNTIME.get(self.apps["auth"].state.context)

    @property
    def settings(self) -> AuthSettings:
        return self.runtime.settings

    def client(
        self, address: str = "127.0.0.1", *, base_url: str = "http://gateway"
    ) -> httpx.AsyncClient:
        """A client of the gateway, seen from `address`."""
        transport = httpx.ASGITransport(app=self.gateway, client=(address, 40000))
        client = httpx.AsyncClient(transport=transport, base_url=base_url)
        self.clients.append(client)
        return client

    def bearer(
        self,
        role: Role,
        *,
        subject: str | None = None,
        scope: DataScope | None = None,
        ttl: timedelta = timedelta(minutes=15),
    ) -> dict[str, str]:
        """Authorization for an identity signed with the gateway's key (as POST /token)."""
        identity = Identity(
            subject=subject or f"{role.value}-{uuid.uuid4().hex[:6]}",
            name=role.value,
            roles=frozenset({role}),
            scope=scope or DataScope(all=True),
        )
        token = self.runtime.signer.sign(identity, ttl=ttl)
        return {"Authorization": f"Bearer {token}"}

    async def login(
        self, client: httpx.AsyncClient, username: str, password: str, **extra: Any
    ) -> httpx.Response:
        return await client.post(
            "/api/auth/session", json={"username": username, "password": password, **extra}
        )

    async def admin(self, address: str = "127.0.0.1") -> httpx.AsyncClient:
        """A browser session of the first administrator (CSRF header preset)."""
        client = self.client(address)
        response = await self.login(client, "admin", ADMIN_PASSWORD)
        assert response.status_code == 200, response.text
        client.headers["X-CSRF-Token"] = response.json()["csrf_token"]
        return client

    async def person(
        self,
        role: Role,
        scope: dict[str, Any] | None = None,
        *,
        username: str | None = None,
        password: str = "Str0ng!Passw-2026",
    ) -> tuple[str, str, str]:
        """An account opened by the administrator, its initial password already changed:
        (user id, user name, password)."""
        admin = await self.admin()
        username = username or f"u{uuid.uuid4().hex[:10]}"
        created = await admin.post(
            "/api/auth/users",
            json={
                "username": username,
                "display_name": f"测试{role.value}",
                "role": role.value,
                "scope": scope or {"kind": "city"},
            },
        )
        assert created.status_code == 201, created.text
        initial = created.json()["initial_password"]
        changed = await self.client().post(
            "/api/auth/password",
            json={"username": username, "password": initial, "new_password": password},
        )
        assert changed.status_code == 204, changed.text
        return created.json()["id"], username, password

    async def audit_rows(self, **where: Any) -> list[dict[str, Any]]:
        """The stored audit log (oldest first), after the gateway's queue is published and
        the writer is idle; `where` filters on columns."""
        await self.runtime.audit.flush()
        await asyncio.sleep(0.2)
        context = self.apps["auth"].state.context
        query = select(audit_log).order_by(audit_log.c.seq)
        for column, value in where.items():
            query = query.where(audit_log.c[column] == value)
        async with context.database.session() as session:
            return [dict(r) for r in (await session.execute(query)).mappings()]

    async def wait_for(self, check: Callable[[], Any], limit_s: float = 20.0) -> Any:
        deadline = asyncio.get_running_loop().time() + limit_s
        while True:
            result = await check() if asyncio.iscoroutinefunction(check) else check()
            if result:
                return result
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for {check}")
            await asyncio.sleep(0.05)


async def start_platform(
    database_url: str,
    redis_url: str,
    specs: Iterable[ServiceSpec] = (AUTH, REGISTRY),
    **auth_settings: Any,
) -> AsyncIterator[Platform]:
    redis = create_redis(redis_url)
    await redis.flushdb()
    infrastructure = Infrastructure(
        bus=InProcessBus(),
        redis=redis,
        database_url=database_url,
        verifier=verifier_from_settings(AuthSettings(environment="test")),
    )
    apps = {
        spec.name: create_app(
            spec,
            settings=service_settings(spec, database_url, redis_url, **auth_settings),
            infrastructure=infrastructure,
        )
        for spec in specs
    }
    gateway = build_gateway(infrastructure, apps)
    async with LifespanManager(gateway, startup_timeout=120, shutdown_timeout=60):
        platform = Platform(gateway, apps, infrastructure, database_url, redis_url)
        try:
            yield platform
        finally:
            for client in platform.clients:
                await client.aclose()


@pytest.fixture
async def platform(empty_database: str, redis_url: str) -> AsyncIterator[Platform]:
    async for running in start_platform(empty_database, isolated_redis_url(redis_url)):
        yield running


def now() -> datetime:
    return datetime.now(UTC)
