"""The app factory in distributed mode: its own Kafka bus, Redis and PostgreSQL from settings."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from ecowatt_kernel.app import ServiceContext, ServiceSpec, create_app
from ecowatt_kernel.bus import Record
from ecowatt_kernel.contracts import DeviceCommand, TopicSpec, decode, encode
from ecowatt_kernel.settings import KernelSettings
from ecowatt_kernel.tracing import current_trace_id
from pydantic import SecretStr

pytestmark = pytest.mark.integration


async def test_service_consumes_from_kafka_and_reports_ready(
    kafka_bootstrap: str, empty_database: str, redis_url: str, tmp_path: Path
) -> None:
    topic = f"test.app.{uuid.uuid4().hex[:10]}"
    received: list[tuple[str, str | None]] = []

    async def handle(records: Sequence[Record]) -> None:
        for record in records:
            received.append((decode(record).data.command_id, current_trace_id()))

    async def on_startup(context: ServiceContext) -> None:
        await context.bus.ensure_topics([TopicSpec(topic, "MN", "", partitions=2)])
        await context.subscribe(name="commands", topics=[topic], handler=handle)

    spec = ServiceSpec(
        name="probe", title="probe", description="", schema="probe", on_startup=on_startup
    )
    settings = KernelSettings(
        environment="test",
        bus_backend="kafka",
        kafka_bootstrap_servers=kafka_bootstrap,
        database_url=SecretStr(empty_database),
        redis_url=SecretStr(redis_url),
        service_name="probe",
    )
    app = create_app(spec, settings=settings)
    async with LifespanManager(app, startup_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://probe") as client:
            ready = await client.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"] == {
                "started": True,
                "bus": True,
                "redis": True,
                "database": True,
                "consumers": True,
            }
            context: ServiceContext = app.state.context
            command = DeviceCommand(
                command_id="c-1",
                mn="MN1",
                cn="1012",
                requested_by="t",
                requested_at=datetime.now(UTC),
            )
            await context.bus.publish([encode(command, topic=topic, trace_id="cafe" * 8)])
            for _ in range(400):
                if received:
                    break
                await asyncio.sleep(0.05)
    assert received == [("c-1", "cafe" * 8)], "delivered once, with the producer's trace id"


async def test_readiness_fails_while_a_dependency_is_down(empty_database: str) -> None:
    spec = ServiceSpec(name="probe2", title="probe", description="", schema="probe2")
    settings = KernelSettings(
        environment="test",
        bus_backend="memory",
        database_url=SecretStr(empty_database),
        redis_url=SecretStr("redis://127.0.0.1:1/0"),
    )
    app = create_app(spec, settings=settings)
    async with LifespanManager(app, startup_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://probe") as client:
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["redis"] is False
            assert ready.json()["checks"]["database"] is True
            assert (await client.get("/healthz")).status_code == 200
