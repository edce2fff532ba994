"""`subscribe(concurrent_partitions=True)`: batches of different partitions may be handled at
once; each partition keeps its order, nothing is lost or handled twice, offsets are committed.
The Kafka run uses the real broker started by `make infra-up`; the in-process bus ignores the
option (one partition at a time) and must still pass."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Sequence

import pytest
from ecowatt_kernel.bus import Bus, KafkaBus, Message, Record
from ecowatt_kernel.contracts import TopicSpec

pytestmark = pytest.mark.integration


async def test_concurrent_partitions_keep_order_and_commit(bus: Bus) -> None:
    topic = f"test.concurrent.{uuid.uuid4().hex[:12]}"
    await bus.ensure_topics([TopicSpec(topic, "test", "concurrency test", partitions=4)])
    keys = [f"device-{i}" for i in range(12)]
    sent = [(k, f"{k}:{n}") for n in range(100) for k in keys]
    await bus.publish([Message(topic, k.encode(), v.encode()) for k, v in sent])
    group = f"test-group-{uuid.uuid4().hex[:8]}"
    seen: list[Record] = []
    active = 0
    most = 0

    async def handler(records: Sequence[Record]) -> None:
        nonlocal active, most
        active += 1
        most = max(most, active)
        try:
            await asyncio.sleep(0.02)  # a dependency: lets another partition's batch run
            seen.extend(records)
        finally:
            active -= 1

    subscription = await bus.subscribe(
        group=group, topics=[topic], handler=handler, max_batch=400, concurrent_partitions=True
    )
    deadline = asyncio.get_running_loop().time() + 60
    while len(seen) < len(sent):
        assert asyncio.get_running_loop().time() < deadline, f"saw {len(seen)} of {len(sent)}"
        await asyncio.sleep(0.05)
    await subscription.stop()

    by_key: dict[str, list[int]] = defaultdict(list)
    for record in seen:
        key, number = record.value.decode().split(":")
        by_key[key].append(int(number))
    assert dict(by_key) == {k: list(range(100)) for k in keys}
    if isinstance(bus, KafkaBus):
        assert most >= 2, "batches of different partitions were handled one at a time"

    again: list[Record] = []

    async def collect(records: Sequence[Record]) -> None:
        again.extend(records)

    await bus.publish([Message(topic, b"device-0", b"device-0:100")])
    await bus.subscribe(group=group, topics=[topic], handler=collect, concurrent_partitions=True)
    deadline = asyncio.get_running_loop().time() + 60
    while not again:
        assert asyncio.get_running_loop().time() < deadline, "the new message was not handled"
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    assert [r.value for r in again] == [b"device-0:100"], "committed offsets were re-read"
