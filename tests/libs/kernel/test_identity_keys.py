"""Identity tokens name their key (`kid`) and live no longer than the maximum; verifiers
follow the auth service's JWKS, so a rotated key is trusted without a restart and a retired
one stops being trusted."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from ecowatt_kernel.identity import (
    Identity,
    InvalidTokenError,
    KeySet,
    TokenSigner,
    TokenVerifier,
    dev_key_pair,
    verifier_from_settings,
)
from ecowatt_kernel.jwks import JwksClient, JwksError, key_id, load_public_keys
from ecowatt_kernel.settings import KernelSettings

WHO = Identity(subject="u-1", name="测试")


def signer(key: Ed25519PrivateKey | None = None, **kwargs: Any) -> TokenSigner:
    return TokenSigner(
        key or Ed25519PrivateKey.generate(), issuer="ecowatt-auth", audience="ecowatt", **kwargs
    )


def verifier(*signers: TokenSigner, **kwargs: Any) -> TokenVerifier:
    return TokenVerifier(
        KeySet([s.public_key for s in signers]), issuer="ecowatt-auth", audience="ecowatt", **kwargs
    )


def test_tokens_name_their_key_by_its_rfc_7638_thumbprint() -> None:
    one = signer()
    header = jwt.get_unverified_header(one.sign(WHO))
    assert header["kid"] == one.kid == key_id(one.public_key)
    # RFC 8037 appendix A.3: the thumbprint of its example Ed25519 key
    example = serialization.load_pem_public_key(
        b"-----BEGIN PUBLIC KEY-----\n"
        b"MCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n"
        b"-----END PUBLIC KEY-----\n"
    )
    assert key_id(example) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"  # type: ignore[arg-type]


def test_the_verifier_picks_the_key_the_token_names() -> None:
    old, new = signer(), signer()
    both = verifier(old, new)
    assert both.verify(old.sign(WHO)).subject == "u-1"
    assert both.verify(new.sign(WHO)).subject == "u-1"
    with pytest.raises(InvalidTokenError, match="unknown key"):
        verifier(old).verify(new.sign(WHO))


def test_a_token_without_kid_is_refused() -> None:
    private, _ = dev_key_pair()
    now = int(datetime.now(UTC).timestamp())
    bare = jwt.encode(
        {"sub": "x", "iss": "ecowatt-auth", "aud": "ecowatt", "iat": now, "exp": now + 60},
        private,
        algorithm="EdDSA",
    )
    with pytest.raises(InvalidTokenError, match="kid"):
        verifier(signer(private)).verify(bare)


def test_no_token_lives_longer_than_the_maximum() -> None:
    short = signer(max_ttl=timedelta(hours=1))
    with pytest.raises(ValueError, match="lifetime"):
        short.sign(WHO, ttl=timedelta(hours=2))
    lax = signer(max_ttl=timedelta(days=30))  # a signer configured otherwise …
    long_lived = lax.sign(WHO, ttl=timedelta(days=7))
    with pytest.raises(InvalidTokenError, match="lifetime exceeds"):
        verifier(lax, max_lifetime=timedelta(hours=12)).verify(long_lived)  # … is not believed
    assert verifier(lax, max_lifetime=timedelta(days=8)).verify(long_lived).subject == "u-1"


def test_settings_bound_the_lifetime_and_accept_a_bundle_of_keys() -> None:
    settings = KernelSettings(identity_max_token_lifetime_s=600)
    assert verifier_from_settings(settings).max_lifetime == timedelta(minutes=10)
    a, b = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    bundle = b"".join(
        k.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        for k in (a, b)
    ).decode()
    assert len(load_public_keys(bundle)) == 2
    configured = verifier_from_settings(KernelSettings(identity_public_key=bundle))  # type: ignore[arg-type]
    assert configured.verify(signer(a).sign(WHO)).subject == "u-1"
    assert configured.verify(signer(b).sign(WHO)).subject == "u-1"


def test_production_needs_a_key_or_a_jwks_url() -> None:
    with pytest.raises(ValueError, match="IDENTITY_PUBLIC_KEY"):
        KernelSettings(environment="production")
    settings = KernelSettings(
        environment="production", identity_jwks_url="http://auth:8001/jwks.json"
    )
    assert len(verifier_from_settings(settings).keys) == 0  # no development key in production


class _Jwks(BaseHTTPRequestHandler):
    document: ClassVar[dict[str, Any]] = {"keys": []}
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        _Jwks.hits.append(self.path)
        body = json.dumps(_Jwks.document).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def jwks_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Jwks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Jwks.hits.clear()
    try:
        yield f"http://127.0.0.1:{server.server_port}/jwks.json"
    finally:
        server.shutdown()


async def test_a_rotated_key_is_trusted_without_restart(jwks_server: str) -> None:
    old, new = signer(), signer()
    _Jwks.document = KeySet([old.public_key]).to_jwks()
    keys = KeySet()
    client = JwksClient(jwks_server, keys, max_age_s=3600, min_interval_s=0)
    checker = TokenVerifier(keys, issuer="ecowatt-auth", audience="ecowatt", jwks=client)
    assert (await checker.verify_async(old.sign(WHO))).subject == "u-1"
    # the auth service starts signing with a new key and publishes both
    _Jwks.document = KeySet([old.public_key, new.public_key]).to_jwks()
    assert (await checker.verify_async(new.sign(WHO))).subject == "u-1"
    assert len(_Jwks.hits) == 2  # one fetch at start, one for the unknown kid
    # the old key is retired: after the next refresh its tokens are refused
    _Jwks.document = KeySet([new.public_key]).to_jwks()
    assert await client.refresh()
    with pytest.raises(InvalidTokenError, match="unknown key"):
        await checker.verify_async(old.sign(WHO))


async def test_unknown_kids_cannot_flood_the_key_server(jwks_server: str) -> None:
    _Jwks.document = KeySet([signer().public_key]).to_jwks()
    keys = KeySet()
    client = JwksClient(jwks_server, keys, max_age_s=3600, min_interval_s=30)
    checker = TokenVerifier(keys, issuer="ecowatt-auth", audience="ecowatt", jwks=client)
    for _ in range(20):
        with pytest.raises(InvalidTokenError):
            await checker.verify_async(signer().sign(WHO))
    assert len(_Jwks.hits) == 1


def test_a_jwks_whose_kid_lies_is_refused() -> None:
    one, two = signer(), signer()
    document = KeySet([one.public_key]).to_jwks()
    document["keys"][0]["kid"] = two.kid
    with pytest.raises(JwksError, match="thumbprint"):
        KeySet.keys_from_jwks(document)
