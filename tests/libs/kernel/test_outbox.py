"""The transactional outbox against the real PostgreSQL, the in-process bus and real Kafka."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import pytest
from ecowatt_kernel.bus import InProcessBus, KafkaBus, KafkaConnection, Message, PublishError
from ecowatt_kernel.contracts import TopicSpec
from ecowatt_kernel.db import Database
from ecowatt_kernel.outbox import (
    OutboxRelay,
    create_outbox_table,
    enqueue,
    outbox_table,
    pending_count,
)
from sqlalchemy import MetaData, Table, text

pytestmark = pytest.mark.integration


async def make_outbox(url: str) -> tuple[Database, Table]:
    database = Database(url, schema="probe")
    async with database.engine.begin() as connection:
        await connection.execute(text("CREATE SCHEMA IF NOT EXISTS probe"))
        await connection.run_sync(lambda c: create_outbox_table(c, schema="probe"))
    return database, outbox_table(MetaData(schema="probe"))


def message(n: int, topic: str = "probe.topic") -> Message:
    return Message(
        topic=topic, key=f"k{n % 3}".encode(), value=f"v{n}".encode(), headers=(("h", b"\x00\xff"),)
    )


async def test_rolled_back_rows_are_never_published_committed_ones_are(empty_database: str) -> None:
    database, table = await make_outbox(empty_database)
    bus = InProcessBus()
    await bus.start()
    try:
        with pytest.raises(RuntimeError):
            async with database.transaction() as session:
                await enqueue(session, table, [message(0)])
                raise RuntimeError("the change fails")
        async with database.transaction() as session:
            await enqueue(session, table, [message(1), message(2)])
        relay = OutboxRelay(engine=database.engine, bus=bus, table=table)
        assert await relay.drain() == 2
        published = bus.read_all("probe.topic")
        assert sorted(r.value for r in published) == [b"v1", b"v2"]
        assert all(r.header("h") == b"\x00\xff" for r in published)
        assert await relay.drain() == 0, "published rows are marked"
        assert await pending_count(database.engine, table) == 0
    finally:
        await bus.stop()
        await database.dispose()


class FailAfterPublish(InProcessBus):
    """Publishes, then reports a failure once: like a crash before the rows are marked."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 1

    async def publish(self, messages: Sequence[Message]) -> None:
        await super().publish(messages)
        if self.failures:
            self.failures -= 1
            raise PublishError("lost the acknowledgement")


async def test_relay_restart_publishes_every_row_at_least_once(empty_database: str) -> None:
    database, table = await make_outbox(empty_database)
    bus = FailAfterPublish()
    await bus.start()
    try:
        async with database.transaction() as session:
            await enqueue(session, table, [message(n) for n in range(10)])
        relay = OutboxRelay(
            engine=database.engine, bus=bus, table=table, batch_size=4, poll_interval_s=0.05
        )
        await relay.start()
        for _ in range(200):
            if await pending_count(database.engine, table) == 0:
                break
            await asyncio.sleep(0.05)
        await relay.stop()
        async with database.transaction() as session:
            await enqueue(session, table, [message(n) for n in range(10, 15)])
        restarted = OutboxRelay(engine=database.engine, bus=bus, table=table, poll_interval_s=0.05)
        await restarted.start()
        restarted.wake()
        for _ in range(200):
            if await pending_count(database.engine, table) == 0:
                break
            await asyncio.sleep(0.05)
        await restarted.stop()
        values = [r.value for r in bus.read_all("probe.topic")]
        assert {f"v{n}".encode() for n in range(15)} <= set(values)
        assert len(values) == 15 + 4, "the first batch went out twice (at least once)"
    finally:
        await bus.stop()
        await database.dispose()


async def test_only_one_relay_publishes_an_outbox_at_a_time(empty_database: str) -> None:
    database, table = await make_outbox(empty_database)
    bus = InProcessBus()
    await bus.start()
    try:
        async with database.transaction() as session:
            await enqueue(session, table, [message(n) for n in range(50)])
        relays = [
            OutboxRelay(engine=database.engine, bus=bus, table=table, batch_size=5)
            for _ in range(3)
        ]
        await asyncio.gather(*(r.drain() for r in relays))
        while await relays[0].drain():
            pass
        values = [r.value for r in bus.read_all("probe.topic")]
        assert sorted(values) == sorted(f"v{n}".encode() for n in range(50)), (
            "each exactly once here"
        )
        per_key = [r.value for r in bus.read_all("probe.topic") if r.key == b"k0"]
        assert per_key == [f"v{n}".encode() for n in range(0, 50, 3)], "order kept per key"
    finally:
        await bus.stop()
        await database.dispose()


async def test_relay_publishes_to_real_kafka(empty_database: str, kafka_bootstrap: str) -> None:
    database, table = await make_outbox(empty_database)
    topic = f"test.outbox.{uuid.uuid4().hex[:8]}"
    bus = KafkaBus(KafkaConnection(bootstrap_servers=kafka_bootstrap, client_id="outbox-test"))
    await bus.start()
    try:
        await bus.ensure_topics([TopicSpec(topic, "k", "", partitions=1)])
        async with database.transaction() as session:
            await enqueue(session, table, [message(n, topic) for n in range(5)])
        relay = OutboxRelay(engine=database.engine, bus=bus, table=table)
        assert await relay.drain() == 5
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest", group_id=None
        )
        await consumer.start()
        try:
            got: list[bytes] = []
            for _ in range(50):
                batch = await consumer.getmany(timeout_ms=200)
                got += [m.value for ms in batch.values() for m in ms]
                if len(got) >= 5:
                    break
        finally:
            await consumer.stop()
        assert got == [f"v{n}".encode() for n in range(5)]
    finally:
        await bus.stop()
        await database.dispose()
