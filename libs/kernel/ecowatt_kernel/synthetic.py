"""Values shared by the synthetic city's producer (the registry) and its users (the simulator).

The registry stores only the hash of a device password and the bus carries only that hash,
so the device simulator cannot learn a synthetic device's password from the archive. Both
derive it instead from the city's seed and the device MN: HMAC-SHA256 keyed with
`ecowatt-synthetic-city:<seed>` over the MN (UTF-8), first 8 bytes as a big-endian unsigned
integer, modulo 10**6, as 6 zero-padded digits (HJ 212 `PW` is 6 characters).
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["device_password"]


def device_password(seed: int, mn: str) -> str:
    """The 6-digit HJ 212 password of the synthetic device `mn` in the city of `seed`."""
    key = f"ecowatt-synthetic-city:{seed}".encode()
    digest = hmac.new(key, mn.encode(), hashlib.sha256).digest()
    return f"{int.from_bytes(digest[:8], 'big') % 1_000_000:06d}"
