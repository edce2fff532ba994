"""Value types shared by the bus backends."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from ecowatt_kernel.errors import EcoWattError

__all__ = [
    "BatchHandler",
    "BusError",
    "BusUnavailableError",
    "Headers",
    "Message",
    "PublishError",
    "Record",
    "TransientError",
]

Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class Message:
    """A message to publish."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers = ()


@dataclass(frozen=True, slots=True)
class Record:
    """A consumed message with its position."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: Headers
    timestamp_ms: int

    def header(self, name: str) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


BatchHandler = Callable[[Sequence[Record]], Awaitable[None]]
"""Handles records of one partition, in offset order; returns once their effect is durable."""


class BusError(EcoWattError):
    """Base of the bus's own errors."""


class PublishError(BusError):
    """The bus did not acknowledge a message; it may or may not have been stored."""


class BusUnavailableError(PublishError):
    """The bus is not started, stopping, or cannot reach its broker."""


class TransientError(EcoWattError):
    """Raised by a handler for a failure worth retrying indefinitely (a dependency is down).

    Connection errors (OSError, ConnectionError, TimeoutError) are treated the same way.
    Any other exception counts as the message's fault: after `max_attempts` it goes to the
    dead-letter topic.
    """
