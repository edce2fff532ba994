"""The durable in-process bus: the in-process bus behind a write-ahead journal on local disk.

Standalone mode's bus. It behaves as `InProcessBus` (same partitions, groups, commits, DLQ,
backpressure; the same contract suite) and adds durability:

* `publish` returns once its records are in the journal and `fdatasync`ed (group commit:
  publishers that arrive during one `fdatasync` share the next). Consumers see a record
  only once it is durable, so no effect can rest on a record a crash would lose.
* Committed offsets are journaled too (queued behind the commit, written with the next group
  commit): after a crash a group re-reads at most what it handled since its last journaled
  commit — at least once, as with Kafka.
* On start the journal is read back: records still retained, next offsets and every group's
  committed offsets; a group that joins again continues from its commit, so everything not
  committed is redelivered.
* Retention: records of non-compacted topics older than `retention_ms`, and the oldest when
  the retained records exceed `retention_bytes`, are dropped even if unconsumed (logged, and
  counted in `ecowatt_bus_log_dropped_total`), as Kafka's `retention.ms`/`retention.bytes`
  would. Compacted topics keep the newest record per key, rewritten at each checkpoint.
  Groups without members that committed nothing for `retention_ms` are forgotten.
* When the disk refuses a write (full, read-only, I/O error) `publish` raises
  `PublishError` and nothing of that call becomes visible; it succeeds again once the disk
  accepts writes.

Why a journal file and not tables in the embedded PostgreSQL: measured with
`bench/bench_bus.py --backend disk,postgres` (docs/benchmarks.md): the journal's group
commit is one `write` + `fdatasync` per batch with no per-row work, where PostgreSQL adds a
round trip, row and index maintenance and WAL per message; it also keeps the device edge
independent of the database's health (a PostgreSQL restart does not stop devices being
answered).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from prometheus_client import Counter as MetricCounter

from ecowatt_kernel.bus.journal import Journal
from ecowatt_kernel.bus.memory import InProcessBus, TopicPartition, _Group, _Partition, _Topic
from ecowatt_kernel.bus.segment import (
    Checkpoint,
    Commit,
    OffsetMark,
    TopicEntry,
    encode_commit,
    encode_record,
    encode_topic,
)
from ecowatt_kernel.bus.types import BusUnavailableError, PublishError, Record
from ecowatt_kernel.contracts.topics import TOPICS, TopicSpec

__all__ = ["DiskBus"]

_logger = logging.getLogger(__name__)

_DAY_MS = 24 * 3600 * 1000
HOUSEKEEPING_S = 60.0

DROPPED = MetricCounter(
    "ecowatt_bus_log_dropped_total",
    "Retained records the durable in-process bus dropped by retention before every group"
    " consumed them.",
    ["topic", "reason"],
)


class DiskBus(InProcessBus):
    """An `InProcessBus` whose records and commits survive a crash; see the module docstring."""

    def __init__(
        self,
        folder: Path,
        *,
        retention_bytes: int = 2**30,
        retention_ms: int = 7 * _DAY_MS,
        checkpoint_bytes: int = 64 * 2**20,
        default_partitions: int = 3,
        max_lag: int = 200_000,
        retain_unconsumed: int = 10_000,
        max_attempts: int = 3,
    ) -> None:
        super().__init__(
            default_partitions=default_partitions,
            max_lag=max_lag,
            retain_unconsumed=retain_unconsumed,
            max_attempts=max_attempts,
        )
        self.folder = folder
        self.retention_bytes = retention_bytes
        self.retention_ms = retention_ms
        self.journal = Journal(folder, checkpoint_bytes=checkpoint_bytes)
        self._new_topics: list[bytes] = []
        self._last_commit_ms: dict[str, int] = {}
        self._housekeeping: asyncio.Task[None] | None = None
        self._restore(self.journal.open())

    # ------------------------------------------------------------------------- recovery

    def _restore(self, entries: Iterable[object]) -> None:
        restored = 0
        for entry in entries:
            if isinstance(entry, Record):
                partition = self._restored_topic(entry.topic).partitions[entry.partition]
                if entry.offset >= partition.end:
                    partition.append(entry)
                    restored += 1
            elif isinstance(entry, Commit):
                group = self._groups.setdefault(entry.group, _Group(entry.group))
                group.committed[(entry.topic, entry.partition)] = entry.offset
                self._last_commit_ms[entry.group] = max(
                    entry.timestamp_ms, self._last_commit_ms.get(entry.group, 0)
                )
            elif isinstance(entry, OffsetMark):
                partition = self._restored_topic(entry.topic).partitions[entry.partition]
                partition.end = max(partition.end, entry.next_offset)
                partition.reserved = max(partition.reserved, partition.end)
            elif isinstance(entry, TopicEntry) and entry.name not in self._topics:
                spec = TOPICS.get(entry.name)
                if spec is None or spec.partitions != entry.partitions:
                    spec = TopicSpec(
                        entry.name, "", "", partitions=entry.partitions, compacted=entry.compacted
                    )
                self._create(spec)
        self._new_topics.clear()  # (topics restored from the journal are in it already)
        for topic in self._topics.values():
            if topic.spec.compacted:
                for partition in topic.partitions:
                    _compact(partition)
        if restored or self._groups:
            _logger.info(
                "bus log %s: %d records of %d topics and the offsets of %d groups restored",
                self.folder,
                sum(len(p.records) for t in self._topics.values() for p in t.partitions),
                len(self._topics),
                len(self._groups),
            )

    def _restored_topic(self, name: str) -> _Topic:
        topic = self._topics.get(name)
        if topic is None:  # (a TOPIC entry always comes first; this is a safety net)
            topic = self.topic(name)
        return topic

    def _create(self, spec: TopicSpec) -> _Topic:
        self._new_topics.append(encode_topic(spec.name, spec.partitions, spec.compacted))
        return super()._create(spec)

    # ------------------------------------------------------------------------- writing

    async def _store(self, records: Sequence[Record]) -> None:
        topics, self._new_topics = self._new_topics, []
        data = b"".join([*topics, *(encode_record(r) for r in records)])
        try:
            await self.journal.write(data, lambda: self._append(records))
        except BusUnavailableError:
            self._new_topics[:0] = topics
            raise
        except Exception as exc:  # (OSError from the disk; anything else alike)
            self._new_topics[:0] = topics  # written again with the next write
            raise PublishError(
                f"the bus log in {self.folder} refused the write:"
                f" {getattr(exc, 'strerror', None) or exc} [errno {getattr(exc, 'errno', None)}];"
                " nothing of this publish is stored"
            ) from exc

    async def _committed(self, group: _Group, tp: TopicPartition, offset: int) -> None:
        await super()._committed(group, tp, offset)
        now_ms = int(time.time() * 1000)
        self._last_commit_ms[group.name] = now_ms
        # (no TOPIC entries needed: the records committed were written after theirs)
        data = encode_commit(Commit(group.name, tp[0], tp[1], offset, now_ms))
        try:
            future = self.journal.submit(data)
        except BusUnavailableError:
            return  # stopping: the group re-reads this batch after a restart (at least once)
        future.add_done_callback(_warn_commit_failure)

    # ------------------------------------------------------------------------- lifecycle

    async def _connect(self) -> None:
        self.journal.start(self._checkpoint_state)
        self._housekeeping = asyncio.get_running_loop().create_task(
            self._housekeep(), name="bus-log:retention"
        )

    async def _disconnect(self) -> None:
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeping
            self._housekeeping = None
        await self.journal.close()

    async def healthy(self) -> bool:
        return self._started and self.journal.writable

    async def checkpoint(self) -> bool:
        """Apply retention and compaction and write a checkpoint now."""
        return await self.journal.checkpoint()

    def abandon(self) -> None:
        """Stop as a crash would (tests): nothing more is written, the folder is released.
        Subscriptions are left as they are; kill them first."""
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            self._housekeeping = None
        self.journal.abandon()
        self._started = False

    async def _housekeep(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_S)
            self.apply_retention()

    # ------------------------------------------------------------------------- retention

    def apply_retention(self, now_ms: int | None = None) -> int:
        """Drop records past the age and size limits (memory now, disk at the next
        checkpoint); returns how many were dropped."""
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        cutoff = now_ms - self.retention_ms
        dropped = 0
        heads: list[tuple[int, str, int]] = []
        total = 0
        for name, topic in self._topics.items():
            if topic.spec.compacted:
                continue
            for index, partition in enumerate(topic.partitions):
                old = 0
                for record in partition.records:
                    if record.timestamp_ms >= cutoff:
                        break
                    old += 1
                if old:
                    self._drop(name, index, partition, old, "age")
                    dropped += old
                total += partition.nbytes
                if partition.records:
                    heads.append((partition.records[0].timestamp_ms, name, index))
        heapq.heapify(heads)
        while total > self.retention_bytes and heads:
            _, name, index = heapq.heappop(heads)
            partition = self._topics[name].partitions[index]
            before = partition.nbytes
            self._drop(name, index, partition, 1, "size")
            dropped += 1
            total -= before - partition.nbytes
            if partition.records:
                heapq.heappush(heads, (partition.records[0].timestamp_ms, name, index))
        return dropped

    def _drop(self, topic: str, index: int, partition: _Partition, count: int, reason: str) -> None:
        below = partition.records[count - 1].offset + 1
        floor = self._consumed_floor(topic, index)
        unread = 0 if floor is None else max(0, below - max(floor, partition.start))
        partition.trim(below)
        if unread:
            DROPPED.labels(topic, reason).inc(min(unread, count))
            _logger.warning(
                "bus log: %d records of %s/%d dropped by retention (%s) before every group"
                " read them",
                min(unread, count),
                topic,
                index,
                "older than the age limit" if reason == "age" else "over the size limit",
            )

    def _checkpoint_state(self) -> Checkpoint:
        """The live state, after retention and compaction (called by the journal's writer)."""
        self.apply_retention()
        now_ms = int(time.time() * 1000)
        topics, offsets, records = [], [], []
        for name, topic in self._topics.items():
            topics.append(TopicEntry(name, len(topic.partitions), topic.spec.compacted))
            for index, partition in enumerate(topic.partitions):
                if topic.spec.compacted:
                    _compact(partition)
                offsets.append(OffsetMark(name, index, partition.end))
                records.extend(partition.records)
        self._new_topics.clear()
        commits = []
        for group in list(self._groups.values()):
            last = self._last_commit_ms.get(group.name, now_ms)
            if not group.members and now_ms - last > self.retention_ms:
                del self._groups[group.name]
                self._last_commit_ms.pop(group.name, None)
                continue
            for (topic_name, index), offset in group.committed.items():
                commits.append(Commit(group.name, topic_name, index, offset, last))
        return Checkpoint(topics, offsets, records, commits)


def _compact(partition: _Partition) -> None:
    """Keep the newest record per key (records without a key stay), offsets unchanged."""
    newest: dict[bytes, int] = {}
    for position, record in enumerate(partition.records):
        if record.key is not None:
            newest[record.key] = position
    if len(newest) == sum(1 for r in partition.records if r.key is not None):
        return
    kept = [
        r
        for position, r in enumerate(partition.records)
        if r.key is None or newest[r.key] == position
    ]
    end = partition.end
    partition.records = []
    partition.nbytes = 0
    for record in kept:
        partition.append(record)
    partition.end = end


def _warn_commit_failure(future: asyncio.Future[None]) -> None:
    if future.cancelled() or future.exception() is None:
        return
    _logger.warning(
        "bus log: a committed offset could not be written (%s); after a crash that batch"
        " would be delivered again",
        future.exception(),
    )
