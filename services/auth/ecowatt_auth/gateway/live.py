"""Live updates for the web application: `GET /api/live/stream`, Server-Sent Events.

The overview (一张图) loads its snapshot from the services' APIs and then follows this
stream instead of polling. The gateway's process reads `facility.states` and `alarms` in a
consumer group of its own (`auth.live.<random>`, so every gateway instance sees every
event, like a `RegistryView`), skips what was produced before it started, and hands each
open stream the events its caller's data scope allows (the enterprise's district from the
auth service's `RegistryView`). Points' state changes are left out: the overview shows
enterprises and facilities.

    event: batch
    data: [{"type": "facility", "enterprise_id": …, "facility_id": …, "state": …, "since": …},
           {"type": "alarm", "alarm_id": …, "enterprise_id": …, "status": …, "level": …, …}]

Events are sent in batches at most every `BATCH_S` seconds (a browser repaints once per
batch, not once per event); a comment line every `HEARTBEAT_S` keeps proxies from closing
an idle stream; a stream whose queue overflows gets `event: resync` (reload the snapshot).
A stream ends after `MAX_STREAM_S`: the browser reconnects, which authenticates it again
(a logged-out session or a changed scope stops receiving). The route is the gateway's own,
authenticated and audited like every `/api` request; API keys are refused (no dataset).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

from ecowatt_kernel.bus import Bus, Record
from ecowatt_kernel.contracts import AlarmChanged, ContractError, FacilityStateChanged, decode
from ecowatt_kernel.identity import DataScope, InvalidTokenError, TokenVerifier
from ecowatt_kernel.registry_view import RegistryView
from starlette.types import Receive, Scope, Send

from ecowatt_auth.gateway.forward import Headers, send_problem

__all__ = ["LiveBoard", "LiveForwarder"]

_logger = logging.getLogger(__name__)

BATCH_S = 1.0
HEARTBEAT_S = 15.0
MAX_STREAM_S = 600.0
QUEUE_LIMIT = 5000
TOPICS = ("facility.states", "alarms")


class _Listener:
    def __init__(self, scope: DataScope) -> None:
        self.scope = scope
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_LIMIT)
        self.overflowed = False
        self.wake = asyncio.Event()

    def offer(self, item: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.overflowed = True
        self.wake.set()


class LiveBoard:
    """Fans the bus's facility and alarm events out to the open streams, by scope."""

    def __init__(self, view: RegistryView | None) -> None:
        self.view = view
        self.started_ms = int(time.time() * 1000)
        self.listeners: set[_Listener] = set()

    async def attach(self, bus: Bus, *, topics: Sequence[str] = TOPICS) -> None:
        """Follow `topics` in a consumer group of this process's own."""
        await bus.subscribe(
            group=f"auth.live.{uuid.uuid4().hex[:12]}", topics=topics, handler=self.handle
        )

    def allows(self, scope: DataScope, enterprise_id: str, district: str | None) -> bool:
        if scope.all:
            return True
        if district is None and self.view is not None:
            enterprise = self.view.enterprise(enterprise_id)
            district = enterprise.district_code if enterprise is not None else None
        return scope.allows(district=district, enterprise_id=enterprise_id)

    async def handle(self, records: Sequence[Record]) -> None:
        """One batch of one partition: nothing to store, only to hand on."""
        if not self.listeners:
            return
        for record in records:
            if record.timestamp_ms and record.timestamp_ms < self.started_ms - 5000:
                continue  # history from before this process: the snapshot APIs have it
            try:
                item = self._item(record)
            except Exception:  # a live view never holds up the partition (or dead-letters)
                _logger.exception("live stream: cannot read %s@%d", record.topic, record.offset)
                continue
            if item is None:
                continue
            district = item.pop("district_code", None)
            for listener in list(self.listeners):
                if self.allows(listener.scope, item["enterprise_id"], district):
                    listener.offer(item)

    @staticmethod
    def _item(record: Record) -> dict[str, Any] | None:
        try:
            event = decode(record).data
        except ContractError:
            return None
        if isinstance(event, FacilityStateChanged):
            if event.subject_kind != "facility":
                return None
            return {
                "type": "facility",
                "enterprise_id": event.enterprise_id,
                "facility_id": event.subject_id,
                "state": event.state,
                "since": event.since.isoformat(),
            }
        if isinstance(event, AlarmChanged):
            return {
                "type": "alarm",
                "alarm_id": event.alarm_id,
                "enterprise_id": event.enterprise_id,
                "district_code": event.district_code,
                "rule_code": event.rule_code,
                "rule_name": event.rule_name,
                "change": event.change,
                "status": event.status,
                "level": event.level,
                "active": event.active,
                "changed_at": event.changed_at.isoformat(),
            }
        return None

    @contextlib.contextmanager
    def listen(self, scope: DataScope) -> Any:
        listener = _Listener(scope)
        self.listeners.add(listener)
        try:
            yield listener
        finally:
            self.listeners.discard(listener)


class LiveForwarder:
    """The gateway's `/api/live/…` routes: the identity comes from the token the gateway
    minted (or the caller's bearer token), verified like any service verifies it."""

    def __init__(self, board: LiveBoard, verifier: TokenVerifier) -> None:
        self.board = board
        self.verifier = verifier

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, *, prefix: str, headers: Headers
    ) -> None:
        path = scope["path"][len(prefix) :]
        if path != "/stream" or scope["method"] != "GET":
            await send_problem(send, 404, "not-found", f"no such endpoint {scope['path']}")
            return
        authorization = dict(headers).get(b"authorization", b"").decode("latin-1")
        try:
            identity = self.verifier.verify(authorization.removeprefix("Bearer ").strip())
        except InvalidTokenError as exc:
            await send_problem(send, 401, "unauthorized", f"invalid token: {exc.reason}")
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-store"),
                    (b"x-accel-buffering", b"no"),
                ],
            }
        )
        disconnected = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            disconnected.set()

        watcher = asyncio.create_task(watch())
        try:
            with self.board.listen(identity.scope) as listener:
                await self._stream(send, listener, disconnected)
        except OSError:
            pass  # the browser went away mid-write
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _stream(self, send: Send, listener: _Listener, disconnected: asyncio.Event) -> None:
        async def emit(chunk: str) -> None:
            await send({"type": "http.response.body", "body": chunk.encode(), "more_body": True})

        await emit("retry: 3000\nevent: hello\ndata: {}\n\n")
        ends = time.monotonic() + MAX_STREAM_S
        last_sent = time.monotonic()
        while not disconnected.is_set() and time.monotonic() < ends:
            listener.wake.clear()
            if listener.queue.empty():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(listener.wake.wait(), HEARTBEAT_S)
            if disconnected.is_set():
                break
            if listener.overflowed:
                listener.overflowed = False
                while not listener.queue.empty():
                    listener.queue.get_nowait()
                await emit("event: resync\ndata: {}\n\n")
                last_sent = time.monotonic()
                continue
            if listener.queue.empty():
                await emit(": ping\n\n")
                continue
            # Gather what arrives within BATCH_S of the previous send: one repaint per batch.
            pause = BATCH_S - (time.monotonic() - last_sent)
            if pause > 0:
                await asyncio.sleep(pause)
            items = []
            while not listener.queue.empty():
                items.append(listener.queue.get_nowait())
            data = json.dumps(items, ensure_ascii=False, separators=(",", ":"))
            await emit(f"event: batch\ndata: {data}\n\n")
            last_sent = time.monotonic()
        await send({"type": "http.response.body", "body": b"", "more_body": False})
