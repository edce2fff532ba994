"""API keys: issue (secret shown once), change, rotate, revoke, and the lookup the gateway
does on every partner request (Redis first, PostgreSQL on a miss)."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ecowatt_kernel.db import Database
from ecowatt_kernel.identity import DataScope, Identity, Role
from ecowatt_kernel.problems import NotFound, Problem
from ecowatt_kernel.redis_client import Redis
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_auth.apikeys.models import ApiKeyCreate, ApiKeyRead, ApiKeyUpdate, api_key

__all__ = [
    "KEY_PREFIX",
    "KeyRecord",
    "create_key",
    "forget",
    "get_key",
    "load_record",
    "parse_key",
    "revoke_key",
    "rotate_key",
    "to_read",
    "update_key",
]

KEY_PREFIX = "ewk"
_CACHE_S = 300
MAX_LIFETIME = timedelta(days=366)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_key(text: str) -> tuple[str, str] | None:
    """(key id, secret) of `ewk_<id>_<secret>`, or None."""
    prefix, _, rest = text.strip().partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != KEY_PREFIX or len(key_id) != 16 or not key_id.isalnum() or len(secret) < 32:
        return None
    return key_id, secret


@dataclass(frozen=True)
class KeyRecord:
    """What the gateway needs to admit a key (cached in Redis as JSON)."""

    id: str
    name: str
    secret_hash: str
    datasets: tuple[str, ...]
    scope_all: bool
    districts: tuple[str, ...]
    rate_per_minute: int
    quota_per_day: int
    expires_at: float
    status: str

    def matches(self, secret: str) -> bool:
        return hmac.compare_digest(self.secret_hash, _hash(secret))

    def usable(self, now: float) -> str | None:
        """Why the key cannot be used now, or None."""
        if self.status != "active":
            return "the API key was revoked"
        if self.expires_at <= now:
            return "the API key has expired"
        return None

    def identity(self) -> Identity:
        return Identity(
            subject=f"apikey:{self.id}",
            kind="api_key",
            name=self.name,
            roles=frozenset({Role.PARTNER}),
            scope=DataScope(all=True)
            if self.scope_all
            else DataScope(districts=frozenset(self.districts)),
            datasets=frozenset(self.datasets),
        )

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, text: bytes | str) -> KeyRecord:
        data = json.loads(text)
        data["datasets"] = tuple(data["datasets"])
        data["districts"] = tuple(data["districts"])
        return cls(**data)

    @classmethod
    def of(cls, row: Any) -> KeyRecord:
        return cls(
            id=row["id"],
            name=row["name"],
            secret_hash=row["secret_hash"],
            datasets=tuple(row["datasets"]),
            scope_all=row["scope_all"],
            districts=tuple(row["districts"]),
            rate_per_minute=row["rate_per_minute"],
            quota_per_day=row["quota_per_day"],
            expires_at=row["expires_at"].timestamp(),
            status=row["status"],
        )


def _cache_key(key_id: str) -> str:
    return f"auth:apikey:{key_id}"


async def load_record(redis: Redis, database: Database, key_id: str) -> KeyRecord | None:
    """The key's record from Redis, else from PostgreSQL (then cached for five minutes)."""
    cached = await redis.get(_cache_key(key_id))
    if cached:
        return None if cached == b"-" else KeyRecord.from_json(cached)
    async with database.session() as session:
        row = (
            (await session.execute(select(api_key).where(api_key.c.id == key_id)))
            .mappings()
            .first()
        )
    if row is None:
        await redis.set(_cache_key(key_id), "-", ex=60)  # unknown ids do not reach PostgreSQL again
        return None
    record = KeyRecord.of(row)
    await redis.set(_cache_key(key_id), record.to_json(), ex=_CACHE_S)
    return record


async def forget(redis: Redis, key_id: str) -> None:
    """Drop the cached record after a change (every gateway replica sees it at once)."""
    await redis.delete(_cache_key(key_id))


def to_read(row: Any, used_today: int | None = None) -> ApiKeyRead:
    return ApiKeyRead(
        id=row["id"],
        name=row["name"],
        organisation=row["organisation"],
        contact=row["contact"],
        datasets=list(row["datasets"]),
        all_districts=row["scope_all"],
        districts=list(row["districts"]),
        rate_per_minute=row["rate_per_minute"],
        quota_per_day=row["quota_per_day"],
        expires_at=row["expires_at"],
        status=row["status"],
        replaced_by=row["replaced_by"],
        created_at=row["created_at"],
        created_by=row["created_by"],
        updated_at=row["updated_at"],
        revoked_at=row["revoked_at"],
        used_today=used_today,
    )


def _check_expiry(expires_at: datetime, now: datetime) -> None:
    if expires_at.tzinfo is None:
        raise Problem("expires_at needs a time zone", status=422, type_suffix="validation-error")
    if expires_at <= now or expires_at > now + MAX_LIFETIME:
        raise Problem(
            "an API key expires within a year from now", status=422, type_suffix="validation-error"
        )


def _new_secret() -> tuple[str, str, str]:
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return key_id, secret, f"{KEY_PREFIX}_{key_id}_{secret}"


async def get_key(session: AsyncSession, *, key_id: str) -> Any:
    row = (await session.execute(select(api_key).where(api_key.c.id == key_id))).mappings().first()
    if row is None:
        raise NotFound(f"API key {key_id} not found")
    return row


async def create_key(
    session: AsyncSession,
    *,
    body: ApiKeyCreate,
    actor: str,
    default_rate: int,
    default_quota: int,
) -> tuple[Any, str]:
    """Store a new key; returns its row and the key text (to show once)."""
    now = datetime.now(UTC)
    _check_expiry(body.expires_at, now)
    if not body.all_districts and not body.districts:
        raise Problem(
            "name the districts the key may read, or all_districts",
            status=422,
            type_suffix="validation-error",
        )
    key_id, secret, text = _new_secret()
    await session.execute(
        api_key.insert().values(
            id=key_id,
            name=body.name,
            organisation=body.organisation,
            contact=body.contact,
            secret_hash=_hash(secret),
            datasets=body.datasets,
            scope_all=body.all_districts,
            districts=[] if body.all_districts else body.districts,
            rate_per_minute=body.rate_per_minute or default_rate,
            quota_per_day=body.quota_per_day or default_quota,
            expires_at=body.expires_at,
            status="active",
            created_at=now,
            created_by=actor,
            updated_at=now,
            updated_by=actor,
        )
    )
    return await get_key(session, key_id=key_id), text


async def update_key(session: AsyncSession, *, key_id: str, body: ApiKeyUpdate, actor: str) -> Any:
    row = await get_key(session, key_id=key_id)
    if row["status"] != "active":
        raise Problem("a revoked key cannot be changed", status=409, type_suffix="conflict")
    values: dict[str, Any] = {}
    given = body.model_dump(exclude_unset=True)
    for field in (
        "name",
        "organisation",
        "contact",
        "datasets",
        "districts",
        "rate_per_minute",
        "quota_per_day",
    ):
        if given.get(field) is not None:
            values[field] = given[field]
    if given.get("all_districts") is not None:
        values["scope_all"] = given["all_districts"]
    if given.get("expires_at") is not None:
        _check_expiry(given["expires_at"], datetime.now(UTC))
        values["expires_at"] = given["expires_at"]
    if not values.get("scope_all", row["scope_all"]) and not values.get(
        "districts", row["districts"]
    ):
        raise Problem(
            "a key without all_districts needs districts",
            status=422,
            type_suffix="validation-error",
        )
    values.update(updated_at=datetime.now(UTC), updated_by=actor)
    await session.execute(update(api_key).where(api_key.c.id == key_id).values(**values))
    return await get_key(session, key_id=key_id)


async def rotate_key(
    session: AsyncSession, *, key_id: str, grace: timedelta, actor: str
) -> tuple[Any, str]:
    """A new key with the same scope, rates and expiry; the old one keeps working for
    `grace`, then expires (partners switch without an outage)."""
    row = await get_key(session, key_id=key_id)
    if row["status"] != "active":
        raise Problem("a revoked key cannot be rotated", status=409, type_suffix="conflict")
    now = datetime.now(UTC)
    new_id, secret, text = _new_secret()
    await session.execute(
        api_key.insert().values(
            id=new_id,
            name=row["name"],
            organisation=row["organisation"],
            contact=row["contact"],
            secret_hash=_hash(secret),
            datasets=row["datasets"],
            scope_all=row["scope_all"],
            districts=row["districts"],
            rate_per_minute=row["rate_per_minute"],
            quota_per_day=row["quota_per_day"],
            expires_at=row["expires_at"],
            status="active",
            created_at=now,
            created_by=actor,
            updated_at=now,
            updated_by=actor,
        )
    )
    await session.execute(
        update(api_key)
        .where(api_key.c.id == key_id)
        .values(
            replaced_by=new_id,
            expires_at=min(row["expires_at"], now + grace),
            updated_at=now,
            updated_by=actor,
        )
    )
    return await get_key(session, key_id=new_id), text


async def revoke_key(session: AsyncSession, *, key_id: str, actor: str) -> Any:
    row = await get_key(session, key_id=key_id)
    if row["status"] == "revoked":
        return row
    now = datetime.now(UTC)
    await session.execute(
        update(api_key)
        .where(api_key.c.id == key_id)
        .values(status="revoked", revoked_at=now, updated_at=now, updated_by=actor)
    )
    return await get_key(session, key_id=key_id)
