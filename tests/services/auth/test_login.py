"""Login through the gateway: sessions (cookie + CSRF), bearer tokens, logout that revokes,
lockout, the forced change of an initial password, expiry, the second factor."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest
from ecowatt_auth.accounts import totp
from ecowatt_auth.accounts.models import user
from ecowatt_kernel.identity import Role
from sqlalchemy import update

from tests.services.auth.conftest import ADMIN_PASSWORD, Platform

pytestmark = pytest.mark.integration


async def test_browser_session_reads_and_needs_csrf_to_write(platform: Platform) -> None:
    browser = platform.client()
    response = await platform.login(browser, "admin", ADMIN_PASSWORD)
    assert response.status_code == 200, response.text
    info = response.json()
    assert info["user"]["username"] == "admin" and info["user"]["role"] == "admin"
    cookies = {c.name: c for c in browser.cookies.jar}
    session = cookies["ecowatt_session"]
    assert session.has_nonstandard_attr("HttpOnly")
    assert cookies["ecowatt_csrf"].value == info["csrf_token"]
    set_cookie = response.headers.get_list("set-cookie")
    assert any("SameSite=lax" in c and "HttpOnly" in c for c in set_cookie)

    listed = await browser.get("/api/registry/enterprises")
    assert listed.status_code == 200
    body = {"name": "西安某涂装厂", "district_code": "610112", "performance_grade": "C"}
    refused = await browser.post("/api/registry/enterprises", json=body)
    assert refused.status_code == 403
    assert refused.json()["type"].endswith("/csrf")
    wrong = await browser.post(
        "/api/registry/enterprises", json=body, headers={"X-CSRF-Token": "not-the-token"}
    )
    assert wrong.status_code == 403
    created = await browser.post(
        "/api/registry/enterprises", json=body, headers={"X-CSRF-Token": info["csrf_token"]}
    )
    assert created.status_code == 201, created.text
    assert created.json()["created_by"] == info["user"]["id"]


async def test_cross_site_posts_are_refused_even_with_the_token(platform: Platform) -> None:
    browser = platform.client()
    info = (await platform.login(browser, "admin", ADMIN_PASSWORD)).json()
    response = await browser.post(
        "/api/auth/users",
        json={},
        headers={"X-CSRF-Token": info["csrf_token"], "Origin": "https://evil.example"},
    )
    assert response.status_code == 403
    assert response.json()["type"].endswith("/cross-site")
    login = await platform.client().post(
        "/api/auth/session",
        json={"username": "admin", "password": ADMIN_PASSWORD},
        headers={"Origin": "https://evil.example"},
    )
    assert login.status_code == 403


async def test_logout_ends_the_session_for_good(platform: Platform) -> None:
    browser = platform.client()
    info = (await platform.login(browser, "admin", ADMIN_PASSWORD)).json()
    stolen = dict(browser.cookies)
    out = await browser.delete("/api/auth/session", headers={"X-CSRF-Token": info["csrf_token"]})
    assert out.status_code == 204
    replay = platform.client()
    replay.cookies.update(stolen)
    again = await replay.get("/api/registry/enterprises")
    assert again.status_code == 401
    assert again.json()["type"].endswith("/session-expired")


async def test_bearer_token_for_scripts_and_its_revocation(platform: Platform) -> None:
    script = platform.client()
    issued = await script.post(
        "/api/auth/token", json={"username": "admin", "password": ADMIN_PASSWORD}
    )
    assert issued.status_code == 200, issued.text
    token = issued.json()["access_token"]
    assert issued.json()["expires_in"] == platform.settings.auth_access_token_s
    bearer = {"Authorization": f"Bearer {token}"}
    assert (await script.get("/api/registry/enterprises", headers=bearer)).status_code == 200
    me = await script.get("/api/auth/me", headers=bearer)
    assert me.json()["username"] == "admin"
    # scripts need no CSRF token
    body = {"name": "脚本创建", "district_code": "610113", "performance_grade": "B"}
    assert (
        await script.post("/api/registry/enterprises", json=body, headers=bearer)
    ).status_code == 201
    assert (await script.delete("/api/auth/token", headers=bearer)).status_code == 204
    after = await script.get("/api/registry/enterprises", headers=bearer)
    assert after.status_code == 401
    assert "revoked" in after.json()["detail"]
    # the denylist is rebuilt from PostgreSQL when Redis loses it
    await platform.runtime.context.redis.delete(f"auth:deny:{_jti(token)}")
    async with platform.runtime.context.database.session() as session:
        await platform.runtime.sessions.restore(session)
    assert (await script.get("/api/registry/enterprises", headers=bearer)).status_code == 401


def _jti(token: str) -> str:
    import base64
    import json

    payload = token.split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["jti"])


async def test_wrong_passwords_lock_the_name_and_the_answer_does_not_reveal_accounts(
    platform: Platform,
) -> None:
    _, username, password = await platform.person(Role.CITY_SUPERVISOR)
    browser = platform.client()
    limit = platform.settings.auth_lockout_failures
    for attempt in range(limit - 1):
        wrong = await platform.login(browser, username, f"Wrong!Pass{attempt}x")
        assert wrong.status_code == 401
        assert wrong.json()["type"].endswith("/invalid-credentials")
        ghost = await platform.login(browser, f"ghost{attempt}", "Wrong!Pass0x")
        assert ghost.json()["detail"] == wrong.json()["detail"]  # same answer for unknown names
    locked = await platform.login(browser, username, "Wrong!Pass-last")
    assert locked.status_code == 423
    assert int(locked.headers["retry-after"]) > 0
    # even the right password is refused while locked
    refused = await platform.login(browser, username, password)
    assert refused.status_code == 423
    # an administrator sees the lock and lifts it
    admin = await platform.admin()
    users = (await admin.get("/api/auth/users", params={"q": username})).json()["items"]
    assert users[0]["locked_until"] is not None
    assert (await admin.post(f"/api/auth/users/{users[0]['id']}/unlock")).status_code == 200
    assert (await platform.login(browser, username, password)).status_code == 200


async def test_initial_password_must_be_changed_and_meet_the_policy(platform: Platform) -> None:
    admin = await platform.admin()
    created = await admin.post(
        "/api/auth/users",
        json={
            "username": "li.na",
            "display_name": "李娜",
            "role": "district_officer",
            "scope": {"kind": "districts", "districts": ["610112"]},
        },
    )
    assert created.status_code == 201, created.text
    initial = created.json()["initial_password"]
    assert initial and created.json()["must_change_password"]
    browser = platform.client()
    first = await platform.login(browser, "li.na", initial)
    assert first.status_code == 403
    assert first.json()["type"].endswith("/password-change-required")
    assert first.json()["change_reason"] == "initial"
    weak = await browser.post(
        "/api/auth/password",
        json={"username": "li.na", "password": initial, "new_password": "abc12345"},
    )
    assert weak.status_code == 422
    codes = {v["code"] for v in weak.json()["violations"]}
    assert {"too_short", "too_simple", "sequence"} <= codes
    same = await browser.post(
        "/api/auth/password",
        json={"username": "li.na", "password": initial, "new_password": initial},
    )
    assert same.status_code == 422 and "reused" in {v["code"] for v in same.json()["violations"]}
    good = await browser.post(
        "/api/auth/password",
        json={"username": "li.na", "password": initial, "new_password": "Xi'an-Weiyang#88"},
    )
    assert good.status_code == 204, good.text
    session = await platform.login(browser, "li.na", "Xi'an-Weiyang#88")
    assert session.status_code == 200
    me = session.json()["user"]
    assert me["effective_districts"] == ["610112"] and not me["all_data"]


async def test_an_expired_password_forces_a_change(platform: Platform) -> None:
    user_id, username, password = await platform.person(Role.OM_OPERATOR)
    async with platform.runtime.context.database.transaction() as session:
        await session.execute(
            update(user)
            .where(user.c.id == user_id)
            .values(password_changed_at=datetime.now(UTC) - timedelta(days=91))
        )
    response = await platform.login(platform.client(), username, password)
    assert response.status_code == 403
    assert response.json()["change_reason"] == "expired"


async def test_a_password_change_ends_every_session_and_token(platform: Platform) -> None:
    _, username, password = await platform.person(Role.CITY_SUPERVISOR)
    browser = platform.client()
    assert (await platform.login(browser, username, password)).status_code == 200
    token = (
        await platform.client().post(
            "/api/auth/token", json={"username": username, "password": password}
        )
    ).json()["access_token"]
    await asyncio.sleep(1.1)  # not-before has one-second resolution
    changed = await platform.client().post(
        "/api/auth/password",
        json={"username": username, "password": password, "new_password": "An0ther!Secret-77"},
    )
    assert changed.status_code == 204
    assert (await browser.get("/api/registry/enterprises")).status_code == 401
    bearer = {"Authorization": f"Bearer {token}"}
    assert (await platform.client().get("/api/auth/me", headers=bearer)).status_code == 401


async def test_disabled_and_expired_accounts_cannot_log_in(platform: Platform) -> None:
    user_id, username, password = await platform.person(
        Role.ENTERPRISE_USER, {"kind": "enterprises", "enterprises": ["e-1"]}
    )
    browser = platform.client()
    assert (await platform.login(browser, username, password)).status_code == 200
    admin = await platform.admin()
    disabled = await admin.patch(f"/api/auth/users/{user_id}", json={"status": "disabled"})
    assert disabled.status_code == 200
    assert (await browser.get("/api/auth/me")).status_code == 401  # its session ended
    refused = await platform.login(platform.client(), username, password)
    assert refused.status_code == 403 and refused.json()["type"].endswith("/account-disabled")
    await admin.patch(
        f"/api/auth/users/{user_id}",
        json={
            "status": "active",
            "account_expires_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
        },
    )
    expired = await platform.login(platform.client(), username, password)
    assert expired.status_code == 403 and expired.json()["type"].endswith("/account-expired")


async def test_second_factor(platform: Platform) -> None:
    _, username, password = await platform.person(Role.CITY_SUPERVISOR)
    browser = platform.client()
    info = (await platform.login(browser, username, password)).json()
    csrf = {"X-CSRF-Token": info["csrf_token"]}
    setup = await browser.post("/api/auth/totp/setup", headers=csrf)
    assert setup.status_code == 200
    secret = setup.json()["secret"]
    assert setup.json()["otpauth_uri"].startswith("otpauth://totp/EcoWatt")
    bad = await browser.post("/api/auth/totp/enable", json={"code": "000000"}, headers=csrf)
    assert bad.status_code == 422 or totp.totp(secret) == "000000"
    step_now = time.time()
    code = totp.totp(secret, step_now - 30)  # the previous step: the login uses the current one
    assert (
        await browser.post("/api/auth/totp/enable", json={"code": code}, headers=csrf)
    ).status_code == 204
    without = await platform.login(platform.client(), username, password)
    assert without.status_code == 401 and without.json()["type"].endswith("/totp-required")
    wrong = await platform.login(
        platform.client(),
        username,
        password,
        totp_code="123456" if totp.totp(secret) != "123456" else "654321",
    )
    assert wrong.status_code == 401 and wrong.json()["type"].endswith("/invalid-totp")
    current = totp.totp(secret)
    ok = await platform.login(platform.client(), username, password, totp_code=current)
    assert ok.status_code == 200
    replay = await platform.login(platform.client(), username, password, totp_code=current)
    assert replay.status_code == 401  # a code works once


def test_totp_matches_the_rfc_6238_vectors() -> None:
    import base64

    secret = base64.b32encode(b"12345678901234567890").decode()
    # RFC 6238 appendix B, SHA-1, truncated to six digits
    for moment, code in (
        (59, "287082"),
        (1111111109, "081804"),
        (1234567890, "005924"),
        (2000000000, "279037"),
    ):
        assert totp.totp(secret, moment) == code
