from __future__ import annotations

import uuid

import pytest
from ecowatt_kernel.bus import KafkaBus, KafkaConnection, Message
from ecowatt_kernel.bus.partitioner import murmur2, partition_for_key
from ecowatt_kernel.contracts import TopicSpec


# Vectors from Apache Kafka's UtilsTest.testMurmur2.
@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ],
)
def test_murmur2_matches_kafka(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected


@pytest.mark.integration
async def test_in_process_partitions_match_the_real_broker(kafka_bootstrap: str) -> None:
    bus = KafkaBus(KafkaConnection(bootstrap_servers=kafka_bootstrap))
    await bus.start()
    try:
        topic = f"test.partitioner.{uuid.uuid4().hex[:10]}"
        await bus.ensure_topics([TopicSpec(topic, "k", "", partitions=7)])
        producer = bus._producer
        assert producer is not None
        for i in range(40):
            key = f"MN{i:04d}".encode()
            future = await producer.send(topic, b"v", key=key)
            metadata = await future
            assert metadata.partition == partition_for_key(key, 7), key
        await bus.publish([Message(topic=topic, key=b"x", value=b"y")])
    finally:
        await bus.stop()
