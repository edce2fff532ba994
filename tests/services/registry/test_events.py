"""registry.changes: snapshots through the outbox, re-publish, start-up, real Kafka."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from asgi_lifespan import LifespanManager
from ecowatt_kernel.app import create_app
from ecowatt_kernel.bus import Record
from ecowatt_kernel.contracts import (
    TOPICS,
    EnterpriseSnapshot,
    PointSnapshot,
    RegistryChange,
    decode,
    parse_snapshot,
)
from ecowatt_kernel.outbox import pending_count
from ecowatt_registry.archive import ENTERPRISE, ArchiveWriter
from ecowatt_registry.database import OUTBOX
from ecowatt_registry.service import SERVICE

from .conftest import ADMIN, CITY, Registry, enterprise_body, registry_settings, wait_for
from .test_archive import build_enterprise

pytestmark = pytest.mark.integration


async def test_committed_change_publishes_a_snapshot_that_parses(registry: Registry) -> None:
    await build_enterprise(registry, "a")
    await wait_for(lambda: len(registry.changes()) == 5)
    by_entity = {c.entity: c for c in registry.changes()}
    assert set(by_entity) == {"enterprise", "facility", "device", "point"}
    enterprise = parse_snapshot(by_entity["enterprise"])
    assert isinstance(enterprise, EnterpriseSnapshot)
    assert enterprise.district_code == "610112" and enterprise.district_name == "未央区"
    assert enterprise.contacts[0].name == "王伟"
    point = parse_snapshot(by_entity["point"])
    assert isinstance(point, PointSnapshot)
    assert (point.device_mn, point.circuit, point.start_stop_kw) == ("AMN", 1, 3.0)
    assert by_entity["point"].actor == "city-1"


async def test_rolled_back_change_publishes_nothing(registry: Registry) -> None:
    database = registry.context.database
    with pytest.raises(RuntimeError):
        async with database.transaction() as session:
            writer = ArchiveWriter(session, actor="t")
            await writer.upsert(
                ENTERPRISE, [{"id": "r1", "name": "回滚", "district_code": "610112"}]
            )
            assert writer.published == 1
            raise RuntimeError("the request fails after writing")
    assert await pending_count(database.engine, OUTBOX) == 0
    # A failing request (the credit code is taken) leaves nothing behind either.
    code = "91350100M000100Y43"
    await registry.client.post("/enterprises", json=enterprise_body(credit_code=code), headers=CITY)
    await wait_for(lambda: len(registry.changes()) == 1)
    bad = await registry.client.post(
        "/enterprises", json=enterprise_body(credit_code=code), headers=CITY
    )
    assert bad.status_code == 409
    await asyncio.sleep(0.3)
    assert len(registry.changes()) == 1
    assert await pending_count(database.engine, OUTBOX) == 0


async def test_full_republish_sends_every_entity_again(registry: Registry) -> None:
    await build_enterprise(registry, "a")
    await wait_for(lambda: len(registry.changes()) == 5)
    response = await registry.client.post("/admin/republish", headers=ADMIN)
    assert response.json() == {"messages": 5}
    await wait_for(lambda: len(registry.changes()) == 10)
    again = registry.changes()[5:]
    assert sorted((c.entity, c.entity_id, c.revision) for c in again) == sorted(
        (c.entity, c.entity_id, c.revision) for c in registry.changes()[:5]
    )
    assert [c.entity for c in again][:1] == ["enterprise"], "parents first"


async def test_in_process_bus_is_refilled_at_start_up(empty_database: str, redis_url: str) -> None:
    settings = registry_settings(empty_database, redis_url)
    first = create_app(SERVICE, settings=settings)
    async with LifespanManager(first, startup_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://r") as client:
            await client.post("/enterprises", json=enterprise_body(id="keep"), headers=CITY)
    second = create_app(SERVICE, settings=settings)
    async with LifespanManager(second, startup_timeout=60):
        bus = second.state.context.bus
        await wait_for(lambda: len(bus.read_all("registry.changes")) >= 1)
        change = decode(bus.read_all("registry.changes")[0]).data
        assert isinstance(change, RegistryChange)
        assert (change.entity, change.entity_id, change.revision) == ("enterprise", "keep", 1)


async def test_changes_reach_real_kafka(
    empty_database: str, redis_url: str, kafka_bootstrap: str
) -> None:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    settings = registry_settings(
        empty_database, redis_url, bus_backend="kafka", kafka_bootstrap_servers=kafka_bootstrap
    )
    app = create_app(SERVICE, settings=settings)
    marker = f"k-{uuid.uuid4().hex[:8]}"
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=None)
    await consumer.start()
    try:
        async with LifespanManager(app, startup_timeout=60) as manager:
            await app.state.context.bus.ensure_topics([TOPICS["registry.changes"]])
            partitions = [
                TopicPartition("registry.changes", p)
                for p in range(TOPICS["registry.changes"].partitions)
            ]
            consumer.assign(partitions)
            await consumer.seek_to_end(*partitions)
            for partition in partitions:
                await consumer.position(partition)  # fix the start before the change
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://r") as client:
                body = enterprise_body(id=marker)
                created = await client.post("/enterprises", json=body, headers=CITY)
                assert created.status_code == 201
                relay = app.state.context.state["outbox_relay"]
                await wait_for(lambda: relay.published >= 1)
        found = None
        for _ in range(100):
            batch = await consumer.getmany(timeout_ms=300)
            for messages in batch.values():
                for m in messages:
                    if m.key == f"enterprise:{marker}".encode():
                        found = m
            if found is not None:
                break
    finally:
        await consumer.stop()
    assert found is not None, "the snapshot was published on Kafka"
    record = Record("registry.changes", 0, 0, found.key, found.value, tuple(found.headers), 0)
    change = decode(record).data
    assert isinstance(change, RegistryChange) and change.entity_id == marker
    snapshot = parse_snapshot(change)
    assert isinstance(snapshot, EnterpriseSnapshot) and snapshot.name == "西安测试涂装有限公司"


async def test_a_registry_view_rebuilds_the_archive_from_the_changes(registry: Registry) -> None:
    from ecowatt_kernel.passwords import verify_password
    from ecowatt_kernel.registry_view import RegistryView
    from ecowatt_kernel.synthetic import device_password
    from sqlalchemy import text

    city = {"enterprises": 12, "seed": 77, "defect_share": 0.2}
    assert (
        await registry.client.post("/admin/synthetic-city", json=city, headers=ADMIN)
    ).is_success
    await registry.client.delete("/points/syn77-E00001-P01", headers=CITY)
    database = registry.context.database
    await wait_for(lambda: registry.context.state["outbox_relay"].published > 0)
    for _ in range(200):
        if await pending_count(database.engine, OUTBOX) == 0:
            break
        await asyncio.sleep(0.05)
    view = RegistryView()
    await view.attach(registry.context.bus, group_prefix="test")
    await view.wait_ready(30)
    async with database.session() as session:
        for entity in ("enterprise", "facility", "device", "point", "control_group"):
            table = "device" if entity == "device" else entity
            stored = await session.scalar(text(f"SELECT count(*) FROM {table}"))
            assert view.counts().get(entity, 0) == stored, entity
    assert view.point("syn77-E00001-P01") is None, "the delete reached the view"
    device = view.all("device")[0]
    points = view.points_of_device(device.id)
    assert points and all(p.device_mn == device.id for p in points)
    snapshot = view.device(device.id)
    assert snapshot is not None and snapshot.password_hash is not None
    assert verify_password(device_password(77, device.id), snapshot.password_hash)
    if view.subscription is not None:
        await view.subscription.stop()
