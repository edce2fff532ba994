"""The gateway's audit events: one per request it answers, published in batches.

`record()` puts the encoded event on a bounded queue and returns at once (the response is
not held up by the broker); one task publishes the queue in batches. When the queue is
full — the bus has been unreachable for a while — the gateway refuses new requests with
503 rather than serve them unaudited (`saturated`). An event can only be lost if the
process dies between answering and the broker's acknowledgement (milliseconds); the
shutdown path publishes what is queued before the bus stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ecowatt_kernel.bus import Bus, Message
from ecowatt_kernel.contracts import AuditEvent, encode

__all__ = ["AuditEmitter"]

_logger = logging.getLogger(__name__)


class AuditEmitter:
    def __init__(self, bus: Bus, *, topic: str, capacity: int = 20_000, batch: int = 500) -> None:
        self.bus = bus
        self.topic = topic
        self.capacity = capacity
        self.batch = batch
        self._queue: asyncio.Queue[Message] = asyncio.Queue(maxsize=capacity)
        self._task: asyncio.Task[None] | None = None
        self._in_flight = 0
        self.published = 0

    @property
    def saturated(self) -> bool:
        return self._queue.full()

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def record(self, event: AuditEvent) -> bool:
        """Queue the event (encoded now, under the request's trace id); False when full."""
        try:
            self._queue.put_nowait(encode(event, topic=self.topic))
        except asyncio.QueueFull:
            _logger.error("audit queue full: an audit event of %s was not queued", event.action)
            return False
        return True

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="gateway:audit")

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            batch = [first]
            while len(batch) < self.batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            self._in_flight = len(batch)
            try:
                await self._publish(batch)
            finally:
                self._in_flight = 0

    async def _publish(self, batch: list[Message]) -> None:
        delay = 0.2
        while True:
            try:
                await self.bus.publish(batch)
                self.published += len(batch)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _logger.warning("audit events not published yet (%d): %s", len(batch), exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def flush(self, timeout_s: float = 10.0) -> None:
        """Wait until everything queued is published (used at shutdown and by tests)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self._queue.qsize() or self._in_flight:
            if asyncio.get_running_loop().time() > deadline:
                return
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        await self.flush()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        rest: list[Message] = []
        while not self._queue.empty():
            rest.append(self._queue.get_nowait())
        if rest:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.bus.publish(rest), 10)
