"""Identifiers of everything EcoWatt creates: UUIDv7 (RFC 9562), from this one module.

Why version 7 rather than the stdlib's random `uuid4`: its first 48 bits are the creation
time in milliseconds, so ids of findings, alarms, events and archive entities sort by when
they were made, and PostgreSQL's B-tree indexes take new keys at their right edge instead of
on a random page (fewer page splits and less WAL on tables that only grow). The other 74
bits are random (`os.urandom`), so ids stay unguessable and unique across processes without
coordination. Python's stdlib has `uuid.uuid7` only from 3.14; this is the same layout.
Order within one millisecond is not guaranteed (nothing here relies on it).

    new_uuid()       UUID('019af3c2-6b1e-7d0a-9c3f-5a1e2b3c4d5e')   event envelopes, frames
    new_id()         '019af3c26b1e7d0a9c3f5a1e2b3c4d5e'            entity and finding ids
    new_uuid_text()  '019af3c2-6b1e-7d0a-9c3f-5a1e2b3c4d5e'         hot paths building JSON
    new_uuid_texts(n)  n of those at once (one clock read, one `urandom` call): batches
"""

from __future__ import annotations

import os
import time
import uuid

__all__ = ["new_id", "new_uuid", "new_uuid_text", "new_uuid_texts"]

_VERSION_7 = 0x7 << 76
_VARIANT_RFC = 0x2 << 62


def _uuid7_int() -> int:
    millis = time.time_ns() // 1_000_000
    random = int.from_bytes(os.urandom(10), "big")  # 80 bits, 74 of them used
    rand_a = (random >> 62) & 0xFFF
    rand_b = random & ((1 << 62) - 1)
    return (millis & ((1 << 48) - 1)) << 80 | _VERSION_7 | rand_a << 64 | _VARIANT_RFC | rand_b


def new_uuid() -> uuid.UUID:
    """A fresh UUIDv7."""
    return uuid.UUID(int=_uuid7_int())


def new_id() -> str:
    """A fresh UUIDv7 as 32 lowercase hex digits (the form of stored entity ids)."""
    return f"{_uuid7_int():032x}"


def new_uuid_text() -> str:
    """A fresh UUIDv7 in its canonical 8-4-4-4-12 text form, without building a UUID."""
    h = f"{_uuid7_int():032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_VARIANT_DIGITS = "89ab89ab89ab89ab"  # the RFC variant (10xx) with two random bits, by nibble


def new_uuid_texts(count: int) -> list[str]:
    """`count` fresh UUIDv7 texts of one millisecond, for a batch (a hot path makes one
    message id per record: one clock read and one `urandom` call for all of them)."""
    if count <= 0:
        return []
    millis = f"{(time.time_ns() // 1_000_000) & ((1 << 48) - 1):012x}"
    head = f"{millis[:8]}-{millis[8:]}-7"
    random = os.urandom(10 * count).hex()  # 20 hex digits each: 3 + 1 (2 bits) + 3 + 12 used
    variant = _VARIANT_DIGITS
    return [
        f"{head}{r[:3]}-{variant[int(r[3], 16)]}{r[4:7]}-{r[7:19]}"
        for r in (random[i : i + 20] for i in range(0, 20 * count, 20))
    ]
