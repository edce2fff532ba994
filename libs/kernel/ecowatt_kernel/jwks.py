"""Identity keys: Ed25519 public keys by key id (`kid`), as a JSON Web Key Set (RFC 7517).

The auth service signs identity tokens with one private key and names it in the token
header (`kid`, the RFC 7638 thumbprint of its public key). Every verifier holds a `KeySet`:
the public keys it trusts, by kid. A `KeySet` is filled from PEM (`ECOWATT_IDENTITY_PUBLIC_KEY`,
one or more keys) and/or fetched from the auth service's JWKS URL (`ECOWATT_IDENTITY_JWKS_URL`)
by a `JwksClient`, which refreshes it periodically and when a token names a kid it does not
know — so a rotated signing key is picked up without restarting a service.

    KeySet (public keys by kid)
    JwksClient.refresh() ──httpx──▶ GET <jwks url> ──▶ KeySet.replace()
    JwksError                       the document could not be fetched or read
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ecowatt_kernel.errors import EcoWattError

__all__ = ["JwksClient", "JwksError", "KeySet", "key_id", "load_public_keys"]

_logger = logging.getLogger(__name__)
_PEM_END = "-----END PUBLIC KEY-----"


class JwksError(EcoWattError):
    """The key set could not be fetched or parsed."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public_key: Ed25519PublicKey) -> str:
    """The RFC 7638 JWK thumbprint of an Ed25519 public key (base64url SHA-256)."""
    canonical = json.dumps(
        {"crv": "Ed25519", "kty": "OKP", "x": _b64url(_raw(public_key))},
        separators=(",", ":"),
        sort_keys=True,
    )
    return _b64url(hashlib.sha256(canonical.encode()).digest())


def load_public_keys(pem: str) -> list[Ed25519PublicKey]:
    """Every Ed25519 public key of a PEM bundle (keys one after another)."""
    keys: list[Ed25519PublicKey] = []
    for block in pem.split(_PEM_END):
        if not block.strip():
            continue
        loaded = serialization.load_pem_public_key((block.strip() + "\n" + _PEM_END).encode())
        if not isinstance(loaded, Ed25519PublicKey):
            raise ValueError("identity keys must be Ed25519 public keys (PEM)")
        keys.append(loaded)
    if not keys:
        raise ValueError("no public key found in the PEM text")
    return keys


class KeySet:
    """The public keys a verifier trusts, by kid; replaced as a whole on rotation."""

    def __init__(self, keys: Iterable[Ed25519PublicKey] = ()) -> None:
        self._keys: dict[str, Ed25519PublicKey] = {key_id(k): k for k in keys}

    def __contains__(self, kid: object) -> bool:
        return kid in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, kid: str) -> Ed25519PublicKey | None:
        return self._keys.get(kid)

    def kids(self) -> list[str]:
        return sorted(self._keys)

    def add(self, public_key: Ed25519PublicKey) -> str:
        """Trust one more key; returns its kid."""
        kid = key_id(public_key)
        self._keys = {**self._keys, kid: public_key}
        return kid

    def replace(self, keys: Iterable[Ed25519PublicKey]) -> None:
        """Trust exactly `keys` from now on (one assignment: readers never see a half set)."""
        self._keys = {key_id(k): k for k in keys}

    def to_jwks(self) -> dict[str, Any]:
        """The set as a JWKS document."""
        return {
            "keys": [
                {
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": _b64url(_raw(key)),
                    "kid": kid,
                    "use": "sig",
                    "alg": "EdDSA",
                }
                for kid, key in sorted(self._keys.items())
            ]
        }

    @staticmethod
    def keys_from_jwks(document: Mapping[str, Any]) -> list[Ed25519PublicKey]:
        """The Ed25519 signing keys of a JWKS document (others are ignored); JwksError if
        the document is malformed or a key's kid is not its thumbprint."""
        entries = document.get("keys")
        if not isinstance(entries, list):
            raise JwksError("the JWKS document has no `keys` list")
        keys: list[Ed25519PublicKey] = []
        for entry in entries:
            if not isinstance(entry, dict) or entry.get("kty") != "OKP":
                continue
            if entry.get("crv") != "Ed25519" or entry.get("use", "sig") != "sig":
                continue
            try:
                key = Ed25519PublicKey.from_public_bytes(_unb64url(str(entry["x"])))
            except (KeyError, ValueError) as exc:
                raise JwksError(f"a JWKS key is invalid: {exc}") from None
            if "kid" in entry and entry["kid"] != key_id(key):
                raise JwksError(f"JWKS key id {entry['kid']!r} is not the key's thumbprint")
            keys.append(key)
        return keys


class JwksClient:
    """Keeps a `KeySet` equal to static keys plus the keys published at `url`.

    `refresh()` fetches at most once per `min_interval_s` (a flood of tokens with an unknown
    kid cannot turn into a flood of requests); `maybe_refresh()` fetches when the last
    successful fetch is older than `max_age_s`. A failed fetch keeps the keys it had.
    """

    def __init__(
        self,
        url: str,
        keys: KeySet,
        *,
        static: Iterable[Ed25519PublicKey] = (),
        max_age_s: float = 300.0,
        min_interval_s: float = 10.0,
        timeout_s: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url
        self.keys = keys
        self.static = list(static)
        self.max_age_s = max_age_s
        self.min_interval_s = min_interval_s
        self.timeout_s = timeout_s
        self.transport = transport
        self.fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()

    async def fetch(self) -> list[Ed25519PublicKey]:
        """The keys published at the URL now (JwksError when unreachable or invalid)."""
        try:
            async with httpx.AsyncClient(
                timeout=self.timeout_s, transport=self.transport
            ) as client:
                response = await client.get(self.url, headers={"Accept": "application/json"})
                response.raise_for_status()
                document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise JwksError(f"JWKS at {self.url} could not be fetched: {exc}") from None
        if not isinstance(document, dict):
            raise JwksError("the JWKS document is not a JSON object")
        return KeySet.keys_from_jwks(document)

    async def refresh(self) -> bool:
        """Fetch the published keys (rate-limited); True when the set was replaced."""
        async with self._lock:
            now = time.monotonic()
            if self._attempted_at is not None and now - self._attempted_at < self.min_interval_s:
                return False
            self._attempted_at = now
            try:
                published = await self.fetch()
            except JwksError as exc:
                _logger.warning("%s; keeping %d known keys", exc, len(self.keys))
                return False
            self.keys.replace([*self.static, *published])
            self.fetched_at = time.monotonic()
            return True

    async def maybe_refresh(self) -> None:
        """Refresh when the keys are older than `max_age_s` (or were never fetched)."""
        if self.fetched_at is None or time.monotonic() - self.fetched_at > self.max_age_s:
            await self.refresh()
