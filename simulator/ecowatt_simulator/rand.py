"""Deterministic, random-access pseudo-randomness.

Load curves and fault windows are pure functions of (seed, entity, time): the value at any
instant can be computed without replaying the past, so a device can answer a history request,
a total line can sum facilities measured by other processes, and two runs with one seed send
the same data however their tasks interleave.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TypeVar

__all__ = ["Stream", "key_of", "mix", "uniform", "unit"]

T = TypeVar("T")
_M64 = (1 << 64) - 1
_INV64 = 1.0 / float(1 << 64)


def mix(x: int) -> int:
    """SplitMix64 finaliser: a well-spread 64-bit hash of a 64-bit integer."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def key_of(*parts: object) -> int:
    """A 64-bit key for a tuple of names and numbers (stable across processes)."""
    text = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


def unit(key: int, n: int) -> float:
    """A number in [0, 1) for (`key`, `n`)."""
    return mix(key ^ mix(n & _M64)) * _INV64


def uniform(key: int, n: int, low: float, high: float) -> float:
    """A number in [low, high) for (`key`, `n`)."""
    return low + (high - low) * unit(key, n)


class Stream:
    """A small sequential generator (a device's jitter and junk): one int of state."""

    __slots__ = ("_key", "_n")

    def __init__(self, key: int) -> None:
        self._key = key
        self._n = 0

    def random(self) -> float:
        self._n += 1
        return unit(self._key, self._n)

    def randint(self, low: int, high: int) -> int:
        """An integer in [low, high]."""
        return low + int(self.random() * (high - low + 1))

    def choice(self, items: Sequence[T]) -> T:
        return items[int(self.random() * len(items))]
