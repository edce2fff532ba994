"""Encryption at rest of the few secrets the auth service must read back (TOTP secrets):
AES-256-GCM under a key derived from `ECOWATT_AUTH_DATA_KEY`."""

from __future__ import annotations

import base64
import hashlib
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["DataCipher"]


class DataCipher:
    """Seals and opens short secrets; `aad` binds a ciphertext to its row (a secret copied
    into another user's row does not open)."""

    def __init__(self, key_text: str) -> None:
        self._aead = AESGCM(hashlib.sha256(key_text.encode()).digest())

    def seal(self, plaintext: str, *, aad: str) -> str:
        nonce = secrets.token_bytes(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), aad.encode())
        return "v1:" + base64.b64encode(nonce + sealed).decode()

    def open(self, token: str, *, aad: str) -> str:
        """The plaintext, or ValueError when the text was not sealed with this key and aad."""
        if not token.startswith("v1:"):
            raise ValueError("unknown ciphertext format")
        raw = base64.b64decode(token[3:])
        try:
            return self._aead.decrypt(raw[:12], raw[12:], aad.encode()).decode()
        except InvalidTag:
            raise ValueError("ciphertext does not open with this key") from None
