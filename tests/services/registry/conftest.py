"""Fixtures for the registry: the service on the real PostgreSQL, tokens for each role."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from bearer import FreshBearer
from ecowatt_kernel.app import ServiceContext, create_app
from ecowatt_kernel.bus import Record
from ecowatt_kernel.contracts import RegistryChange, decode
from ecowatt_kernel.identity import DataScope, Identity, Role, TokenSigner, dev_key_pair
from ecowatt_registry.service import SERVICE
from ecowatt_registry.settings import RegistrySettings
from pydantic import SecretStr

SIGNER = TokenSigner(dev_key_pair()[0], issuer="ecowatt-auth", audience="ecowatt")


def token(
    *roles: Role,
    subject: str = "tester",
    districts: tuple[str, ...] = (),
    enterprises: tuple[str, ...] = (),
    everything: bool = False,
) -> Mapping[str, str]:
    """Authorization headers for a caller with `roles` and the given data scope."""
    identity = Identity(
        subject=subject,
        roles=frozenset(roles),
        scope=DataScope(
            all=everything, districts=frozenset(districts), enterprises=frozenset(enterprises)
        ),
    )
    return FreshBearer(SIGNER, identity)


ADMIN = token(Role.ADMIN, subject="admin-1", everything=True)
CITY = token(Role.CITY_SUPERVISOR, subject="city-1", everything=True)


@dataclass
class Registry:
    client: httpx.AsyncClient
    context: ServiceContext
    database_url: str

    def changes(self) -> list[RegistryChange]:
        """Every registry change published so far on the in-process bus."""
        bus = self.context.bus
        records: list[Record] = bus.read_all("registry.changes")  # type: ignore[attr-defined]
        return [decode(r).data for r in sorted(records, key=lambda r: r.timestamp_ms)]


def registry_settings(database_url: str, redis_url: str, **overrides: Any) -> RegistrySettings:
    values: dict[str, Any] = {
        "environment": "test",
        "bus_backend": "memory",
        "database_url": SecretStr(database_url),
        "redis_url": SecretStr(redis_url),
        "registry_outbox_poll_s": 0.05,
    }
    return RegistrySettings(**(values | overrides))


@pytest.fixture
async def registry(empty_database: str, redis_url: str) -> AsyncIterator[Registry]:
    app = create_app(SERVICE, settings=registry_settings(empty_database, redis_url))
    async with LifespanManager(app, startup_timeout=120, shutdown_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://registry") as client:
            yield Registry(client, app.state.context, empty_database)


EnterpriseFactory = Callable[..., Any]


def credit_code(first17: str) -> str:
    """Append the GB 32100 check character, computed here independently of the service."""
    alphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY"
    weights = [pow(3, i, 31) for i in range(17)]  # 3^(i-1) mod 31 for positions 1..17
    total = sum(alphabet.index(c) * w for c, w in zip(first17, weights, strict=True))
    return first17 + alphabet[(31 - total % 31) % 31]


def enterprise_body(**overrides: Any) -> dict[str, Any]:
    body = {
        "name": "西安测试涂装有限公司",
        "district_code": "610112",
        "industry_code": "3360",
        "zone": "XA-JK",
        "performance_grade": "C",
        "contacts": [{"name": "王伟", "phone": "13800000000", "role": "环保负责人"}],
    }
    return body | overrides


async def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    import asyncio

    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    assert condition(), "condition not met in time"
