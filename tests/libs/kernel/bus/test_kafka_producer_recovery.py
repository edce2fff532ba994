"""A Kafka producer that failed for good is replaced (found by the ingest outage benchmark).

aiokafka's idempotent producer ends its sender task on OutOfOrderSequenceNumber — which a
broker restart under load produces when batches expired while it was away — and from then
on every send raises a copy of that error: without a new producer the service could never
publish again. KafkaBus.publish raises PublishError for the call that met the failure (its
caller retries, at least once) and starts a new producer for the next call.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka.errors import OutOfOrderSequenceNumber
from ecowatt_kernel.bus import KafkaBus, KafkaConnection, Message, PublishError
from ecowatt_kernel.contracts import TopicSpec

pytestmark = pytest.mark.integration


async def test_a_producer_failed_for_good_is_replaced(kafka_bootstrap: str) -> None:
    bus = KafkaBus(KafkaConnection(bootstrap_servers=kafka_bootstrap, client_id="recovery"))
    await bus.start()
    topic = f"test.kernel.recovery.{uuid.uuid4().hex[:8]}"
    try:
        await bus.ensure_topics([TopicSpec(topic, "k", "", partitions=2)])
        await bus.publish([Message(topic, b"a", b"1")])
        first = bus._producer
        assert first is not None
        first._message_accumulator.fail_all(OutOfOrderSequenceNumber())  # as aiokafka does
        with pytest.raises(PublishError):
            await bus.publish([Message(topic, b"a", b"2"), Message(topic, b"b", b"2")])
        assert bus._producer is not None and bus._producer is not first
        await bus.publish([Message(topic, b"a", b"2"), Message(topic, b"b", b"2")])  # retried
        ends = await bus.end_offsets(topic)
        assert sum(ends.values()) == 3
    finally:
        await bus.stop()


async def test_a_partition_refused_for_its_sequence_gets_a_new_producer(
    kafka_bootstrap: str,
) -> None:
    """The other way aiokafka meets OutOfOrderSequenceNumber (seen in the ingest outage bench):
    the broker refuses one batch, the sender lives on, and every later batch to that
    partition is refused alike — retrying with the same producer never succeeds."""
    bus = KafkaBus(KafkaConnection(bootstrap_servers=kafka_bootstrap, client_id="recovery"))
    await bus.start()
    topic = f"test.kernel.recovery.{uuid.uuid4().hex[:8]}"
    try:
        await bus.ensure_topics([TopicSpec(topic, "k", "", partitions=1)])
        first = bus._producer
        assert first is not None
        real_send_batch = first.send_batch

        async def refused(*args: object, **kwargs: object) -> asyncio.Future[object]:
            await real_send_batch(*args, **kwargs)  # type: ignore[arg-type]
            future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
            future.set_exception(OutOfOrderSequenceNumber())  # the broker's answer
            return future

        first.send_batch = refused  # type: ignore[method-assign]
        with pytest.raises(PublishError):
            await bus.publish([Message(topic, b"a", b"1")])
        assert bus._producer is not None and bus._producer is not first
        await bus.publish([Message(topic, b"a", b"2")])  # the caller's retry gets through
        assert sum((await bus.end_offsets(topic)).values()) == 2  # the refused one was stored
    finally:
        await bus.stop()
