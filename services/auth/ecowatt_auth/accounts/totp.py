"""Time-based one-time passwords (RFC 6238, HMAC-SHA1, 6 digits, 30 s) for the optional
second factor; any authenticator app (Google/Microsoft Authenticator, 腾讯身份验证器) reads
the `otpauth://` URI."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
import time
from urllib.parse import quote, urlencode

__all__ = ["new_secret", "otpauth_uri", "totp", "verify_totp"]

STEP_S = 30
DIGITS = 6


def new_secret() -> str:
    """A fresh 160-bit secret, base32 (what authenticator apps expect)."""
    return base64.b32encode(secrets.token_bytes(20)).decode().rstrip("=")


def _key(secret: str) -> bytes:
    cleaned = secret.strip().replace(" ", "").upper()
    return base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))


def totp(
    secret: str, at: float | None = None, *, step_s: int = STEP_S, digits: int = DIGITS
) -> str:
    """The code for time `at` (now by default)."""
    counter = int((time.time() if at is None else at) // step_s)
    digest = hmac.new(_key(secret), struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**digits).zfill(digits)


def verify_totp(secret: str, code: str, at: float | None = None, *, window: int = 1) -> int | None:
    """The time step `code` belongs to (±`window` steps of clock drift), or None.

    The caller stores the step it accepted and refuses a code of that step or earlier
    again, so an observed code cannot be replayed.
    """
    code = code.strip()
    if not (code.isdigit() and len(code) == DIGITS):
        return None
    now = time.time() if at is None else at
    for delta in range(-window, window + 1):
        moment = now + delta * STEP_S
        if hmac.compare_digest(totp(secret, moment), code):
            return int(moment // STEP_S)
    return None


def otpauth_uri(secret: str, *, account: str, issuer: str) -> str:
    """The URI an authenticator app scans (as a QR code) or accepts pasted."""
    label = quote(f"{issuer}:{account}")
    query = urlencode({"secret": secret, "issuer": issuer, "digits": DIGITS, "period": STEP_S})
    return f"otpauth://totp/{label}?{query}"
