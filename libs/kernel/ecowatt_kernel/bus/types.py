"""Value types shared by the bus backends."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from ecowatt_kernel.bus.partitioner import partition_for_key
from ecowatt_kernel.errors import EcoWattError

__all__ = [
    "BatchHandler",
    "BusError",
    "BusUnavailableError",
    "Headers",
    "Message",
    "Partitions",
    "PublishError",
    "RebalanceHook",
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


@dataclass(frozen=True)
class Partitions:
    """Partitions a group member was given or gave up in a rebalance (`Bus.subscribe`'s
    `on_assigned` / `on_revoked`), with each topic's partition count, so that a service can
    tell which of its keys (device MN, enterprise id) they carry."""

    held: frozenset[tuple[str, int]]
    counts: Mapping[str, int]

    def carries(self, topic: str, key: str | bytes) -> bool:
        """True when the messages of `key` on `topic` are in these partitions (Kafka's
        default partitioner, which the bus publishes with)."""
        count = self.counts.get(topic)
        if not count:
            return False
        raw = key.encode() if isinstance(key, str) else key
        return (topic, partition_for_key(raw, count)) in self.held


RebalanceHook = Callable[[Partitions], Awaitable[None]]
"""Called in a rebalance with the partitions given up (before another member may take them,
no batch of theirs in hand) or just received (before their first batch)."""


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
