"""The Kafka bus (aiokafka).

Producer: idempotent, acks=all, batched (linger) and compressed; `publish` returns when the
broker has acknowledged every message, and at most `max_in_flight` messages wait for an
acknowledgement at any time — beyond that `publish` waits, which pushes back on the caller
(the ingest server stops reading sockets) instead of buffering without bound.

Consumers: one aiokafka consumer per subscription, auto-commit off. Records are handled one
partition batch at a time and that partition's offset is committed right after the handler
returns. A rebalance waits for the batch in hand (the revoke callback takes the same lock as
the handler), so a partition is never handled by two members at once; records fetched for a
partition that was revoked meanwhile are skipped and will be read by the new owner from the
committed offset. A subscription's `on_revoked` hook runs inside that wait (after the last
batch is committed), its `on_assigned` hook before the new partitions are fetched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    CommitFailedError,
    InvalidProducerEpoch,
    KafkaError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    UnknownProducerId,
)

from ecowatt_kernel.bus.base import Bus, Subscription, _Stopping
from ecowatt_kernel.bus.types import (
    BusUnavailableError,
    Message,
    Partitions,
    PublishError,
    RebalanceHook,
    Record,
)
from ecowatt_kernel.contracts.topics import TopicSpec, dlq_topic
from ecowatt_kernel.metrics import BUS_CONSUMER_LAG, BUS_PUBLISH_SECONDS, BUS_PUBLISHED

__all__ = ["KafkaBus", "KafkaConnection"]

_logger = logging.getLogger(__name__)
_RECORD_OVERHEAD_MAX = 4096  # batch header and varints, far above what a record adds
_PARTITION_CACHE_MAX = 100_000  # keys per (topic, partition count) before the cache restarts
# A batch refused with one of these leaves the idempotent producer's sequence for its
# partition behind the broker's (aiokafka does not retry them, and every later batch to the
# partition is refused the same way): only a new producer id starts the sequences afresh.
_PRODUCER_STATE_ERRORS = (
    OutOfOrderSequenceNumber,
    InvalidProducerEpoch,
    UnknownProducerId,
    ProducerFenced,
)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class KafkaConnection:
    """How to reach the brokers; shared by producer, consumers and admin client."""

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        client_id: str = "ecowatt",
        security_protocol: str = "PLAINTEXT",
        sasl_mechanism: str | None = None,
        sasl_username: str | None = None,
        sasl_password: str | None = None,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.client_id = client_id
        self.security_protocol = security_protocol
        self.sasl_mechanism = sasl_mechanism
        self.sasl_username = sasl_username
        self.sasl_password = sasl_password

    def options(self) -> dict[str, Any]:
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            options |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.sasl_username,
                "sasl_plain_password": self.sasl_password,
            }
        return options


class _InFlight:
    """Counts messages awaiting acknowledgement; `acquire` waits while the window is full."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self._released = asyncio.Condition()

    async def acquire(self, n: int) -> None:
        if self.count + n <= self.limit or self.count == 0:
            self.count += n
            return
        async with self._released:
            while not (self.count + n <= self.limit or self.count == 0):
                await self._released.wait()
            self.count += n

    async def release(self, n: int) -> None:
        self.count -= n
        async with self._released:
            self._released.notify_all()


class KafkaBus(Bus):
    """The production bus; see the module docstring."""

    def __init__(
        self,
        connection: KafkaConnection,
        *,
        max_in_flight: int = 20_000,
        linger_ms: int = 5,
        compression: str | None = "lz4",
        replication_factor: int = 1,
        max_attempts: int = 3,
        request_timeout_ms: int = 30_000,
    ) -> None:
        super().__init__(max_attempts=max_attempts)
        self.connection = connection
        self.replication_factor = replication_factor
        self._in_flight = _InFlight(max_in_flight)
        self._producer_options: dict[str, Any] = {
            **connection.options(),
            "enable_idempotence": True,
            "acks": "all",
            "linger_ms": linger_ms,
            "compression_type": None if compression in (None, "none") else compression,
            "max_batch_size": 256 * 1024,
            "request_timeout_ms": request_timeout_ms,
        }
        self._producer: AIOKafkaProducer | None = None
        self._producer_lock = asyncio.Lock()
        self._partition_cache: dict[tuple[str, int], dict[bytes, int]] = {}
        self._partition_locks: dict[tuple[str, int], asyncio.Lock] = {}

    async def _connect(self) -> None:
        producer = AIOKafkaProducer(**self._producer_options)
        try:
            await producer.start()
        except KafkaError as exc:
            await producer.stop()
            raise BusUnavailableError(f"cannot reach Kafka: {exc}") from exc
        self._producer = producer

    async def _disconnect(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def healthy(self) -> bool:
        producer = self._producer
        if producer is None:
            return False
        try:
            await asyncio.wait_for(producer.client.fetch_all_metadata(), 5)
        except (KafkaError, TimeoutError, OSError):
            return False
        return True

    async def end_offsets(self, topic: str) -> dict[int, int]:
        probe = AIOKafkaConsumer(**self.connection.options())
        await probe.start()
        try:
            partitions = probe.partitions_for_topic(topic) or set()
            if not partitions:
                await probe._client.force_metadata_update()
                partitions = probe.partitions_for_topic(topic) or set()
            ends = await probe.end_offsets([TopicPartition(topic, p) for p in partitions])
        finally:
            await probe.stop()
        return {tp.partition: offset for tp, offset in ends.items()}

    @staticmethod
    def _producer_failed(producer: AIOKafkaProducer) -> bool:
        """True when the producer can never deliver again: its sender task ended on a fatal
        error (aiokafka: OutOfOrderSequenceNumber after batches expired while a broker was
        away, ProducerFenced …) and every later send raises a copy of that error."""
        sender = getattr(producer, "_sender", None)
        task = getattr(sender, "sender_task", None)
        accumulator = getattr(producer, "_message_accumulator", None)
        return (task is not None and task.done()) or (
            getattr(accumulator, "_exception", None) is not None
        )

    async def _replace_producer(self, failed: AIOKafkaProducer | None) -> None:
        """A new producer (new producer id, sequences from 0) in place of `failed`."""
        async with self._producer_lock:
            if self._producer is not failed or not self._started:
                return  # another publisher replaced it already, or the bus is stopping
            self._producer = None
            if failed is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(failed.stop(), 10)
            _logger.warning("Kafka producer failed for good: starting a new one")
            await self._connect()  # BusUnavailableError while the broker is away: next time

    async def publish(self, messages: Sequence[Message]) -> None:
        producer = self._producer
        if producer is None:
            if not self._started:
                raise BusUnavailableError("the Kafka bus is not started")
            await self._replace_producer(None)  # a replacement failed earlier: try again
            producer = self._producer
            assert producer is not None
        if not messages:
            return
        count = len(messages)
        await self._in_flight.acquire(count)
        started = time.perf_counter()
        futures: list[asyncio.Future[Any]] = []
        try:
            futures = await self._send(producer, messages)
            await asyncio.gather(*futures)
        except BaseException as exc:  # a refusal, or a caller's timeout cancelling us
            for future in futures:  # the other batches' outcomes: retrieved, not logged
                future.add_done_callback(_retrieve)
            if not isinstance(exc, KafkaError):
                raise
            if isinstance(exc, _PRODUCER_STATE_ERRORS) or self._producer_failed(producer):
                with contextlib.suppress(BusUnavailableError):
                    await self._replace_producer(producer)
            raise PublishError(f"Kafka did not acknowledge: {exc!r}") from exc
        finally:
            await self._in_flight.release(count)
        elapsed = time.perf_counter() - started
        topics = {m.topic for m in messages}
        for topic in topics:
            BUS_PUBLISH_SECONDS.labels(topic).observe(elapsed)
            BUS_PUBLISHED.labels(topic).inc(sum(1 for m in messages if m.topic == topic))

    async def _send(
        self, producer: AIOKafkaProducer, messages: Sequence[Message]
    ) -> list[asyncio.Future[Any]]:
        """Queue `messages` as record batches; one future per batch.

        Each message goes to the partition the producer's own partitioner picks (cached per
        key while the topic's partition count stays the same), in the order given. Most of
        the cost of `producer.send` is per message (a coroutine, the partitioner, a future);
        appending to a batch builder is not. Publishers take turns per partition, so that a
        batch waits for at most the one ahead of it.
        """
        by_partition: dict[tuple[str, int], list[Message]] = {}
        caches: dict[str, dict[bytes, int]] = {}
        size_check_from = producer._max_request_size - _RECORD_OVERHEAD_MAX
        for message in messages:
            topic, key = message.topic, message.key
            cache = caches.get(topic)
            if cache is None:
                await producer.client._wait_on_metadata(topic)
                count = len(producer._metadata.partitions_for_topic(topic) or ())
                cache = self._partition_cache.get((topic, count))
                if cache is None or len(cache) > _PARTITION_CACHE_MAX:
                    cache = self._partition_cache[(topic, count)] = {}
                caches[topic] = cache
            size = len(message.value) + (len(key) if key is not None else 0)
            for name, value in message.headers:
                size += len(name) + len(value)
            if size > size_check_from:  # what `send` refuses (MessageSizeTooLargeError)
                producer._serialize(key, message.value, list(message.headers))
            partition = cache.get(key) if key is not None else None
            if partition is None:
                partition = producer._partition(topic, None, key, message.value, key, message.value)
                if key is not None:
                    cache[key] = partition
            queued = by_partition.get((topic, partition))
            if queued is None:
                by_partition[(topic, partition)] = [message]
            else:
                queued.append(message)
        futures: list[asyncio.Future[Any]] = []
        for (topic, partition), queued in by_partition.items():
            lock = self._partition_locks.get((topic, partition))
            if lock is None:
                lock = self._partition_locks[(topic, partition)] = asyncio.Lock()
            async with lock:
                builder = producer.create_batch()
                for m in queued:
                    key, value, headers = m.key, m.value, list(m.headers)
                    added = builder.append(timestamp=None, key=key, value=value, headers=headers)
                    if added is not None:  # None: the batch is full
                        continue
                    futures.append(await producer.send_batch(builder, topic, partition=partition))
                    builder = producer.create_batch()
                    builder.append(timestamp=None, key=key, value=value, headers=headers)
                builder.close()
                futures.append(await producer.send_batch(builder, topic, partition=partition))
        return futures

    async def ensure_topics(self, specs: Iterable[TopicSpec]) -> None:
        wanted = {s.name: s for spec in specs for s in (spec, dlq_topic(spec))}
        admin = AIOKafkaAdminClient(**self.connection.options())
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            missing = [
                NewTopic(
                    name=s.name,
                    num_partitions=s.partitions,
                    replication_factor=self.replication_factor,
                    topic_configs=s.broker_config(),
                )
                for name, s in wanted.items()
                if name not in existing
            ]
            if missing:
                response = await admin.create_topics(missing)
                for name, code, *_ in getattr(response, "topic_errors", []):
                    if code not in (0, 36):  # 36: TOPIC_ALREADY_EXISTS (a concurrent creator)
                        raise KafkaError(f"cannot create topic {name}: error code {code}")
                await self._await_metadata([t.name for t in missing])
        finally:
            await admin.close()

    async def _await_metadata(self, names: list[str], limit_s: float = 30.0) -> None:
        """Wait until the new topics' leaders are known, so the first publish does not fail."""
        probe = AIOKafkaConsumer(**self.connection.options())
        await probe.start()
        try:
            deadline = time.monotonic() + limit_s
            while time.monotonic() < deadline:
                await probe._client.force_metadata_update()
                known = await probe.topics()
                if all(name in known and probe.partitions_for_topic(name) for name in names):
                    return
                await asyncio.sleep(0.2)
        finally:
            await probe.stop()


async def _partition_count(consumer: AIOKafkaConsumer, topic: str) -> int:
    """The topic's partition count (a topic created moments ago may not be in the
    consumer's metadata yet: ask the broker)."""
    for _ in range(50):
        count = len(consumer.partitions_for_topic(topic) or ())
        if count:
            return count
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.1)
    return 0


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, subscription: _KafkaSubscription, consumer: AIOKafkaConsumer) -> None:
        self.subscription = subscription
        self.consumer = consumer  # (the first assignment may come before `start` returns)

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # Wait for the batch in hand to be handled and committed before giving partitions up.
        sub = self.subscription
        async with sub.processing:
            sub.revoked_generation += 1
            if revoked:
                await sub.rebalanced(self.consumer, sub.on_revoked, revoked, "revoked")

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        sub = self.subscription
        await sub.rebalanced(self.consumer, sub.on_assigned, assigned, "assigned")


class _KafkaSubscription(Subscription):
    bus: KafkaBus

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.processing = asyncio.Lock()
        self.revoked_generation = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._lag: dict[TopicPartition, int] = {}

    async def rebalanced(
        self,
        consumer: AIOKafkaConsumer,
        hook: RebalanceHook | None,
        partitions: set[TopicPartition],
        what: str,
    ) -> None:
        """Log a rebalance step; run its hook with the partitions and their topics' counts."""
        held = frozenset((tp.topic, tp.partition) for tp in partitions)
        _logger.info(
            "group %s: partitions %s: %s",
            self.group,
            what,
            ", ".join(f"{t}/{p}" for t, p in sorted(held)) or "none",
        )
        if hook is None:
            return
        counts = {
            topic: await _partition_count(consumer, topic)
            for topic in {tp.topic for tp in partitions}
        }
        try:
            await hook(Partitions(held, counts))
        except Exception:
            _logger.exception("group %s: the %s hook failed", self.group, what)

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            **self.bus.connection.options(),
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.max_batch,
            fetch_max_wait_ms=100,
            # A batch may wait on a slow dependency; allow it before the group evicts us.
            max_poll_interval_ms=300_000,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=2_000,
        )
        consumer.subscribe(topics=list(self.topics), listener=_Listener(self, consumer))
        try:
            await consumer.start()
        except KafkaError as exc:
            await consumer.stop()
            raise BusUnavailableError(f"cannot reach Kafka: {exc}") from exc
        self._consumer = consumer
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(consumer), name=f"bus:{self.group}")

    def _on_stop_requested(self) -> None:
        return None  # the loop polls with a 200 ms timeout and sees the flag

    async def _close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        try:
            while not self._stopping.is_set():
                batches = await consumer.getmany(timeout_ms=200, max_records=self.max_batch)
                if self.concurrent_partitions and len(batches) > 1:
                    await self._handle_partitions(consumer, batches)
                    continue
                for tp, messages in batches.items():
                    if self._stopping.is_set():
                        return
                    await self._handle_partition(consumer, tp, messages)
        except _Stopping:
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            _logger.exception("Kafka consumer of group %s failed", self.group)
            raise

    async def _handle_partitions(
        self, consumer: AIOKafkaConsumer, batches: dict[TopicPartition, list[Any]]
    ) -> None:
        """Handle the batches of several partitions at once (`concurrent_partitions`); a
        rebalance waits for all of them, as it waits for one batch otherwise."""
        async with self.processing:
            if self._stopping.is_set():
                return
            outcomes = await asyncio.gather(
                *(self._handle_batch(consumer, tp, messages) for tp, messages in batches.items()),
                return_exceptions=True,
            )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _handle_partition(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, messages: list[Any]
    ) -> None:
        async with self.processing:
            await self._handle_batch(consumer, tp, messages)

    async def _handle_batch(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, messages: list[Any]
    ) -> None:
        if tp not in consumer.assignment():
            return  # revoked since the fetch; the new owner reads from the committed offset
        generation = self.revoked_generation
        records = [
            Record(
                m.topic,
                m.partition,
                m.offset,
                m.key,
                m.value,
                tuple((k, bytes(v)) for k, v in (m.headers or ())),
                m.timestamp,
            )
            for m in messages
        ]
        await self.handle(records)
        next_offset = records[-1].offset + 1
        try:
            await consumer.commit({tp: next_offset})
        except CommitFailedError:
            # The group rebalanced under us; the new owner will re-handle (at least once).
            _logger.warning(
                "group %s: commit of %s@%d failed after a rebalance (generation %d)",
                self.group,
                tp,
                next_offset,
                generation,
            )
            return
        highwater = consumer.highwater(tp)
        if highwater is not None:
            self._lag[tp] = max(highwater - next_offset, 0)
            BUS_CONSUMER_LAG.labels(tp.topic, self.group).set(
                sum(v for k, v in self._lag.items() if k.topic == tp.topic)
            )


KafkaBus.subscription_class = _KafkaSubscription
