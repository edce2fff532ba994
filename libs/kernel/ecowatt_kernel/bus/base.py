"""The bus interface both backends implement, and the batch runner they share.

A consumer calls its handler with the records of one partition, in offset order, and commits
their offsets only after the handler returns (its effect is durable). A failing batch is
retried; a batch that keeps failing is split so that the one poison record goes to
`<topic>.dlq` with the error in its headers while the rest flow on. Failures of a dependency
(`TransientError`, connection errors) are retried with back-off and never dead-lettered: the
partition simply stops advancing, which is the backpressure the platform wants.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Sequence

from ecowatt_kernel.bus.types import (
    BatchHandler,
    Message,
    RebalanceHook,
    Record,
    TransientError,
)
from ecowatt_kernel.contracts.topics import TopicSpec
from ecowatt_kernel.metrics import BUS_CONSUMED, BUS_DLQ, BUS_HANDLER_SECONDS, BUS_RETRIES
from ecowatt_kernel.tracing import TRACE_HEADER, trace_context

__all__ = ["DEFAULT_MAX_BATCH", "Bus", "Subscription", "is_transient"]

_logger = logging.getLogger(__name__)

DEFAULT_MAX_BATCH = 500
_BACKOFF_START_S = 0.05
_BACKOFF_MAX_S = 5.0

ERROR_TYPE_HEADER = "x-error-type"
ERROR_MESSAGE_HEADER = "x-error-message"
ORIGIN_HEADER = "x-origin"
ATTEMPTS_HEADER = "x-attempts"


def is_transient(exc: BaseException) -> bool:
    """True for failures of a dependency rather than of the message."""
    if isinstance(exc, TransientError | ConnectionError | TimeoutError):
        return True
    if isinstance(exc, OSError):
        return True
    # SQLAlchemy wraps driver connection errors; avoid importing it here.
    return bool(getattr(exc, "connection_invalidated", False))


class _Stopping(Exception):
    """The subscription is stopping while a batch waits to be retried."""


class Subscription(abc.ABC):
    """One consumer of a group."""

    def __init__(
        self,
        *,
        bus: Bus,
        group: str,
        topics: Sequence[str],
        handler: BatchHandler,
        max_batch: int,
        max_attempts: int,
        concurrent_partitions: bool = False,
        on_assigned: RebalanceHook | None = None,
        on_revoked: RebalanceHook | None = None,
    ) -> None:
        self.bus = bus
        self.group = group
        self.topics = tuple(topics)
        self.handler = handler
        self.max_batch = max_batch
        self.max_attempts = max_attempts
        self.concurrent_partitions = concurrent_partitions
        self.on_assigned = on_assigned
        self.on_revoked = on_revoked
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @abc.abstractmethod
    async def start(self) -> None:
        """Join the group and begin consuming (sets `_task`)."""

    @abc.abstractmethod
    async def _close(self) -> None:
        """Leave the group and release resources; the loop task has ended."""

    @abc.abstractmethod
    def _on_stop_requested(self) -> None:
        """Wake the loop if it waits for records."""

    @property
    def running(self) -> bool:
        """True while the consumer loop runs."""
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        """Finish and commit the batch in hand, then leave the group."""
        self._stopping.set()
        self._on_stop_requested()
        if self._task is not None:
            await self._task
        await self._close()
        self._task = None
        self.bus.forget(self)

    async def kill(self) -> None:
        """Leave at once without committing (tests use it to simulate a crash)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._close()
        self._task = None
        self.bus.forget(self)

    async def handle(self, records: Sequence[Record]) -> None:
        """Run the handler until the batch's effect is durable or dead-lettered."""
        topic = records[0].topic
        if await self._attempt(records, topic, isolate=len(records) > 1):
            BUS_CONSUMED.labels(topic, self.group).inc(len(records))
            return
        # The batch kept failing: find the poison records one at a time.
        for record in records:
            await self._attempt([record], topic, isolate=False)
        BUS_CONSUMED.labels(topic, self.group).inc(len(records))

    async def _attempt(self, records: Sequence[Record], topic: str, *, isolate: bool) -> bool:
        """Try the handler; True when it succeeded, False when the batch must be split."""
        failures = 0
        backoff = _BACKOFF_START_S
        while True:
            trace = records[-1].header(TRACE_HEADER)
            started = time.perf_counter()
            try:
                with trace_context(trace.decode() if trace else None):
                    await self.handler(records)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if is_transient(exc):
                    BUS_RETRIES.labels(topic, self.group, "transient").inc()
                    _logger.warning(
                        "group %s: transient failure on %s, retrying in %.2fs: %s",
                        self.group,
                        topic,
                        backoff,
                        exc,
                    )
                    await self._pause(backoff)
                    backoff = min(backoff * 2, _BACKOFF_MAX_S)
                    continue
                failures += 1
                BUS_RETRIES.labels(topic, self.group, "error").inc()
                if failures < self.max_attempts:
                    await self._pause(_BACKOFF_START_S * failures)
                    continue
                if isolate:
                    return False
                await self._dead_letter(records[0], exc, failures)
                return True
            else:
                BUS_HANDLER_SECONDS.labels(self.group).observe(time.perf_counter() - started)
                return True

    async def _pause(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            return
        raise _Stopping

    async def _dead_letter(self, record: Record, exc: Exception, attempts: int) -> None:
        message = Message(
            topic=record.topic + ".dlq",
            key=record.key,
            value=record.value,
            headers=(
                *record.headers,
                (ERROR_TYPE_HEADER, type(exc).__name__.encode()),
                (ERROR_MESSAGE_HEADER, str(exc)[:2000].encode()),
                (
                    ORIGIN_HEADER,
                    f"{record.topic}/{record.partition}/{record.offset}/{self.group}".encode(),
                ),
                (ATTEMPTS_HEADER, str(attempts).encode()),
            ),
        )
        _logger.error(
            "group %s: %s/%d@%d dead-lettered after %d attempts: %s: %s",
            self.group,
            record.topic,
            record.partition,
            record.offset,
            attempts,
            type(exc).__name__,
            exc,
        )
        backoff = _BACKOFF_START_S
        while True:
            try:
                await self.bus.publish([message])
            except Exception as publish_exc:  # the DLQ must not lose it either
                _logger.warning(
                    "group %s: DLQ publish failed, retrying: %s", self.group, publish_exc
                )
                await self._pause(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX_S)
            else:
                BUS_DLQ.labels(record.topic, self.group).inc()
                return


class Bus(abc.ABC):
    """Publish messages durably; consume them in groups with explicit commits."""

    subscription_class: type[Subscription]

    def __init__(self, *, max_attempts: int = 3) -> None:
        self.max_attempts = max_attempts
        self._subscriptions: list[Subscription] = []
        self._started = False

    @property
    def started(self) -> bool:
        return self._started

    async def start(self) -> None:
        """Connect, then start every subscription registered so far."""
        await self._connect()
        self._started = True
        for subscription in self._subscriptions:
            if not subscription.running:
                await subscription.start()

    async def stop(self) -> None:
        """Stop subscriptions gracefully (committing what they handled), then disconnect."""
        for subscription in reversed(self._subscriptions):
            if subscription.running:
                await subscription.stop()
        self._subscriptions.clear()
        self._started = False
        await self._disconnect()

    async def subscribe(
        self,
        *,
        group: str,
        topics: Sequence[str],
        handler: BatchHandler,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_attempts: int | None = None,
        concurrent_partitions: bool = False,
        on_assigned: RebalanceHook | None = None,
        on_revoked: RebalanceHook | None = None,
    ) -> Subscription:
        """Add a consumer to `group`; it starts now if the bus is started, else with it.

        With `concurrent_partitions` the handler may run for several partitions at once (each
        partition still in offset order, one batch at a time, committed after its handler
        returns), so one partition's batch can wait on a dependency while another's is
        computed. Only for handlers that are safe to run concurrently on different partitions.
        A backend may ignore it (the in-process bus does: one partition at a time).

        `on_revoked` and `on_assigned` let a service keep state per key in memory when
        several processes share the group (`ECOWATT_*_WORKERS`): `on_revoked` runs once the
        batch in hand is committed and before another member can take the partitions (drop
        or write what belongs to their keys), `on_assigned` before the first batch of the
        new partitions (load their keys' state); a member that stops is not called back.
        Only the Kafka bus calls them: the
        in-process buses serve one process, which holds every partition. A hook that fails
        is logged; the rebalance goes on.
        """
        subscription = self.subscription_class(
            bus=self,
            group=group,
            topics=topics,
            handler=handler,
            max_batch=max_batch,
            max_attempts=max_attempts or self.max_attempts,
            concurrent_partitions=concurrent_partitions,
            on_assigned=on_assigned,
            on_revoked=on_revoked,
        )
        self._subscriptions.append(subscription)
        if self._started:
            await subscription.start()
        return subscription

    def forget(self, subscription: Subscription) -> None:
        """Drop a stopped or killed subscription from the bus's list."""
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    @abc.abstractmethod
    async def publish(self, messages: Sequence[Message]) -> None:
        """Return once every message is acknowledged as durable; raise PublishError if not."""

    @abc.abstractmethod
    async def ensure_topics(self, specs: Iterable[TopicSpec]) -> None:
        """Create the topics that do not exist yet (with their DLQ twins)."""

    @abc.abstractmethod
    async def healthy(self) -> bool:
        """True when the bus can publish now."""

    @abc.abstractmethod
    async def end_offsets(self, topic: str) -> dict[int, int]:
        """The offset the next message of each partition of `topic` will get."""

    @abc.abstractmethod
    async def _connect(self) -> None: ...

    @abc.abstractmethod
    async def _disconnect(self) -> None: ...
