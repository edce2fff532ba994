"""Facts about the synthetic city that several components must derive alike.

The registry seeds a synthetic Xi'an archive from a seed; the device simulator, which only
sees password hashes on the bus, must send the same HJ 212 passwords. Both use
`device_password`.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["device_password"]


def device_password(seed: int, mn: str) -> str:
    """The 6-digit HJ 212 PW of synthetic device `mn` in the city seeded with `seed`."""
    digest = hmac.new(str(seed).encode(), mn.encode(), hashlib.sha256).digest()
    return f"{int.from_bytes(digest[:8], 'big') % 1_000_000:06d}"
