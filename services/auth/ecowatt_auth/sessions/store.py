"""Browser sessions and token revocation in Redis, backed by PostgreSQL where losing Redis
would re-open a door.

Keys (all under `auth:`):

    session:<sha256(session id)>   hash: user, identity claims, csrf, created, last seen, ip
                                    TTL: the idle timeout, renewed on use, never past the
                                    absolute timeout
    user-sessions:<user id>         set of that user's session keys (to end them all)
    deny:<jti>                      a revoked bearer token, until it would have expired
    nb:<user id>                    "not before": tokens of the user issued earlier are void

The cookie holds the session id; Redis only its hash, so a Redis dump opens no session.
Sessions live only in Redis (losing Redis logs everyone out, which is safe); revocations
and not-before times are also written to PostgreSQL (`auth.revoked_token`, `auth.user`)
and put back into Redis at start-up (`restore`), so a flushed Redis revives no token.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from ecowatt_kernel.identity import DataScope, Identity, Role
from ecowatt_kernel.redis_client import Redis
from sqlalchemy import Column, DateTime, Table, Text, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_auth.accounts.models import user
from ecowatt_auth.database import metadata

__all__ = [
    "SessionData",
    "SessionStore",
    "identity_claims",
    "identity_from_stored",
    "revoked_token",
    "session_key",
]

PREFIX = "auth:"

revoked_token = Table(
    "revoked_token",
    metadata,
    Column("jti", Text, primary_key=True),
    Column("subject", Text, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
    Column("revoked_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("reason", Text),
)


def session_key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def identity_claims(identity: Identity) -> str:
    """The identity as stored in a session (JSON)."""
    return json.dumps(
        {
            "sub": identity.subject,
            "name": identity.name,
            "roles": sorted(identity.roles),
            "scope": {
                "all": identity.scope.all,
                "districts": sorted(identity.scope.districts),
                "enterprises": sorted(identity.scope.enterprises),
            },
        },
        ensure_ascii=False,
    )


def identity_from_stored(text: str, *, kind: str = "user") -> Identity:
    data = json.loads(text)
    scope = data.get("scope") or {}
    return Identity(
        subject=data["sub"],
        kind=kind,  # type: ignore[arg-type]
        name=data.get("name"),
        roles=frozenset(Role(r) for r in data.get("roles", [])),
        scope=DataScope(
            all=bool(scope.get("all")),
            districts=frozenset(scope.get("districts", [])),
            enterprises=frozenset(scope.get("enterprises", [])),
        ),
    )


@dataclass(frozen=True)
class SessionData:
    key: str
    user_id: str
    identity: str
    csrf: str
    created_at: float
    last_seen: float
    ip: str | None

    def expires_at(self, absolute_s: int) -> float:
        return self.created_at + absolute_s

    @classmethod
    def from_hash(cls, key: str, reply: Mapping[bytes | str, bytes | str]) -> SessionData | None:
        # The kernel's client does not decode replies (`create_redis`: values are bytes);
        # redis-py types a hash reply as either, not knowing how the client was built.
        raw = cast("Mapping[bytes, bytes]", reply)
        try:
            return cls(
                key=key,
                user_id=raw[b"user"].decode(),
                identity=raw[b"identity"].decode(),
                csrf=raw[b"csrf"].decode(),
                created_at=float(raw[b"created"]),
                last_seen=float(raw[b"seen"]),
                ip=raw[b"ip"].decode() or None if b"ip" in raw else None,
            )
        except (KeyError, ValueError):
            return None


class SessionStore:
    """Sessions, the denylist and not-before times (see the module docstring)."""

    def __init__(self, redis: Redis, *, idle_s: int, absolute_s: int) -> None:
        self.redis = redis
        self.idle_s = idle_s
        self.absolute_s = absolute_s

    # ------------------------------------------------------------------ sessions

    async def create(self, *, identity: Identity, ip: str | None) -> tuple[str, SessionData]:
        """A new session for `identity`; returns the id (for the cookie) and its data."""
        session_id = secrets.token_urlsafe(32)
        key = session_key(session_id)
        now = time.time()
        data = SessionData(
            key=key,
            user_id=identity.subject,
            identity=identity_claims(identity),
            csrf=secrets.token_urlsafe(32),
            created_at=now,
            last_seen=now,
            ip=ip,
        )
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                PREFIX + "session:" + key,
                mapping={
                    "user": data.user_id,
                    "identity": data.identity,
                    "csrf": data.csrf,
                    "created": repr(now),
                    "seen": repr(now),
                    "ip": ip or "",
                },
            )
            pipe.expire(PREFIX + "session:" + key, min(self.idle_s, self.absolute_s))
            pipe.sadd(PREFIX + "user-sessions:" + data.user_id, key)
            pipe.expire(PREFIX + "user-sessions:" + data.user_id, self.absolute_s)
            await pipe.execute()
        return session_id, data

    def valid(self, data: SessionData, now: float | None = None) -> bool:
        """Within both timeouts (Redis expiry enforces idle; this also checks absolute)."""
        now = time.time() if now is None else now
        return now - data.created_at < self.absolute_s and now - data.last_seen < self.idle_s

    async def get(self, session_id: str) -> SessionData | None:
        """The live session with this id, or None."""
        key = session_key(session_id)
        raw = await self.redis.hgetall(PREFIX + "session:" + key)
        data = SessionData.from_hash(key, raw) if raw else None
        return data if data is not None and self.valid(data) else None

    async def touch(self, data: SessionData, now: float | None = None) -> None:
        """Record use: the idle timeout starts again (capped by the absolute one)."""
        now = time.time() if now is None else now
        remaining = int(data.created_at + self.absolute_s - now)
        if remaining <= 0:
            await self.delete_key(data.key, data.user_id)
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(PREFIX + "session:" + data.key, "seen", repr(now))
            pipe.expire(PREFIX + "session:" + data.key, max(1, min(self.idle_s, remaining)))
            await pipe.execute()

    async def delete_key(self, key: str, user_id: str) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(PREFIX + "session:" + key)
            pipe.srem(PREFIX + "user-sessions:" + user_id, key)
            await pipe.execute()

    async def delete(self, session_id: str) -> SessionData | None:
        """End one session (logout); returns what it was."""
        key = session_key(session_id)
        raw = await self.redis.hgetall(PREFIX + "session:" + key)
        data = SessionData.from_hash(key, raw) if raw else None
        if data is not None:
            await self.delete_key(key, data.user_id)
        return data

    async def delete_user(self, user_id: str) -> int:
        """End every session of a user; returns how many there were."""
        members = await self.redis.smembers(PREFIX + "user-sessions:" + user_id)
        # Bytes: the kernel's client does not decode replies (see `from_hash`).
        keys = [m.decode() for m in cast("set[bytes]", members)]
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.delete(PREFIX + "session:" + key)
            pipe.delete(PREFIX + "user-sessions:" + user_id)
            results = await pipe.execute()
        return sum(int(r) for r in results[:-1])

    # --------------------------------------------------------------- revocation

    async def revoke_token(
        self,
        session: AsyncSession,
        *,
        jti: str,
        subject: str,
        expires_at: datetime,
        reason: str,
    ) -> None:
        """Deny a bearer token until it would have expired (PostgreSQL first, then Redis)."""
        await session.execute(
            insert(revoked_token)
            .values(jti=jti, subject=subject, expires_at=expires_at, reason=reason)
            .on_conflict_do_nothing()
        )
        await session.commit()
        ttl = int(expires_at.timestamp() - time.time()) + 60
        if ttl > 0:
            await self.redis.set(PREFIX + "deny:" + jti, "1", ex=ttl)

    async def end_user_access(self, user_id: str, not_before: datetime) -> int:
        """After a change to the user's access (committed with `not_before` in PostgreSQL):
        void their tokens issued before `not_before` and end their sessions."""
        await self.redis.set(
            PREFIX + "nb:" + user_id,
            str(int(not_before.timestamp())),
            ex=self._not_before_ttl(not_before),
        )
        return await self.delete_user(user_id)

    def _not_before_ttl(self, not_before: datetime) -> int:
        # Longer than any token can live (the kernel's maximum is 12 h by default).
        return max(60, int(not_before.timestamp() + 13 * 3600 - time.time()))

    async def restore(self, session: AsyncSession) -> tuple[int, int]:
        """Put revocations and not-before times still in force back into Redis."""
        now = datetime.now(UTC)
        rows = (
            await session.execute(
                select(revoked_token.c.jti, revoked_token.c.expires_at).where(
                    revoked_token.c.expires_at > now
                )
            )
        ).all()
        users = (
            await session.execute(
                select(user.c.id, user.c.not_before).where(user.c.not_before.is_not(None))
            )
        ).all()
        async with self.redis.pipeline(transaction=False) as pipe:
            for jti, expires_at in rows:
                pipe.set(
                    PREFIX + "deny:" + jti,
                    "1",
                    ex=int(expires_at.timestamp() - now.timestamp()) + 60,
                )
            restored_users = 0
            for user_id, not_before in users:
                ttl = self._not_before_ttl(not_before)
                if not_before.timestamp() + 13 * 3600 > now.timestamp():
                    pipe.set(PREFIX + "nb:" + user_id, str(int(not_before.timestamp())), ex=ttl)
                    restored_users += 1
            await pipe.execute()
        return len(rows), restored_users

    async def token_state(self, *, jti: str | None, subject: str) -> tuple[bool, int | None]:
        """(denied, not-before epoch) of a bearer token, in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.exists(PREFIX + "deny:" + (jti or "-"))
            pipe.get(PREFIX + "nb:" + subject)
            denied, not_before = await pipe.execute()
        return bool(denied), int(not_before) if not_before else None


def token_revoked(claims: dict[str, Any], denied: bool, not_before: int | None) -> str | None:
    """Why a verified token is void, or None."""
    if denied:
        return "token revoked (logged out)"
    if not_before is not None and int(claims.get("iat", 0)) < not_before:
        return "token issued before the account's last change (password, role, scope or status)"
    return None
