"""The bus contract: both backends must pass every test here. The Kafka run uses the real
broker started by `make infra-up`."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence

import pytest
from ecowatt_kernel.bus import Bus, InProcessBus, KafkaBus, Message, Record
from ecowatt_kernel.contracts import TopicSpec

pytestmark = pytest.mark.integration

WAIT_S = 60.0


async def fresh_topic(bus: Bus, partitions: int) -> str:
    name = f"test.contract.{uuid.uuid4().hex[:12]}"
    await bus.ensure_topics([TopicSpec(name, "test", "contract test", partitions=partitions)])
    return name


def group_name() -> str:
    return f"test-group-{uuid.uuid4().hex[:8]}"


async def eventually(condition: Callable[[], bool], what: str, limit_s: float = WAIT_S) -> None:
    deadline = asyncio.get_running_loop().time() + limit_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


class Collector:
    """A handler that records what it saw."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    async def __call__(self, records: Sequence[Record]) -> None:
        self.records.extend(records)

    @property
    def values(self) -> list[bytes]:
        return [r.value for r in self.records]


def messages(topic: str, items: Sequence[tuple[str, str]]) -> list[Message]:
    return [Message(topic=topic, key=k.encode(), value=v.encode()) for k, v in items]


async def test_per_key_order_is_kept(bus: Bus) -> None:
    topic = await fresh_topic(bus, partitions=4)
    keys = [f"device-{i}" for i in range(6)]
    sent = [(k, f"{k}:{n}") for n in range(150) for k in keys]
    for chunk in range(0, len(sent), 100):
        await bus.publish(messages(topic, sent[chunk : chunk + 100]))
    collector = Collector()
    await bus.subscribe(group=group_name(), topics=[topic], handler=collector, max_batch=37)
    await eventually(lambda: len(collector.records) >= len(sent), "all messages")

    by_key: dict[str, list[int]] = defaultdict(list)
    for record in collector.records:
        key, number = record.value.decode().split(":")
        by_key[key].append(int(number))
    assert set(by_key) == set(keys)
    for key in keys:
        assert by_key[key] == list(range(150)), f"{key} out of order"
    # One key lives in one partition.
    partitions = defaultdict(set)
    for record in collector.records:
        partitions[record.key].add(record.partition)
    assert all(len(p) == 1 for p in partitions.values())


async def test_two_consumers_share_partitions_and_see_each_message_once(bus: Bus) -> None:
    topic = await fresh_topic(bus, partitions=6)
    group = group_name()
    first, second = Collector(), Collector()
    await bus.subscribe(group=group, topics=[topic], handler=first)
    await bus.subscribe(group=group, topics=[topic], handler=second)
    await settle_group(bus)
    sent = [(f"k{i % 60}", f"m{i}") for i in range(1200)]
    await bus.publish(messages(topic, sent))
    await eventually(
        lambda: len(first.records) + len(second.records) >= len(sent),
        "both consumers together to see everything",
    )
    await asyncio.sleep(0.5)  # nothing more must arrive

    seen = first.values + second.values
    assert sorted(seen) == sorted(v.encode() for _, v in sent), "each message exactly once"
    assert first.records and second.records, "both members got partitions"
    first_partitions = {r.partition for r in first.records}
    second_partitions = {r.partition for r in second.records}
    assert not first_partitions & second_partitions, "a partition belongs to one member"


async def settle_group(bus: Bus) -> None:
    """Give a Kafka group time to finish its join/rebalance before the test publishes."""
    if isinstance(bus, KafkaBus):
        await eventually(lambda: all(_assigned(s) for s in bus._subscriptions), "assignment")
    await asyncio.sleep(0.1)


def _assigned(subscription: object) -> bool:
    consumer = getattr(subscription, "_consumer", None)
    return consumer is not None and bool(consumer.assignment())


async def test_batch_of_a_killed_consumer_is_redelivered_to_the_survivor(bus: Bus) -> None:
    topic = await fresh_topic(bus, partitions=1)
    group = group_name()
    started, never = asyncio.Event(), asyncio.Event()
    doomed_saw: list[bytes] = []

    async def doomed(records: Sequence[Record]) -> None:
        doomed_saw.extend(r.value for r in records)
        started.set()
        await never.wait()  # "crashes" before its effect is durable

    victim = await bus.subscribe(group=group, topics=[topic], handler=doomed)
    await settle_group(bus)
    survivor = Collector()
    sent = [("same-key", f"v{i}") for i in range(20)]
    await bus.publish(messages(topic, sent))
    await asyncio.wait_for(started.wait(), WAIT_S)
    await bus.subscribe(group=group, topics=[topic], handler=survivor)
    await victim.kill()

    await eventually(lambda: len(survivor.records) >= len(sent), "redelivery to the survivor")
    assert doomed_saw, "the victim had a batch in hand"
    assert set(doomed_saw) <= set(survivor.values), "every record of the lost batch came back"
    assert survivor.values == [v.encode() for _, v in sent], "in order, none lost"


async def test_poison_message_goes_to_dlq_after_n_tries_and_the_rest_flow_on(bus: Bus) -> None:
    topic = await fresh_topic(bus, partitions=1)
    attempts_on_poison_alone = 0
    good: list[bytes] = []

    async def handler(records: Sequence[Record]) -> None:
        nonlocal attempts_on_poison_alone
        if any(r.value == b"poison" for r in records):
            if len(records) == 1:
                attempts_on_poison_alone += 1
            raise ValueError("cannot handle poison")
        good.extend(r.value for r in records)

    dead = Collector()
    await bus.subscribe(group=group_name(), topics=[topic + ".dlq"], handler=dead)
    await bus.subscribe(group=group_name(), topics=[topic], handler=handler, max_attempts=3)
    await bus.publish(messages(topic, [("k", "a"), ("k", "b"), ("k", "poison"), ("k", "c")]))
    await bus.publish(messages(topic, [("k", "d")]))

    await eventually(lambda: len(dead.records) == 1 and b"d" in good, "DLQ and the rest")
    assert attempts_on_poison_alone == 3
    assert sorted(set(good)) == [b"a", b"b", b"c", b"d"]
    letter = dead.records[0]
    assert letter.value == b"poison" and letter.key == b"k"
    assert letter.header("x-error-type") == b"ValueError"
    assert letter.header("x-attempts") == b"3"
    assert b"cannot handle poison" in (letter.header("x-error-message") or b"")
    assert (letter.header("x-origin") or b"").startswith(f"{topic}/0/2/".encode())


async def test_transient_failures_are_retried_not_dead_lettered(bus: Bus) -> None:
    topic = await fresh_topic(bus, partitions=1)
    failures_left = 5
    handled: list[bytes] = []

    async def flaky(records: Sequence[Record]) -> None:
        nonlocal failures_left
        if failures_left:
            failures_left -= 1
            raise ConnectionError("database is restarting")
        handled.extend(r.value for r in records)

    dead = Collector()
    await bus.subscribe(group=group_name(), topics=[topic + ".dlq"], handler=dead)
    await bus.subscribe(group=group_name(), topics=[topic], handler=flaky, max_attempts=2)
    await bus.publish(messages(topic, [("k", "x"), ("k", "y")]))
    await eventually(lambda: handled == [b"x", b"y"], "handling after the outage")
    await asyncio.sleep(0.3)
    assert dead.records == []


async def test_nothing_is_lost_across_a_consumer_restart(bus: Bus) -> None:
    topic = await fresh_topic(bus, partitions=3)
    group = group_name()
    sent = [(f"k{i % 7}", f"n{i}") for i in range(900)]
    first = Collector()
    throttle = asyncio.Event()

    async def slow_first(records: Sequence[Record]) -> None:
        await first(records)
        if len(first.records) >= 200:
            throttle.set()
            await asyncio.sleep(0.2)  # slow down so that the stop lands mid-stream

    subscription = await bus.subscribe(
        group=group, topics=[topic], handler=slow_first, max_batch=50
    )
    await bus.publish(messages(topic, sent))
    await asyncio.wait_for(throttle.wait(), WAIT_S)
    await subscription.stop()
    handled_before = len(first.records)

    second = Collector()
    await bus.subscribe(group=group, topics=[topic], handler=second)
    await eventually(
        lambda: len(first.records) + len(second.records) >= len(sent), "the rest after the restart"
    )
    await asyncio.sleep(0.3)
    combined = first.values + second.values
    assert sorted(combined) == sorted(v.encode() for _, v in sent), "none lost, none twice"
    assert handled_before < len(sent)


async def test_publish_before_start_is_refused() -> None:
    bus = InProcessBus()
    with pytest.raises(Exception, match="not started"):
        await bus.publish([Message(topic="x", key=None, value=b"v")])
