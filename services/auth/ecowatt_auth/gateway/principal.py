"""Who is calling the gateway: a browser session, a bearer token, an API key, or nobody.

`Authenticator.authenticate` answers with a `Principal` (the verified identity and the
signed token to forward) or raises `Refusal` (401, 403, 429) — in one Redis round trip for
the lookup and the rate-limit counters together.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from ecowatt_kernel.db import Database
from ecowatt_kernel.identity import (
    Identity,
    InvalidTokenError,
    TokenSigner,
    TokenVerifier,
    identity_from_claims,
)
from ecowatt_kernel.redis_client import Redis

from ecowatt_auth.apikeys.service import KeyRecord, load_record, parse_key
from ecowatt_auth.authz.matrix import Rule
from ecowatt_auth.gateway.limits import (
    add_quota,
    add_rate,
    rate_exceeded,
    retry_after_quota,
)
from ecowatt_auth.sessions.store import (
    PREFIX,
    SessionData,
    SessionStore,
    identity_from_stored,
    session_key,
    token_revoked,
)
from ecowatt_auth.settings import AuthSettings

__all__ = ["Authenticator", "Principal", "Refusal"]

UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_TOUCH_AFTER_S = 30.0


def _check_rate(
    current: Any, previous: Any, limit: int, now: float, identity: Identity | None
) -> None:
    """429 with Retry-After when the past minute's requests exceed `limit`."""
    limited = rate_exceeded(int(current), int(previous or 0), limit, now)
    if limited is not None:
        retry = int(limited.extensions["retry_after"])
        raise Refusal(429, "rate-limited", limited.detail, retry_after=retry, identity=identity)


class Refusal(Exception):
    """The gateway answers itself with this problem."""

    def __init__(
        self,
        status: int,
        type_suffix: str,
        detail: str,
        *,
        retry_after: int | None = None,
        clear_session: bool = False,
        identity: Identity | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.type_suffix = type_suffix
        self.detail = detail
        self.retry_after = retry_after
        self.clear_session = clear_session
        self.identity = identity


@dataclass
class Principal:
    kind: Literal["anonymous", "session", "bearer", "api_key"]
    identity: Identity | None = None
    token: str | None = None
    """The signed identity token forwarded to the service (None: anonymous)."""
    key: KeyRecord | None = None
    session: SessionData | None = None
    extra_headers: list[tuple[bytes, bytes]] = field(default_factory=list)


@dataclass
class _Minted:
    token: str
    refresh_at: float
    identity: Identity


class Authenticator:
    def __init__(
        self,
        *,
        settings: AuthSettings,
        redis: Redis,
        database: Database,
        sessions: SessionStore,
        signer: TokenSigner,
        verifier: TokenVerifier,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.database = database
        self.sessions = sessions
        self.signer = signer
        self.verifier = verifier
        self._minted: dict[str, _Minted] = {}

    # ------------------------------------------------------------------ helpers

    def mint(self, cache_key: str, identity: Identity, now: float) -> str:
        """A short-lived identity token for a session or key (reused for half its life, and
        only while the identity is the same: a key given other datasets or districts gets a
        new token at once)."""
        cached = self._minted.get(cache_key)
        if cached is not None and cached.refresh_at > now and cached.identity == identity:
            return cached.token
        ttl = self.settings.auth_forward_token_s
        token = self.signer.sign(identity, ttl=timedelta(seconds=ttl))
        if len(self._minted) > 50_000:
            self._minted.clear()
        self._minted[cache_key] = _Minted(token, now + ttl / 2, identity)
        return token

    def forget(self, cache_key: str) -> None:
        self._minted.pop(cache_key, None)

    # ------------------------------------------------------------ authenticate

    async def authenticate(
        self,
        *,
        method: str,
        headers: dict[bytes, bytes],
        cookies: dict[str, str],
        rule: Rule | None,
        client_ip: str,
    ) -> Principal:
        now = time.time()
        if rule is not None and rule.public:
            return await self._anonymous(client_ip, now)
        api_key = headers.get(b"x-api-key")
        authorization = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, credential = authorization.partition(" ")
        if api_key is None and scheme.lower() == "apikey":
            api_key = credential.strip().encode()
        if api_key is not None:
            return await self._api_key(api_key.decode("latin-1"), method, rule, now)
        if authorization:
            if scheme.lower() != "bearer" or not credential.strip():
                raise Refusal(
                    401,
                    "unauthorized",
                    "the Authorization header must be `Bearer <token>` (or use `X-API-Key`)",
                )
            return await self._bearer(credential.strip(), now)
        session_id = cookies.get(self.settings.session_cookie)
        if session_id:
            return await self._session(session_id, method, headers, now)
        raise Refusal(
            401,
            "unauthorized",
            "请先登录 (authentication required: log in, send `Authorization: Bearer <token>`, "
            "or an API key in `X-API-Key`)",
        )

    async def _anonymous(self, client_ip: str, now: float) -> Principal:
        async with self.redis.pipeline(transaction=False) as pipe:
            add_rate(pipe, f"ip:{client_ip}", now)
            current, _, previous = await pipe.execute()
        _check_rate(current, previous, self.settings.auth_rate_anonymous_per_minute, now, None)
        return Principal(kind="anonymous")

    async def _bearer(self, token: str, now: float) -> Principal:
        try:
            claims = self.verifier.claims(token)
            identity = identity_from_claims(claims)
        except InvalidTokenError as exc:
            raise Refusal(401, "unauthorized", f"invalid token: {exc.reason}") from None
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.exists(PREFIX + "deny:" + (identity.token_id or "-"))
            pipe.get(PREFIX + "nb:" + identity.subject)
            add_rate(pipe, f"user:{identity.subject}", now)
            denied, not_before, current, _, previous = await pipe.execute()
        reason = token_revoked(claims, bool(denied), int(not_before) if not_before else None)
        if reason is not None:
            raise Refusal(401, "unauthorized", f"invalid token: {reason}")
        _check_rate(current, previous, self.settings.auth_rate_user_per_minute, now, identity)
        return Principal(kind="bearer", identity=identity, token=token)

    async def _session(
        self, session_id: str, method: str, headers: dict[bytes, bytes], now: float
    ) -> Principal:
        key = session_key(session_id)
        raw = await self.redis.hgetall(PREFIX + "session:" + key)
        data = SessionData.from_hash(key, raw) if raw else None
        if data is None or not self.sessions.valid(data, now):
            self.forget(key)
            raise Refusal(
                401,
                "session-expired",
                "会话已过期，请重新登录 (the session ended: log in again)",
                clear_session=True,
            )
        identity = identity_from_stored(data.identity)
        async with self.redis.pipeline(transaction=False) as pipe:
            add_rate(pipe, f"user:{data.user_id}", now)
            current, _, previous = await pipe.execute()
        _check_rate(current, previous, self.settings.auth_rate_user_per_minute, now, identity)
        if method in UNSAFE:
            sent = headers.get(b"x-csrf-token", b"").decode("latin-1")
            if not sent or not hmac.compare_digest(sent, data.csrf):
                raise Refusal(
                    403,
                    "csrf",
                    "缺少或错误的 CSRF 令牌 (send the session's csrf_token in `X-CSRF-Token`)",
                    identity=identity,
                )
        background = headers.get(b"x-ecowatt-activity", b"") == b"background"
        if not background and now - data.last_seen > _TOUCH_AFTER_S:
            await self.sessions.touch(data, now)
        token = self.mint(f"session:{key}", identity, now)
        return Principal(kind="session", identity=identity, token=token, session=data)

    async def _api_key(self, text: str, method: str, rule: Rule | None, now: float) -> Principal:
        parsed = parse_key(text)
        if parsed is None:
            raise Refusal(401, "unauthorized", "invalid API key (expected `ewk_<id>_<secret>`)")
        key_id, secret = parsed
        zone = self.settings.timezone
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(f"auth:apikey:{key_id}")
            add_rate(pipe, f"key:{key_id}", now)
            add_quota(pipe, key_id, zone, now)
            cached, current, _, previous, used, _ = await pipe.execute()
        if cached == b"-":
            record = None
        elif cached:
            record = KeyRecord.from_json(cached)
        else:
            record = await load_record(self.redis, self.database, key_id)
        if record is None or not record.matches(secret):
            raise Refusal(401, "unauthorized", "invalid API key")
        unusable = record.usable(now)
        if unusable is not None:
            raise Refusal(401, "unauthorized", unusable)
        identity = record.identity()
        if rule is None or not rule.allows_key(record.datasets):
            raise Refusal(
                403,
                "forbidden",
                "this API key may not call this endpoint: keys read (GET) the endpoints of "
                "their datasets (GET /api/auth/datasets)",
                identity=identity,
            )
        _check_rate(current, previous, record.rate_per_minute, now, identity)
        if int(used) > record.quota_per_day:
            raise Refusal(
                429,
                "quota-exceeded",
                f"今日调用次数已用完 (the key's daily quota of {record.quota_per_day} "
                "requests is used up)",
                retry_after=retry_after_quota(zone, now),
                identity=identity,
            )
        token = self.mint(f"key:{key_id}", identity, now)
        return Principal(kind="api_key", identity=identity, token=token, key=record)
