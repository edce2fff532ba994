"""A real reporting service for the reporting tests: Kafka bus, PostgreSQL, Redis, private
topics, one scratch database for the package.

The small city of `city.py` is published on the private registry topic before the service
starts, so that its archive copy holds it from the first moment; tests publish telemetry and
events on the private topics and wait until the service has stored them.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from ecowatt_kernel.app import ServiceContext, create_app
from ecowatt_kernel.bus import KafkaBus, KafkaConnection
from ecowatt_kernel.contracts import Event, TopicSpec, encode
from ecowatt_kernel.db import scratch_database
from ecowatt_kernel.identity import DataScope, Identity, Role, TokenSigner, dev_key_pair
from ecowatt_reporting.runtime import RUNTIME, Runtime
from ecowatt_reporting.service import SERVICE
from ecowatt_reporting.settings import ReportingSettings
from pydantic import SecretStr
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).parent))

from city import SmallCity

pytestmark = pytest.mark.integration


@dataclass
class Harness:
    app: Any
    client: httpx.AsyncClient
    ctx: ServiceContext
    settings: ReportingSettings
    bus: KafkaBus
    database_url: str
    city: SmallCity
    signer: TokenSigner = field(
        default_factory=lambda: TokenSigner(
            dev_key_pair()[0], issuer="ecowatt-auth", audience="ecowatt"
        )
    )

    @property
    def runtime(self) -> Runtime:
        return RUNTIME.get(self.ctx)

    def headers(
        self,
        role: Role,
        *,
        districts: Sequence[str] = (),
        enterprises: Sequence[str] = (),
        subject: str | None = None,
    ) -> dict[str, str]:
        scope = DataScope(
            all=role in (Role.CITY_SUPERVISOR, Role.ADMIN, Role.OM_OPERATOR)
            and not districts
            and not enterprises,
            districts=frozenset(districts),
            enterprises=frozenset(enterprises),
        )
        identity = Identity(
            subject=subject or f"{role.value}-user", roles=frozenset({role}), scope=scope
        )
        return self.bearer(identity)

    def bearer(self, identity: Identity) -> dict[str, str]:
        """Authorization for `identity`, signed now (as the gateway forwards it)."""
        return {"Authorization": f"Bearer {self.signer.sign(identity, now=datetime.now(UTC))}"}

    async def publish(self, events: Sequence[Event], topic: str) -> None:
        for i in range(0, len(events), 2000):
            await self.bus.publish([encode(e, topic=topic) for e in events[i : i + 2000]])

    async def scalar(self, sql: str, **params: Any) -> Any:
        async with self.runtime.database.session() as session:
            return await session.scalar(text(sql), params)

    async def wait_for(self, check: Callable[[], Any], limit_s: float = 60.0) -> None:
        deadline = asyncio.get_running_loop().time() + limit_s
        while True:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for {check}")
            await asyncio.sleep(0.1)

    async def wait_rows(
        self, sql: str, expected: int, limit_s: float = 90.0, **params: Any
    ) -> None:
        """Wait until `sql` (a count) reaches `expected`."""

        async def reached() -> bool:
            return int(await self.scalar(sql, **params) or 0) >= expected

        await self.wait_for(reached, limit_s)


@pytest.fixture(scope="package")
async def reporting_database(database_url: str) -> AsyncIterator[str]:
    async with scratch_database(database_url) as url:
        yield url


@pytest.fixture(scope="package")
def city() -> SmallCity:
    return SmallCity()


@pytest.fixture(scope="package")
async def harness(
    kafka_bootstrap: str, redis_url: str, reporting_database: str, city: SmallCity
) -> AsyncIterator[Harness]:
    prefix = f"test.reporting.{uuid.uuid4().hex[:8]}"
    settings = ReportingSettings(
        environment="test",
        bus_backend="kafka",
        kafka_bootstrap_servers=kafka_bootstrap,
        database_url=SecretStr(reporting_database),
        redis_url=SecretStr(redis_url),
        reporting_points_topic=f"{prefix}.points",
        reporting_states_topic=f"{prefix}.states",
        reporting_alarms_topic=f"{prefix}.alarms",
        reporting_findings_topic=f"{prefix}.findings",
        reporting_compliance_topic=f"{prefix}.compliance",
        reporting_registry_topic=f"{prefix}.registry",
        reporting_consumer_prefix=prefix,
        reporting_today_every_min=0,
        reporting_schedule_enabled=False,
        reporting_webhook_secret=SecretStr("test-secret"),
        reporting_public_url="https://ecowatt.example/api/reporting",
    )
    bus = KafkaBus(KafkaConnection(bootstrap_servers=kafka_bootstrap))
    await bus.start()
    await bus.ensure_topics(
        [
            TopicSpec(settings.reporting_points_topic, "enterprise", "", partitions=4),
            TopicSpec(settings.reporting_states_topic, "enterprise", "", partitions=2),
            TopicSpec(settings.reporting_alarms_topic, "enterprise", "", partitions=2),
            TopicSpec(settings.reporting_findings_topic, "enterprise", "", partitions=2),
            TopicSpec(settings.reporting_compliance_topic, "enterprise", "", partitions=2),
            TopicSpec(
                settings.reporting_registry_topic, "entity", "", partitions=2, compacted=True
            ),
        ]
    )
    await bus.publish(
        [encode(c, topic=settings.reporting_registry_topic) for c in city.registry_changes()]
    )
    app = create_app(SERVICE, settings=settings)
    try:
        async with LifespanManager(app, startup_timeout=120, shutdown_timeout=60) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://reporting", timeout=60
            ) as client:
                h = Harness(app, client, app.state.context, settings, bus, reporting_database, city)
                await h.runtime.archive.synced.wait()
                yield h
    finally:
        await bus.stop()
