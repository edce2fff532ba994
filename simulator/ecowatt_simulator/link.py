"""A device's TCP connection and its send queue items (the transport under `device.py`)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
from collections import deque
from dataclasses import dataclass
from typing import Protocol, cast

import ecowatt_hj212 as hj212

__all__ = ["Flag", "Link", "LinkOwner", "Outgoing"]


class Flag:
    """A lighter `asyncio.Event` (a device holds three; idle fleets hold 20,000 devices)."""

    __slots__ = ("_set", "_waiter")

    def __init__(self, value: bool) -> None:
        self._set = value
        self._waiter: asyncio.Future[None] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        if self._waiter is not None:
            if not self._waiter.done():
                self._waiter.set_result(None)
            self._waiter = None

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> None:
        if self._set:
            return
        if self._waiter is None:
            self._waiter = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._waiter)


@dataclass(slots=True)
class Outgoing:
    """A frame to send; uploads that ask for an answer wait in `unacked` until answered."""

    data: bytes
    cn: str
    kind: str
    qn: str | None
    needs_ack: bool
    data_time: str | None = None
    attempts: int = 0
    link_attempts: int = 0
    sent_at: float = 0.0
    done: asyncio.Future[None] | None = None


class LinkOwner(Protocol):
    """What a connection calls on its device (`device.SimDevice`)."""

    def on_frame(self, raw: bytes, link: Link) -> None:
        """A whole frame arrived from the platform."""

    def pump(self) -> None:
        """The connection can take more bytes."""


class Link(asyncio.Protocol):
    """One TCP connection of a device."""

    def __init__(self, device: LinkOwner) -> None:
        self.device = device
        self.framer = hj212.StreamFramer(max_segment_size=8192)
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.paused = False
        self.acked_any = False
        self.backlog: deque[list[bytes]] = deque()
        self.writer_task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        for event in self.framer.feed(data):
            if isinstance(event, hj212.RawFrame):
                self.device.on_frame(event.data, self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.writer_task is not None:
            self.writer_task.cancel()
        if not self.lost.done():
            self.lost.set_result(None)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.device.pump()

    def write(self, data: bytes, pieces: int = 1) -> None:
        """Write `data`, in `pieces` TCP writes 1 ms apart when asked (split_packets)."""
        if self.transport is None:
            return
        if pieces <= 1 and self.writer_task is None:
            self.transport.write(data)
            return
        size = max(1, math.ceil(len(data) / max(1, pieces)))
        self.backlog.append([data[i : i + size] for i in range(0, len(data), size)])
        if self.writer_task is None:
            self.writer_task = asyncio.get_running_loop().create_task(self._writer())

    async def _writer(self) -> None:
        try:
            while self.backlog:
                pieces = self.backlog.popleft()
                for n, piece in enumerate(pieces):
                    if self.transport is None:
                        return
                    if n:
                        await asyncio.sleep(0.001)
                    self.transport.write(piece)
        finally:
            self.writer_task = None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
