"""A minimal HJ 212 platform for the simulator's tests.

It cuts the stream with the codec's framer, decodes and verifies every frame with the codec
(default profile, standard CRC policy: MODBUS CRCs are reported, not accepted), records what
it received per connection, answers uploads with 9014 and 1013 with 9013 (policy hooks let a
test withhold answers), and can send commands to a connected device.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import ecowatt_hj212 as hj212
import pytest
from ecowatt_hj212 import commands


@dataclass
class Received:
    raw: bytes
    frame: hj212.Frame | None
    conn: int
    at: float


@dataclass
class Conn:
    id: int
    writer: asyncio.StreamWriter
    mn: str | None = None
    opened_at: float = field(default_factory=time.monotonic)
    closed_at: float | None = None


class MiniPlatform:
    """Accepts frames, verifies them with the codec, answers 9014, can send commands."""

    def __init__(self) -> None:
        self.frames: list[Received] = []
        self.rejected: list[tuple[int, hj212.RejectedSpan]] = []
        self.partial_reads: dict[int, int] = {}
        """Reads that ended inside a frame, by connection."""
        self.conns: list[Conn] = []
        self.server: asyncio.Server | None = None
        self.port = 0
        self.acks_sent = 0
        self.should_ack: Callable[[hj212.Frame], bool] = lambda frame: True
        self.on_frame: Callable[[hj212.Frame, Conn], None] | None = None
        self._changed = asyncio.Event()

    async def start(self, port: int = 0) -> MiniPlatform:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop_listening(self) -> None:
        """Close the listening socket and every connection (devices must reconnect)."""
        if self.server is not None:
            self.server.close()
            for conn in self.conns:
                conn.writer.close()
            with contextlib.suppress(Exception):
                await self.server.wait_closed()
            self.server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Conn(len(self.conns), writer)
        self.conns.append(conn)
        framer = hj212.StreamFramer(max_segment_size=8192)
        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                for event in framer.feed(chunk):
                    if isinstance(event, hj212.RejectedSpan):
                        self.rejected.append((conn.id, event))
                        continue
                    self._handle(event.data, conn)
                if framer.buffered:
                    self.partial_reads[conn.id] = self.partial_reads.get(conn.id, 0) + 1
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            conn.closed_at = time.monotonic()
            writer.close()
            self._changed.set()

    def _handle(self, raw: bytes, conn: Conn) -> None:
        try:
            frame: hj212.Frame | None = hj212.decode(raw)
        except hj212.DecodeError:
            frame = None
        self.frames.append(Received(raw, frame, conn.id, time.monotonic()))
        self._changed.set()
        if frame is None:
            return
        if conn.mn is None and frame.mn:
            conn.mn = frame.mn
        if self.on_frame is not None:
            self.on_frame(frame, conn)
        if frame.cn == "1013":
            conn.writer.write(hj212.encode(commands.notification_answer(frame)))
            return
        upload = frame.ack_requested and frame.cn not in ("9011", "9012", "9013", "9014")
        if upload and self.should_ack(frame):
            self.acks_sent += 1
            conn.writer.write(hj212.encode(commands.data_answer(frame)))

    # ---------------------------------------------------------------------------- helpers

    def decoded(self, mn: str | None = None, cn: str | None = None) -> list[hj212.Frame]:
        return [
            r.frame
            for r in self.frames
            if r.frame is not None
            and (mn is None or r.frame.mn == mn)
            and (cn is None or r.frame.cn == cn)
        ]

    def records(self, mn: str, cn: str) -> dict[str, dict[str, dict[str, str]]]:
        """Values by DataTime, code, suffix, merging split parts and re-sends of `cn`."""
        out: dict[str, dict[str, dict[str, str]]] = {}
        for frame in self.decoded(mn, cn):
            data_time = frame.params.get("DataTime")
            if data_time is None:
                continue
            merged = out.setdefault(data_time, {})
            for code, items in frame.codes.items():
                merged.setdefault(code, {}).update(items)
        return dict(sorted(out.items()))

    def conn_of(self, mn: str) -> Conn:
        for conn in reversed(self.conns):
            if conn.mn == mn and conn.closed_at is None:
                return conn
        raise LookupError(f"{mn} is not connected")

    async def send(self, mn: str, message: hj212.Message) -> None:
        conn = self.conn_of(mn)
        conn.writer.write(hj212.encode(message))
        await conn.writer.drain()

    async def wait_until(self, predicate: Callable[[], bool], limit_s: float = 20.0) -> None:
        deadline = time.monotonic() + limit_s
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError("condition not reached")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), 0.05)


@pytest.fixture(scope="session")
def mini_platform() -> type[MiniPlatform]:
    """The class, for module-scoped fixtures that start their own platform."""
    return MiniPlatform


@pytest.fixture
async def platform() -> MiniPlatform:
    server = await MiniPlatform().start()
    yield server  # type: ignore[misc]
    await server.stop_listening()
