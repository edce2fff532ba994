"""`subscribe(on_assigned=…, on_revoked=…)` on the real Kafka broker: two members of one
group get disjoint shares of the partitions through `on_assigned`, each `Partitions` tells
which keys it carries (the keys each then handles), `on_revoked` runs only once the batch
in hand is done (a joining member takes partitions from one at work), and a member that
leaves hands its partitions to the other. (A member that stops is not called back: it
drops everything anyway.)
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import pytest
from ecowatt_kernel.bus import (
    KafkaBus,
    KafkaConnection,
    Message,
    Partitions,
    Record,
    Subscription,
)
from ecowatt_kernel.contracts import TopicSpec

pytestmark = pytest.mark.integration

PARTITIONS = 4


class Member:
    """One member of the group: its hooks' calls and the records it handled."""

    def __init__(self) -> None:
        self.assigned: list[Partitions] = []
        self.revoked: list[Partitions] = []
        self.records: list[Record] = []
        self.in_hand = 0
        self.revoked_in_hand: list[int] = []

    async def handle(self, records: Sequence[Record]) -> None:
        self.in_hand += 1
        try:
            await asyncio.sleep(0.05)  # a batch takes a while: a rebalance must wait for it
            self.records.extend(records)
        finally:
            self.in_hand -= 1

    async def on_assigned(self, partitions: Partitions) -> None:
        self.assigned.append(partitions)

    async def on_revoked(self, partitions: Partitions) -> None:
        self.revoked_in_hand.append(self.in_hand)
        self.revoked.append(partitions)

    def held(self) -> set[int]:
        return {p for _, p in self.assigned[-1].held} if self.assigned else set()


async def until(what: str, check: object, limit_s: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + limit_s
    while not check():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.1)


async def test_hooks_divide_partitions_and_hand_them_over(kafka_bootstrap: str) -> None:
    topic = f"test.rebalance.{uuid.uuid4().hex[:12]}"
    group = f"test-rebalance-{uuid.uuid4().hex[:8]}"
    buses = [KafkaBus(KafkaConnection(bootstrap_servers=kafka_bootstrap)) for _ in range(2)]
    for bus in buses:
        await bus.start()
    a, b = Member(), Member()

    async def join(bus: KafkaBus, member: Member) -> Subscription:
        return await bus.subscribe(
            group=group,
            topics=[topic],
            handler=member.handle,
            max_batch=20,
            on_assigned=member.on_assigned,
            on_revoked=member.on_revoked,
        )

    try:
        await buses[0].ensure_topics([TopicSpec(topic, "key", "hooks", partitions=PARTITIONS)])
        keys = [f"enterprise-{i}" for i in range(40)]
        first = await join(buses[0], a)
        await until("a holds every partition", lambda: a.held() == set(range(PARTITIONS)))
        assert a.assigned[-1].counts == {topic: PARTITIONS}
        assert all(a.assigned[-1].carries(topic, k) for k in keys)

        # b joins while a works through the first round (batches of 20, 50 ms each).
        await buses[0].publish([Message(topic, k.encode(), b"1") for k in keys * 10])
        second = await join(buses[1], b)
        await until(
            "a and b share the partitions",
            lambda: (
                a.held()
                and b.held()
                and a.held().isdisjoint(b.held())
                and a.held() | b.held() == set(range(PARTITIONS))
            ),
        )
        assert a.revoked[0].held == a.assigned[0].held, "a gave up what it held"
        assert set(a.revoked_in_hand) == {0}, "on_revoked ran with a batch in hand"
        await until(
            "the first round handled",
            lambda: {r.key for r in a.records + b.records} == {k.encode() for k in keys},
        )

        await buses[0].publish([Message(topic, k.encode(), b"2") for k in keys])
        await until(
            "the second round handled",
            lambda: sum(r.value == b"2" for r in a.records + b.records) >= len(keys),
        )
        for member in (a, b):
            share = member.assigned[-1]
            handled = {r.key.decode() for r in member.records if r.key and r.value == b"2"}
            # A member handles exactly the keys its partitions carry.
            assert handled == {k for k in keys if share.carries(topic, k)}
            assert handled, "a member got no key"

        await second.stop()  # b leaves: a takes its partitions
        await until("a holds every partition again", lambda: a.held() == set(range(PARTITIONS)))
        await first.stop()
    finally:
        for bus in buses:
            await bus.stop()
