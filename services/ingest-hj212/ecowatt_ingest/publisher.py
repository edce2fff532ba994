"""One publisher for every connection: batches messages, publishes, then runs callbacks.

Connections `submit` the messages of a frame (its `hj212.frames` record and, for data, its
`telemetry.readings` message) with a callback that writes the device's answer. The messages
of all connections are collected and published in batches: a batch goes out when it holds
`batch_max` messages or `linger_s` after its first message, with up to `concurrency` publish
calls in flight. Order per key is kept: an entry whose `key` (the device) has messages in a
call still in flight waits for the next call, so one device's messages reach the bus in the
order they were submitted even with several calls in flight. A callback runs only after
the bus acknowledged every message of its entry (KafkaBus: acks=all), so an answer is
never written before the frame is durable.

With `before_complete` (several workers), the entries of a call are handed to that hook once
the bus acknowledged them and before any callback runs — ingest notes the call's uploads in
Redis there, in one round trip, so that every answered upload is known to every worker. The
hook failing delays nothing: it is logged and the callbacks run.

A failed publish is retried with back-off until it succeeds: the entries stay pending, their
devices get no answer meanwhile and re-send; nothing is dropped. The number of messages
queued or in flight is bounded: above `high_watermark` the `on_pressure(True)` hook tells the
server to stop reading sockets, and below `low_watermark` `on_pressure(False)` resumes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from ecowatt_kernel.bus import Bus, Message

from ecowatt_ingest.metrics import (
    BACKPRESSURE_SECONDS,
    PUBLISH_BATCH,
    PUBLISH_FAILURES,
    PUBLISH_PENDING,
    PUBLISH_SECONDS,
)

__all__ = ["BatchPublisher", "Entry"]

_logger = logging.getLogger(__name__)

Callback = Callable[[], None]


class Entry:
    """The messages of one submission; `done` once the bus acknowledged all of them."""

    __slots__ = ("callbacks", "done", "key", "messages", "shared")

    def __init__(self, messages: Sequence[Message], callback: Callback | None, key: object) -> None:
        self.messages = messages
        self.key = key
        self.callbacks: list[Callback] | None = [callback] if callback is not None else None
        self.done = False
        self.shared: tuple[str, str] | None = None
        """What `before_complete` shares about the entry (ingest: MN and upload)."""

    def then(self, callback: Callback) -> None:
        """Run `callback` once the entry is durable (now, if it already is)."""
        if self.done:
            callback()
        elif self.callbacks is None:
            self.callbacks = [callback]
        else:
            self.callbacks.append(callback)

    def _complete(self) -> None:
        self.done = True
        self.messages = ()  # an entry may be remembered (duplicates); its bytes need not be
        callbacks, self.callbacks = self.callbacks, None
        if callbacks:
            for callback in callbacks:
                try:
                    callback()
                except Exception:
                    _logger.exception("publish callback failed")


class BatchPublisher:
    """See the module docstring."""

    def __init__(
        self,
        bus: Bus,
        *,
        batch_max: int = 5000,
        linger_s: float = 0.002,
        concurrency: int = 8,
        high_watermark: int = 20_000,
        low_watermark: int = 10_000,
        retry_max_s: float = 5.0,
        on_pressure: Callable[[bool], None] | None = None,
        before_complete: Callable[[list[Entry]], Awaitable[None]] | None = None,
    ) -> None:
        self.bus = bus
        self.before_complete = before_complete
        self.batch_max = batch_max
        self.linger_s = linger_s
        self.concurrency = concurrency
        self.high_watermark = high_watermark
        self.low_watermark = min(low_watermark, high_watermark)
        self.retry_max_s = retry_max_s
        self.on_pressure = on_pressure
        self._queued = 0
        self._entries: list[Entry] = []
        self._in_flight_keys: set[object] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending = 0
        self._pressed_since: float | None = None
        self._closing = False
        self.published = 0
        self.failures = 0

    @property
    def pending(self) -> int:
        """Messages queued or in flight."""
        return self._pending

    @property
    def under_pressure(self) -> bool:
        return self._pressed_since is not None

    def submit(
        self,
        messages: Sequence[Message],
        callback: Callback | None = None,
        *,
        key: object = None,
    ) -> Entry:
        """Queue `messages`; `callback` runs once all of them are durable.

        Entries with the same `key` (not None) reach the bus in submission order.
        """
        entry = Entry(messages, callback, key)
        count = len(messages)
        self._entries.append(entry)
        self._queued += count
        self._pending += count
        if self._queued >= self.batch_max:
            if len(self._tasks) < self.concurrency:
                self._flush()
        elif self._timer is None and not self._closing:
            self._timer = asyncio.get_running_loop().call_later(self.linger_s, self._on_timer)
        if self._pressed_since is None and self._pending > self.high_watermark:
            self._pressed_since = time.monotonic()
            if self.on_pressure is not None:
                self.on_pressure(True)
        return entry

    def _on_timer(self) -> None:
        self._timer = None
        if self._entries and len(self._tasks) < self.concurrency:
            self._flush()

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        busy = self._in_flight_keys
        taken: list[Entry] = []
        deferred: list[Entry] = []
        messages: list[Message] = []
        keys: set[object] = set()
        for entry in self._entries:
            key = entry.key
            if (key is not None and key in busy) or len(messages) >= self.batch_max:
                deferred.append(entry)
                continue
            taken.append(entry)
            messages.extend(entry.messages)
            if key is not None:
                keys.add(key)
        self._entries = deferred
        if not taken:
            return
        self._queued -= len(messages)
        busy |= keys
        task = asyncio.get_running_loop().create_task(self._publish(messages, taken, keys))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish(
        self, messages: list[Message], entries: list[Entry], keys: set[object]
    ) -> None:
        started = time.perf_counter()
        backoff = 0.05
        count = len(messages)
        PUBLISH_BATCH.observe(count)
        PUBLISH_PENDING.set(self._pending)
        try:
            while True:
                try:
                    await self.bus.publish(messages)
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.failures += 1
                    PUBLISH_FAILURES.inc()
                    if self._closing:
                        _logger.warning(
                            "dropping %d unacknowledged messages at shutdown (their devices"
                            " got no answer and will re-send): %s",
                            count,
                            exc,
                        )
                        return
                    _logger.warning(
                        "publish of %d messages failed, retrying in %.2fs: %s", count, backoff, exc
                    )
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self.retry_max_s)
            PUBLISH_SECONDS.observe(time.perf_counter() - started)
            self.published += count
            if self.before_complete is not None:
                try:
                    await asyncio.wait_for(self.before_complete(entries), 2.0)
                except Exception as exc:
                    _logger.warning("after-publish hook failed", extra={"error": repr(exc)})
            for entry in entries:
                entry._complete()
        finally:
            self._in_flight_keys -= keys
            self._pending -= count
            PUBLISH_PENDING.set(self._pending)
            if self._pressed_since is not None and self._pending <= self.low_watermark:
                BACKPRESSURE_SECONDS.inc(time.monotonic() - self._pressed_since)
                self._pressed_since = None
                if self.on_pressure is not None:
                    self.on_pressure(False)
            if self._entries and not self._closing and len(self._tasks) <= self.concurrency:
                asyncio.get_running_loop().call_soon(self._after_publish)

    def _after_publish(self) -> None:
        if self._entries and not self._closing and len(self._tasks) < self.concurrency:
            self._flush()

    async def drain(self, timeout_s: float = 10.0) -> bool:
        """Publish what is queued and wait for every call in flight; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while self._entries or self._tasks:
            if self._entries and len(self._tasks) < self.concurrency:
                self._flush()
            if time.monotonic() > deadline:
                return False
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=max(deadline - time.monotonic(), 0))
            else:
                await asyncio.sleep(0)
        return True

    async def close(self, timeout_s: float = 10.0) -> None:
        """Drain for up to `timeout_s`, then give up on what is left (no answers are sent)."""
        drained = await self.drain(timeout_s)
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not drained:
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=5)
