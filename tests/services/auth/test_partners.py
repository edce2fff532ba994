"""Partner API keys through the gateway: shown once and stored hashed, datasets and
districts, read-only, expiry, rotation with a grace period, revocation, per-key rate limits
and daily quotas; and the per-identity and per-address limits (429 with Retry-After)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from ecowatt_auth.apikeys.models import api_key
from ecowatt_kernel.identity import Role
from sqlalchemy import select, update

from tests.services.auth.conftest import Platform, isolated_redis_url, start_platform

pytestmark = pytest.mark.integration


def key_body(**overrides: Any) -> dict[str, Any]:
    body = {
        "name": "智慧环保指挥中心",
        "organisation": "西安市智慧环保指挥中心",
        "datasets": ["archive"],
        "districts": ["610112"],
        "expires_at": (datetime.now(UTC) + timedelta(days=90)).isoformat(),
    }
    return body | overrides


async def issue(admin: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    response = await admin.post("/api/auth/api-keys", json=key_body(**overrides))
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_a_key_reads_its_datasets_only_and_never_writes(platform: Platform) -> None:
    admin = await platform.admin()
    issued = await issue(admin)
    key = issued["key"]
    assert key.startswith("ewk_") and issued["used_today"] is None
    async with platform.runtime.context.database.session() as session:
        stored = (await session.execute(select(api_key))).mappings().one()
    assert key not in str(dict(stored))  # only its hash is kept
    assert stored["secret_hash"] == hashlib.sha256(key.split("_", 2)[2].encode()).hexdigest()
    read = (await admin.get(f"/api/auth/api-keys/{issued['id']}")).json()
    assert "key" not in read

    partner = platform.client()
    headers = {"X-API-Key": key}
    assert (await partner.get("/api/registry/enterprises", headers=headers)).status_code == 200
    also = {"Authorization": f"ApiKey {key}"}
    assert (await partner.get("/api/registry/enterprises", headers=also)).status_code == 200
    me = await partner.get("/api/auth/me", headers=headers)
    assert me.json()["kind"] == "api_key" and me.json()["effective_districts"] == ["610112"]
    for method, path in (
        ("GET", "/api/registry/history"),  # in no dataset
        ("GET", "/api/registry/enterprises.xlsx"),  # not a partner endpoint
        ("GET", "/api/auth/users"),
        ("POST", "/api/registry/enterprises"),  # keys never write
    ):
        response = await partner.request(method, path, headers=headers, json={})
        assert response.status_code == 403, (method, path, response.text)
    bad = await partner.get("/api/registry/enterprises", headers={"X-API-Key": key[:-2] + "xx"})
    assert bad.status_code == 401
    assert (
        await partner.get("/api/registry/enterprises", headers={"X-API-Key": "nonsense"})
    ).status_code == 401
    used = (await admin.get(f"/api/auth/api-keys/{issued['id']}")).json()["used_today"]
    assert used >= 7


async def test_expiry_rotation_and_revocation(platform: Platform) -> None:
    admin = await platform.admin()
    issued = await issue(admin)
    old = {"X-API-Key": issued["key"]}
    partner = platform.client()
    rotated = await admin.post(f"/api/auth/api-keys/{issued['id']}/rotate", json={"grace_hours": 1})
    assert rotated.status_code == 200
    new = {"X-API-Key": rotated.json()["key"]}
    assert rotated.json()["datasets"] == ["archive"] and rotated.json()["districts"] == ["610112"]
    # both work during the grace period
    assert (await partner.get("/api/registry/enterprises", headers=old)).status_code == 200
    assert (await partner.get("/api/registry/enterprises", headers=new)).status_code == 200
    details = (await admin.get(f"/api/auth/api-keys/{issued['id']}")).json()
    assert details["replaced_by"] == rotated.json()["id"]
    assert datetime.fromisoformat(details["expires_at"]) < datetime.now(UTC) + timedelta(
        hours=1, minutes=1
    )
    # the grace period ends: the old key is refused at once on every gateway (cache dropped)
    async with platform.runtime.context.database.transaction() as session:
        await session.execute(
            update(api_key)
            .where(api_key.c.id == issued["id"])
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    await platform.runtime.context.redis.delete(f"auth:apikey:{issued['id']}")
    expired = await partner.get("/api/registry/enterprises", headers=old)
    assert expired.status_code == 401 and "expired" in expired.json()["detail"]
    revoked = await admin.post(f"/api/auth/api-keys/{rotated.json()['id']}/revoke")
    assert revoked.json()["status"] == "revoked"
    gone = await partner.get("/api/registry/enterprises", headers=new)
    assert gone.status_code == 401 and "revoked" in gone.json()["detail"]
    listed = await admin.get("/api/auth/api-keys", params={"status": "revoked"})
    assert [k["id"] for k in listed.json()["items"]] == [rotated.json()["id"]]


async def test_keys_must_expire_within_a_year_and_name_their_scope(platform: Platform) -> None:
    admin = await platform.admin()
    never = await admin.post(
        "/api/auth/api-keys",
        json=key_body(expires_at=(datetime.now(UTC) + timedelta(days=800)).isoformat()),
    )
    assert never.status_code == 422
    unknown = await admin.post("/api/auth/api-keys", json=key_body(datasets=["everything"]))
    assert unknown.status_code == 422
    nowhere = await admin.post("/api/auth/api-keys", json=key_body(districts=[]))
    assert nowhere.status_code == 422


@pytest.fixture
async def limited(empty_database: str, redis_url: str) -> AsyncIterator[Platform]:
    async for platform in start_platform(
        empty_database,
        isolated_redis_url(redis_url),
        auth_rate_anonymous_per_minute=5,
        auth_rate_user_per_minute=8,
    ):
        yield platform


async def test_rate_limits_and_quotas_answer_429_with_retry_after(limited: Platform) -> None:
    # per address on public endpoints (the login)
    stranger = limited.client("10.20.0.1")
    statuses = [
        (
            await stranger.post("/api/auth/token", json={"username": f"x{n}", "password": "y"})
        ).status_code
        for n in range(6)
    ]
    assert statuses[:5] == [401] * 5 and statuses[5] == 429
    another = limited.client("10.20.0.2")
    assert (
        await another.post("/api/auth/token", json={"username": "x", "password": "y"})
    ).status_code == 401

    # per identity
    bearer = limited.bearer(Role.CITY_SUPERVISOR)
    client = limited.client()
    answers = [await client.get("/api/registry/enterprises", headers=bearer) for _ in range(9)]
    assert [a.status_code for a in answers[:8]] == [200] * 8
    assert answers[8].status_code == 429
    assert 0 < int(answers[8].headers["retry-after"]) <= 60
    assert answers[8].json()["type"].endswith("/rate-limited")

    # per key: its own rate and its daily quota
    admin = await limited.admin("10.20.0.3")
    per_minute = await issue(admin, rate_per_minute=3, quota_per_day=1000)
    statuses = [
        (
            await client.get("/api/registry/enterprises", headers={"X-API-Key": per_minute["key"]})
        ).status_code
        for _ in range(4)
    ]
    assert statuses == [200, 200, 200, 429]
    daily = await issue(admin, rate_per_minute=1000, quota_per_day=2)
    statuses = []
    for _ in range(3):
        response = await client.get(
            "/api/registry/enterprises", headers={"X-API-Key": daily["key"]}
        )
        statuses.append(response.status_code)
    assert statuses == [200, 200, 429]
    assert response.json()["type"].endswith("/quota-exceeded")
    assert int(response.headers["retry-after"]) <= 86400
