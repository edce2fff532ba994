"""The in-process bus: Kafka's semantics inside one event loop.

Used by unit tests, and (through `DiskBus`, which adds a write-ahead journal) by standalone
mode. Like Kafka it has partitioned append-only logs (partitioned by the same murmur2 key
hash), consumer groups that share partitions, committed offsets, redelivery of uncommitted
records when a consumer leaves, and `<topic>.dlq`. Unlike Kafka it keeps the logs in memory:
records below every group's committed offset are dropped, and a partition with more than
`max_lag` unconsumed records makes `publish` wait (backpressure) rather than grow without
bound. Offsets increase but need not be contiguous (a compacted or a failed write leaves
gaps, as in Kafka); reads find their place by bisection.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ecowatt_kernel.bus.base import Bus, Subscription, _Stopping
from ecowatt_kernel.bus.partitioner import partition_for_key
from ecowatt_kernel.bus.types import BusUnavailableError, Message, Record
from ecowatt_kernel.contracts.topics import DLQ_SUFFIX, TOPICS, TopicSpec
from ecowatt_kernel.metrics import BUS_CONSUMER_LAG, BUS_PUBLISHED

__all__ = ["InProcessBus"]

_logger = logging.getLogger(__name__)

TopicPartition = tuple[str, int]


def _offset(record: Record) -> int:
    return record.offset


def record_size(record: Record) -> int:
    """Bytes a record holds (key, value and headers), for retention by size."""
    size = len(record.value) + (len(record.key) if record.key is not None else 0)
    for name, value in record.headers:
        size += len(name) + len(value)
    return size


@dataclass
class _Partition:
    records: list[Record] = field(default_factory=list)
    end: int = 0
    """The offset after the last record appended (kept when records are dropped)."""
    reserved: int = 0
    """The offset the next published record gets (ahead of `end` while a write is pending)."""
    nbytes: int = 0

    @property
    def start(self) -> int:
        """Offset of the first retained record (`end` when none is retained)."""
        return self.records[0].offset if self.records else self.end

    def append(self, record: Record) -> None:
        self.records.append(record)
        self.end = record.offset + 1
        self.reserved = max(self.reserved, self.end)
        self.nbytes += record_size(record)

    def read(self, offset: int, limit: int) -> list[Record]:
        start = bisect.bisect_left(self.records, offset, key=_offset)
        return self.records[start : start + limit]

    def trim(self, below: int) -> int:
        """Drop records with offsets below `below`; returns how many were dropped."""
        if not self.records or self.records[0].offset >= below:
            return 0
        drop = bisect.bisect_left(self.records, below, key=_offset)
        if drop > 0:
            self.nbytes -= sum(record_size(r) for r in self.records[:drop])
            del self.records[:drop]
        return drop


@dataclass
class _Topic:
    spec: TopicSpec
    partitions: list[_Partition]
    round_robin: itertools.count[int] = field(default_factory=itertools.count)


class _Group:
    """Membership, assignment and committed offsets of one consumer group."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.members: list[_MemorySubscription] = []
        self.committed: dict[TopicPartition, int] = {}
        self.assignment: dict[_MemorySubscription, list[TopicPartition]] = {}
        self.generation = 0
        # A partition is handled by one member at a time, also across a rebalance.
        self.partition_locks: dict[TopicPartition, asyncio.Lock] = {}

    def rebalance(self, bus: InProcessBus) -> None:
        partitions = sorted(
            {
                (topic, p)
                for member in self.members
                for topic in member.topics
                for p in range(len(bus.topic(topic).partitions))
            }
        )
        self.assignment = {member: [] for member in self.members}
        if self.members:
            for index, tp in enumerate(partitions):
                self.assignment[self.members[index % len(self.members)]].append(tp)
        self.generation += 1

    def lock(self, tp: TopicPartition) -> asyncio.Lock:
        return self.partition_locks.setdefault(tp, asyncio.Lock())


class InProcessBus(Bus):
    """A bus for one process; see the module docstring."""

    def __init__(
        self,
        *,
        default_partitions: int = 3,
        max_lag: int = 200_000,
        retain_unconsumed: int = 10_000,
        max_attempts: int = 3,
    ) -> None:
        super().__init__(max_attempts=max_attempts)
        self.default_partitions = default_partitions
        self.max_lag = max_lag
        self.retain_unconsumed = retain_unconsumed
        self._topics: dict[str, _Topic] = {}
        self._groups: dict[str, _Group] = {}
        self._changed = asyncio.Condition()
        self._space = asyncio.Condition()

    # ------------------------------------------------------------------------------ topics

    def topic(self, name: str) -> _Topic:
        found = self._topics.get(name)
        if found is None:
            spec = TOPICS.get(name)
            if spec is None and name.endswith(DLQ_SUFFIX):
                spec = TopicSpec(name, "", "", partitions=1)
            found = self._create(
                spec or TopicSpec(name, "", "", partitions=self.default_partitions)
            )
        return found

    async def ensure_topics(self, specs: Iterable[TopicSpec]) -> None:
        for spec in specs:
            if spec.name not in self._topics:
                self._create(spec)
            self.topic(spec.dlq)

    def _create(self, spec: TopicSpec) -> _Topic:
        """A new topic (the durable backend also journals it)."""
        created = self._topics[spec.name] = _Topic(
            spec, [_Partition() for _ in range(spec.partitions)]
        )
        return created

    async def end_offsets(self, topic: str) -> dict[int, int]:
        return {index: p.end for index, p in enumerate(self.topic(topic).partitions)}

    def read_all(self, name: str) -> list[Record]:
        """Every retained record of a topic, partition by partition (tests and diagnostics)."""
        return [r for p in self.topic(name).partitions for r in p.records]

    # ----------------------------------------------------------------------------- publish

    async def publish(self, messages: Sequence[Message]) -> None:
        if not self._started:
            raise BusUnavailableError("the in-process bus is not started")
        now_ms = int(time.time() * 1000)
        placed: list[Record] = []
        topics: dict[str, _Topic] = {}
        floors: dict[TopicPartition, int | None] = {}
        for message in messages:
            name = message.topic
            topic = topics.get(name)
            if topic is None:
                topic = topics[name] = self.topic(name)
            count = len(topic.partitions)
            if message.key is not None:
                index = partition_for_key(message.key, count)
            else:
                index = next(topic.round_robin) % count
            partition = topic.partitions[index]
            tp = (name, index)
            if tp not in floors:
                floors[tp] = self._consumed_floor(name, index)
            floor = floors[tp]
            if floor is not None and partition.reserved - floor >= self.max_lag:
                # Backpressure: what is placed so far becomes readable, then wait.
                await self._flush(placed)
                placed = []
                await self._wait_for_space(name, index, partition)
                floors.clear()
            offset = partition.reserved
            partition.reserved += 1
            placed.append(
                Record(name, index, offset, message.key, message.value, message.headers, now_ms)
            )
        await self._flush(placed)

    async def _flush(self, records: Sequence[Record]) -> None:
        if records:
            await self._store(records)
            async with self._changed:
                self._changed.notify_all()

    async def _store(self, records: Sequence[Record]) -> None:
        """Make `records` readable (the durable backend first writes them to disk)."""
        self._append(records)

    def _append(self, records: Sequence[Record]) -> None:
        touched: dict[TopicPartition, _Partition] = {}
        for record in records:
            tp = (record.topic, record.partition)
            partition = touched.get(tp)
            if partition is None:
                partition = touched[tp] = self.topic(record.topic).partitions[record.partition]
            partition.append(record)
        for (topic, _), partition in touched.items():
            self._trim_unconsumed(topic, partition)
        counts: dict[str, int] = {}
        for record in records:
            counts[record.topic] = counts.get(record.topic, 0) + 1
        for topic, count in counts.items():
            BUS_PUBLISHED.labels(topic).inc(count)

    def _has_space(self, topic: str, index: int, partition: _Partition) -> bool:
        floor = self._consumed_floor(topic, index)
        return floor is None or partition.reserved - floor < self.max_lag

    async def _wait_for_space(self, topic: str, index: int, partition: _Partition) -> None:
        async with self._space:
            while not self._has_space(topic, index, partition):
                await self._space.wait()

    def _consumed_floor(self, topic: str, index: int) -> int | None:
        """Lowest committed offset of the groups reading `topic`, None if none reads it (a
        group without a commit there reads from the first retained record)."""
        start = self.topic(topic).partitions[index].start
        floors = [
            group.committed.get((topic, index), start)
            for group in self._groups.values()
            if any(topic in member.topics for member in group.members)
        ]
        return min(floors) if floors else None

    def _trim_unconsumed(self, topic: str, partition: _Partition) -> None:
        if self.topic(topic).spec.compacted:
            return
        if not any(topic in m.topics for g in self._groups.values() for m in g.members):
            partition.trim(partition.end - self.retain_unconsumed)

    async def _committed(self, group: _Group, tp: TopicPartition, offset: int) -> None:
        group.committed[tp] = offset
        topic, index = tp
        partition = self.topic(topic).partitions[index]
        BUS_CONSUMER_LAG.labels(topic, group.name).set(
            sum(
                p.end - group.committed.get((topic, i), p.start)
                for i, p in enumerate(self.topic(topic).partitions)
            )
        )
        floor = self._consumed_floor(topic, index)
        if floor is not None and not self.topic(topic).spec.compacted:
            partition.trim(floor)
        async with self._space:
            self._space.notify_all()

    # ------------------------------------------------------------------------------- groups

    def _join(self, member: _MemorySubscription) -> _Group:
        group = self._groups.setdefault(member.group, _Group(member.group))
        group.members.append(member)
        group.rebalance(self)
        self._wake()
        return group

    def _leave(self, member: _MemorySubscription) -> None:
        group = self._groups[member.group]
        if member in group.members:
            group.members.remove(member)
            group.rebalance(self)
        self._wake()

    def _wake(self) -> None:
        async def notify() -> None:
            async with self._changed:
                self._changed.notify_all()
            async with self._space:
                self._space.notify_all()

        asyncio.get_running_loop().create_task(notify())

    async def _wait_for_change(self, limit_s: float) -> None:
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), limit_s)

    async def healthy(self) -> bool:
        return self._started

    async def _connect(self) -> None:
        return None

    async def _disconnect(self) -> None:
        return None


class _MemorySubscription(Subscription):
    bus: InProcessBus

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._group: _Group | None = None

    async def start(self) -> None:
        for name in self.topics:
            self.bus.topic(name)
        self._stopping.clear()
        self._group = self.bus._join(self)
        self._task = asyncio.create_task(self._run(), name=f"bus:{self.group}")

    def _on_stop_requested(self) -> None:
        self.bus._wake()

    async def _close(self) -> None:
        self.bus._leave(self)

    async def _run(self) -> None:
        group = self._group
        assert group is not None
        try:
            while not self._stopping.is_set():
                if not await self._poll_once(group):
                    await self.bus._wait_for_change(limit_s=1.0)
        except _Stopping:
            return
        except Exception:
            _logger.exception("in-process consumer of group %s failed", self.group)
            raise

    async def _poll_once(self, group: _Group) -> bool:
        """Handle one batch from each assigned partition; True when any had records."""
        worked = False
        for tp in list(group.assignment.get(self, [])):
            if self._stopping.is_set():
                break
            async with group.lock(tp):
                if tp not in group.assignment.get(self, []):
                    continue  # revoked while waiting for the lock
                topic, index = tp
                partition = self.bus.topic(topic).partitions[index]
                records = partition.read(group.committed.get(tp, 0), self.max_batch)
                if not records:
                    continue
                await self.handle(records)
                await self.bus._committed(group, tp, records[-1].offset + 1)
                worked = True
        return worked


InProcessBus.subscription_class = _MemorySubscription
