"""One TCP connection (`asyncio.Protocol`) and one device session, both with `__slots__`.

An idle connection holds only this object, its transport and no framer: the framer is made
when bytes arrive and dropped again once it holds nothing, so thousands of quiet loggers
cost little memory. Reading is paused for several independent causes (bus backpressure,
frame rate, unacknowledged frames, a peer that does not read our answers, a PW being
verified); it resumes when no cause is left.

A connection has no session until one of its frames passed the identity check (MN known,
PW right): frames that wait for that check wait on the connection (`waiting`), and a
connection that never passes it never binds, never replaces anyone's session, never gets a
command.

A connection knows the server only through `ConnectionHost`, the four calls the asyncio hooks
make; the server's dispatcher implements it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

import ecowatt_hj212 as hj212

from ecowatt_ingest.command_model import ActiveCommand, PlannedCommand
from ecowatt_ingest.settings import IngestSettings

__all__ = [
    "AUTH",
    "BACKPRESSURE",
    "HOLD",
    "RATE",
    "UNACKED",
    "WRITE",
    "ConnectionHost",
    "DeviceConnection",
    "Session",
]

BACKPRESSURE = 1
RATE = 2
UNACKED = 4
WRITE = 8
AUTH = 16
HOLD = BACKPRESSURE | RATE | UNACKED | AUTH
"""Causes that also stop the processing of frames already read (kept in `backlog`)."""


class ConnectionHost(Protocol):
    """What a connection needs from the server: its settings and four notifications."""

    settings: IngestSettings
    holding: set[DeviceConnection]
    """Connections whose framer holds bytes (swept for idle flushes and partial frames)."""
    now: Callable[[], float]
    """The wall clock (POSIX seconds) for receive times."""

    def on_connection_made(self, conn: DeviceConnection) -> None: ...

    def on_connection_lost(self, conn: DeviceConnection, exc: Exception | None) -> None: ...

    def received_bytes(self, conn: DeviceConnection, size: int) -> None: ...

    def on_events(
        self,
        conn: DeviceConnection,
        events: list[hj212.FramerEvent],
        now: float,
        *,
        hold: bool = True,
    ) -> None: ...


class Session:
    """A connection bound to a device MN, once a frame of it passed the identity check."""

    __slots__ = (
        "accepted",
        "active",
        "backfill_checked",
        "bytes",
        "clock_best",
        "clock_previous",
        "clock_window_at",
        "conn",
        "connected_at",
        "dirty",
        "duplicates",
        "flushed",
        "frames",
        "identity",
        "last_clock_fix",
        "last_seen",
        "live_from",
        "mn",
        "peer",
        "previous_seen",
        "pw",
        "queue",
        "registered",
        "rejected",
        "rejects",
        "session_id",
        "st",
        "stored",
        "version",
    )

    def __init__(
        self, mn: str, conn: DeviceConnection, session_id: str, now: float, identity: str
    ) -> None:
        self.mn = mn
        self.conn: DeviceConnection | None = conn
        self.session_id = session_id
        self.peer = conn.peer
        self.connected_at = now
        self.last_seen = now
        self.identity = identity
        """How the device was verified: `ok` (PW), `pw_not_provisioned` (lenient, MN only)."""
        self.registered: bool | None = True
        self.pw: str | None = None
        self.st: str | None = None
        self.version: hj212.ProtocolVersion | None = None
        self.frames = 0
        self.accepted = 0
        self.rejected = 0
        self.duplicates = 0
        self.bytes = 0
        # counters already written to Redis: (frames, accepted, rejected, duplicates, bytes)
        self.flushed: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)
        self.rejects: list[str] | None = None
        self.dirty = True
        self.stored = False
        """The binding is in Redis (later writes are conditional on it)."""
        # clock judgement (see timekeeping): the current window's newest QN and its receive
        # time, the previous window's offset, when the current window began
        self.clock_best: tuple[str, float] | None = None
        self.clock_previous: float | None = None
        self.clock_window_at = now
        self.last_clock_fix = -math.inf
        self.live_from: datetime | None = None
        """Data (local time) before this are from before the connection: history."""
        self.previous_seen: float | None = None
        self.backfill_checked = False
        self.queue: deque[PlannedCommand] | None = None  # made when a command comes
        self.active: ActiveCommand | None = None


class DeviceConnection(asyncio.Protocol):
    """See the module docstring."""

    __slots__ = (
        "address",
        "backlog",
        "closed",
        "conn_id",
        "framer",
        "garbage",
        "host",
        "last_rx",
        "partial_since",
        "paused",
        "peer",
        "reason",
        "rx_perf",
        "rx_wall",
        "session",
        "tokens",
        "tokens_at",
        "transport",
        "unacked",
        "valid_seen",
        "waiting",
    )

    def __init__(self, host: ConnectionHost) -> None:
        self.host = host
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.address = "?"
        """The peer's IP address (what PW failures are counted against)."""
        self.framer: hj212.StreamFramer | None = None
        self.session: Session | None = None
        self.last_rx = time.monotonic()
        self.partial_since = 0.0
        self.rx_perf = 0.0
        self.rx_wall = 0.0
        self.tokens = float(host.settings.frame_burst)
        self.tokens_at = self.last_rx
        self.unacked = 0
        self.paused = 0
        self.garbage = 0
        self.valid_seen = False
        self.closed = False
        self.conn_id = 0
        self.backlog: list[hj212.FramerEvent] | None = None
        self.reason: str | None = None
        """Why the server closed the connection (None: the peer did, or an error)."""
        self.waiting: list[tuple[hj212.Frame, float, float]] | None = None
        """Frames (with receive wall and perf times) waiting for a PW check, in order."""

    # ------------------------------------------------------------------ asyncio hooks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        peer: Any = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.address = str(peer[0])
            self.peer = f"{peer[0]}:{peer[1]}"
        self.host.on_connection_made(self)

    def data_received(self, data: bytes) -> None:
        host = self.host
        self.last_rx = now = time.monotonic()
        self.rx_perf = time.perf_counter()
        self.rx_wall = host.now()
        framer = self.framer
        if framer is None:
            framer = self.framer = hj212.StreamFramer(
                max_segment_size=host.settings.max_segment_size
            )
        host.received_bytes(self, len(data))
        events = framer.feed(data)
        if self.backlog:  # not expected: reading is paused while a backlog waits
            self.backlog.extend(events)
        elif events:
            host.on_events(self, events, now)
        if self.closed:
            return
        if framer.buffered:
            if not self.partial_since:
                self.partial_since = now
            host.holding.add(self)
        else:
            self.partial_since = 0.0
            self.framer = None
            host.holding.discard(self)

    def eof_received(self) -> bool | None:
        self.flush_framer()
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self.backlog:  # frames read but held back: record them all now
            backlog, self.backlog = self.backlog, None
            self.host.on_events(self, backlog, time.monotonic(), hold=False)
        if not self.closed:
            self.flush_framer()
        self.closed = True
        self.host.on_connection_lost(self, exc)

    def pause_writing(self) -> None:
        self.pause(WRITE)

    def resume_writing(self) -> None:
        self.resume(WRITE)

    # ------------------------------------------------------------------ helpers
    def flush_framer(self) -> None:
        """Release a held frame or reject an incomplete one (idle link or closing)."""
        framer = self.framer
        if framer is None:
            return
        events = framer.flush()
        self.framer = None
        self.partial_since = 0.0
        self.host.holding.discard(self)
        if self.backlog is not None:
            self.backlog.extend(events)
        elif events:
            self.host.on_events(self, events, time.monotonic())

    def pause(self, cause: int) -> None:
        if self.paused & cause:
            return
        was = self.paused
        self.paused |= cause
        if not was and self.transport is not None and not self.closed:
            with contextlib.suppress(RuntimeError, AttributeError):
                self.transport.pause_reading()

    def resume(self, cause: int) -> None:
        if not self.paused & cause:
            return
        self.paused &= ~cause
        if self.backlog and not self.paused & HOLD and not self.closed:
            backlog, self.backlog = self.backlog, None
            self.host.on_events(self, backlog, time.monotonic())
        if not self.paused and not self.backlog and self.transport is not None and not self.closed:
            with contextlib.suppress(RuntimeError, AttributeError):
                self.transport.resume_reading()

    def write(self, data: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
