"""`GET /status` on the real Kafka, PostgreSQL and Redis.

A private topic with a consumer group that committed part of it gives a known lag; a private
DLQ holds a known number of records; one configured service is unreachable. The status must
report exactly those, and only the roles of the status page may read it.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

import httpx
import pytest
from asgi_lifespan import LifespanManager
from ecowatt_kernel.app import create_app
from ecowatt_kernel.bus import KafkaBus, KafkaConnection, Message, Record
from ecowatt_kernel.contracts.topics import TopicSpec
from ecowatt_kernel.identity import DataScope, Identity, Role, TokenSigner, dev_key_pair
from ecowatt_ops.service import SERVICE
from ecowatt_ops.settings import OpsSettings
from pydantic import SecretStr

pytestmark = pytest.mark.integration

SIGNER = TokenSigner(dev_key_pair()[0], issuer="ecowatt-auth", audience="ecowatt")


def bearer(role: Role) -> dict[str, str]:
    identity = Identity(
        subject=f"{role.value}-user", roles=frozenset({role}), scope=DataScope(all=True)
    )
    return {"Authorization": f"Bearer {SIGNER.sign(identity, now=datetime.now(UTC))}"}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def scene(
    kafka_bootstrap: str, empty_database: str, redis_url: str
) -> AsyncIterator[tuple[httpx.AsyncClient, str, str, int]]:
    tag = uuid.uuid4().hex[:8]
    topic, dlq, group = f"test.ops.{tag}.work", f"test.ops.{tag}.work.dlq", f"test.ops.{tag}.g"
    bus = KafkaBus(KafkaConnection(bootstrap_servers=kafka_bootstrap))
    await bus.start()
    await bus.ensure_topics(
        [TopicSpec(topic, "k", "t", partitions=3), TopicSpec(dlq, "k", "t", partitions=1)]
    )
    await bus.publish([Message(topic, f"k{i}".encode(), b"v") for i in range(30)])
    await bus.publish([Message(dlq, f"k{i}".encode(), b"v") for i in range(4)])
    handled: list[int] = []
    five = asyncio.Event()

    async def slow(records: Sequence[Record]) -> None:
        # one record per batch, each committed after it returns; stopped part-way
        await asyncio.sleep(0.05)
        handled.extend(range(len(records)))
        if len(handled) >= 5:
            five.set()

    sub = await bus.subscribe(group=group, topics=[topic], handler=slow, max_batch=1)
    await asyncio.wait_for(five.wait(), 60)
    await sub.stop()
    assert len(handled) < 30
    settings = OpsSettings(
        environment="test",
        kafka_bootstrap_servers=kafka_bootstrap,
        database_url=SecretStr(empty_database),
        redis_url=SecretStr(redis_url),
        ops_service_urls=f"reporting=http://127.0.0.1:{closed_port()}",
        ops_dlq_topics=dlq,
        ops_probe_timeout_s=1.0,
    )
    app = create_app(SERVICE, settings=settings)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ops") as client:
            yield client, group, dlq, len(handled)
    await bus.stop()


async def test_status_reports_lag_dead_letters_storage_and_the_unreachable_service(
    scene: tuple[httpx.AsyncClient, str, str, int],
) -> None:
    client, group, dlq, handled = scene
    response = await client.get("/status?fresh=true", headers=bearer(Role.OM_OPERATOR))
    assert response.status_code == 200, response.text
    body = response.json()
    lags = {(c["group"], c["topic"]): c for c in body["consumers"]}
    mine = [c for (g, _), c in lags.items() if g == group]
    assert len(mine) == 1
    # every handled record was committed: the rest of the 30 is the lag
    assert mine[0]["source"] == "kafka"
    assert mine[0]["lag"] == 30 - handled > 0
    assert mine[0]["partitions"] == 3
    # (its consumer has gone: the lag still shows, read from the brokers)
    assert body["dead_letters"] == [{"topic": dlq, "source_topic": dlq[:-4], "messages": 4}]
    assert body["database"]["ok"] is True and body["database"]["size_bytes"] > 0
    assert body["redis"]["ok"] is True and body["redis"]["version"]
    (reporting,) = body["services"]
    assert reporting["name"] == "reporting" and reporting["status"] == "unreachable"
    assert body["status"] == "degraded"
    assert any("reporting is unreachable" in p for p in body["problems"])


async def test_only_the_status_page_roles_may_read_it(
    scene: tuple[httpx.AsyncClient, str, str, int],
) -> None:
    client, _, _, _ = scene
    assert (await client.get("/status")).status_code == 401
    for role in (Role.ENTERPRISE_USER, Role.DISTRICT_OFFICER, Role.PARTNER):
        response = await client.get("/status", headers=bearer(role))
        assert response.status_code == 403, role
        assert response.headers["content-type"].startswith("application/problem+json")
    for role in (Role.ADMIN, Role.CITY_SUPERVISOR, Role.OM_OPERATOR):
        assert (await client.get("/status", headers=bearer(role))).status_code == 200, role
