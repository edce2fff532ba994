"""`GET /status` as standalone mode runs it: in-process bus (lag from this process's gauges,
DLQ depth from the bus), real PostgreSQL and Redis, services asked through a gateway URL."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from asgi_lifespan import LifespanManager
from ecowatt_kernel.app import Infrastructure, create_app
from ecowatt_kernel.bus import InProcessBus, Message
from ecowatt_kernel.identity import (
    DataScope,
    Identity,
    Role,
    TokenSigner,
    dev_key_pair,
    verifier_from_settings,
)
from ecowatt_kernel.metrics import BUS_CONSUMER_LAG
from ecowatt_kernel.redis_client import create_redis
from ecowatt_ops.service import SERVICE
from ecowatt_ops.settings import OpsSettings
from pydantic import SecretStr

pytestmark = pytest.mark.integration


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def client(empty_database: str, redis_url: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = OpsSettings(
        environment="test",
        bus_backend="memory",
        database_url=SecretStr(empty_database),
        redis_url=SecretStr(redis_url),
        ops_service_urls=f"alarm=http://127.0.0.1:{closed_port()}/api/alarm",
        ops_dlq_topics="test.standalone.work.dlq",
    )
    bus = InProcessBus()
    await bus.start()
    await bus.publish([Message("test.standalone.work.dlq", b"k", b"v") for _ in range(3)])
    infrastructure = Infrastructure(
        bus=bus,
        redis=create_redis(redis_url),
        database_url=empty_database,
        verifier=verifier_from_settings(settings),
    )
    app = create_app(SERVICE, settings=settings, infrastructure=infrastructure)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ops") as http:
            yield http
        await bus.stop()
    await infrastructure.close()


async def test_standalone_status_reads_this_process(client: httpx.AsyncClient) -> None:
    BUS_CONSUMER_LAG.labels("telemetry.points", "test-standalone.points").set(42)
    identity = Identity(
        subject="supervisor", roles=frozenset({Role.CITY_SUPERVISOR}), scope=DataScope(all=True)
    )
    token = TokenSigner(dev_key_pair()[0], issuer="ecowatt-auth", audience="ecowatt").sign(
        identity, now=datetime.now(UTC)
    )
    response = await client.get("/status", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    body = response.json()
    lag = [c for c in body["consumers"] if c["group"] == "test-standalone.points"]
    assert lag == [
        {
            "group": "test-standalone.points",
            "topic": "telemetry.points",
            "lag": 42,
            "partitions": 0,
            "source": "metrics",
        }
    ]
    assert body["dead_letters"] == [
        {"topic": "test.standalone.work.dlq", "source_topic": "test.standalone.work", "messages": 3}
    ]
    assert body["services"][0]["status"] == "unreachable"
    assert body["database"]["ok"] and body["redis"]["ok"]
