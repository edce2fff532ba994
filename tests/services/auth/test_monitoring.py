"""Security monitoring: each rule raises an alert when its pattern occurs and stays quiet
when it does not; alerts are de-duplicated, sent to the webhook (signed) and handled."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from ecowatt_auth.monitoring.service import Monitor
from ecowatt_auth.service import MONITOR
from ecowatt_kernel.contracts import AuditEvent, FrameReceived, encode
from ecowatt_kernel.identity import Role
from pydantic import SecretStr

from tests.services.auth.conftest import Platform, isolated_redis_url, start_platform

pytestmark = pytest.mark.integration

SECRET = "webhook-secret-for-tests"
received: list[dict[str, Any]] = []


class _Hook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        received.append(
            {"body": json.loads(body), "raw": body, "sig": self.headers.get("X-EcoWatt-Signature")}
        )
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
async def watched(empty_database: str, redis_url: str) -> AsyncIterator[Platform]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    received.clear()
    try:
        async for platform in start_platform(
            empty_database,
            isolated_redis_url(redis_url),
            auth_monitor_brute_force_account=4,
            auth_monitor_brute_force_address=6,
            auth_monitor_denials=3,
            auth_monitor_exports=3,
            auth_monitor_device_failures_per_device=3,
            auth_monitor_device_failures_platform=5,
            auth_monitor_odd_hours="01:00-05:00",
            auth_alert_webhook_urls=(f"http://127.0.0.1:{server.server_port}/hook",),
            auth_alert_webhook_secret=SecretStr(SECRET),
        ):
            yield platform
    finally:
        server.shutdown()


def monitor(platform: Platform) -> Monitor:
    return MONITOR.get(platform.apps["auth"].state.context)


async def publish(platform: Platform, *events: Any, topic: str = "audit.events") -> None:
    await platform.infrastructure.bus.publish([encode(e, topic=topic) for e in events])


def audit(**fields: Any) -> AuditEvent:
    values: dict[str, Any] = {
        "actor": "u-1",
        "actor_kind": "user",
        "action": "GET /api/registry/enterprises",
        "resource": "/api/registry/enterprises",
        "outcome": "success",
        "at": datetime.now(UTC),
        "source_ip": "10.1.1.1",
        "details": {},
    }
    return AuditEvent(**(values | fields))


def failed_login(username: str, address: str, at: datetime | None = None) -> AuditEvent:
    return audit(
        actor=username,
        actor_kind="anonymous",
        action="auth.login",
        resource=f"user:{username}",
        outcome="failed",
        source_ip=address,
        at=at or datetime.now(UTC),
        details={"username": username, "reason": "wrong user name or password"},
    )


async def alerts(platform: Platform, rule: str, settle_s: float = 0.5) -> list[dict[str, Any]]:
    """The open alerts of `rule` once the monitor has consumed what was published."""
    import asyncio

    await asyncio.sleep(settle_s)
    return await monitor(platform).open_alerts(rule)


async def wait_alert(platform: Platform, rule: str, subject: str) -> dict[str, Any]:
    async def found() -> dict[str, Any] | None:
        for alert in await monitor(platform).open_alerts(rule):
            if alert["subject"] == subject:
                return alert
        return None

    return await platform.wait_for(found)  # type: ignore[no-any-return]


async def test_brute_force_on_an_account_through_the_gateway(watched: Platform) -> None:
    _, username, _ = await watched.person(Role.CITY_SUPERVISOR)
    for n in range(4):  # from four addresses: the account is the pattern
        response = await watched.login(watched.client(f"10.2.0.{n}"), username, f"Wrong-{n}!x")
        assert response.status_code in (401, 423)
    for n in range(3):
        await watched.login(watched.client("10.2.1.1"), "quiet.user", f"Wrong-{n}!x")
    alert = await wait_alert(watched, "brute_force_account", username)
    assert alert["severity"] == "high" and alert["count"] >= 4
    quiet = await alerts(watched, "brute_force_account")
    assert "quiet.user" not in {a["subject"] for a in quiet}
    # the webhook got it, signed
    hook = await watched.wait_for(lambda: [r for r in received if r["body"]["subject"] == username])
    expected = "sha256=" + hmac.new(SECRET.encode(), hook[0]["raw"], hashlib.sha256).hexdigest()
    assert hook[0]["sig"] == expected and hook[0]["body"]["rule"] == "brute_force_account"
    # handled through the API, with a journal
    admin = await watched.admin()
    handled = await admin.post(
        f"/api/auth/security-alerts/{alert['id']}/handle",
        json={"status": "resolved", "note": "已联系本人确认，重置密码"},
    )
    assert handled.status_code == 200, handled.text
    body = handled.json()
    assert body["status"] == "resolved"
    assert [j["action"] for j in body["journal"]] == ["raised", "notified", "handled"]
    again = await admin.post(
        f"/api/auth/security-alerts/{alert['id']}/handle", json={"status": "resolved", "note": "x"}
    )
    assert again.status_code == 409


async def test_brute_force_from_one_address(watched: Platform) -> None:
    await publish(watched, *(failed_login(f"name{n}", "10.3.0.1") for n in range(6)))
    await publish(watched, *(failed_login(f"name{n}", "10.3.0.2") for n in range(5)))
    await wait_alert(watched, "brute_force_address", "10.3.0.1")
    subjects = {a["subject"] for a in await alerts(watched, "brute_force_address")}
    assert "10.3.0.2" not in subjects


async def test_failures_outside_the_window_do_not_add_up(watched: Platform) -> None:
    start = datetime.now(UTC) - timedelta(hours=3)
    spread = [
        failed_login("slow.guess", f"10.4.0.{n}", start + timedelta(minutes=20 * n))
        for n in range(6)
    ]
    await publish(watched, *spread)
    subjects = {a["subject"] for a in await alerts(watched, "brute_force_account", settle_s=1.0)}
    assert "slow.guess" not in subjects


async def test_repeated_denials(watched: Platform) -> None:
    denied = {"outcome": "denied", "details": {"status": 403, "name": "越权者", "path": "/api/x"}}
    await publish(watched, *(audit(actor="u-denied", **denied) for _ in range(3)))
    await publish(watched, *(audit(actor="u-twice", **denied) for _ in range(2)))
    unauth = {"outcome": "denied", "details": {"status": 401}}
    await publish(watched, *(audit(actor="u-401", **unauth) for _ in range(5)))
    alert = await wait_alert(watched, "repeated_denials", "u-denied")
    assert alert["evidence"]["name"] == "越权者"
    subjects = {a["subject"] for a in await alerts(watched, "repeated_denials")}
    assert not subjects & {"u-twice", "u-401"}


async def test_export_volume_through_the_gateway(watched: Platform) -> None:
    _, username, password = await watched.person(Role.CITY_SUPERVISOR)
    browser = watched.client("10.5.0.1")
    info = (await watched.login(browser, username, password)).json()
    for _ in range(3):
        assert (await browser.get("/api/registry/enterprises.xlsx")).status_code == 200
    for _ in range(3):  # reads that are not exports do not count
        assert (await browser.get("/api/registry/enterprises")).status_code == 200
    await wait_alert(watched, "export_volume", info["user"]["id"])
    await publish(
        watched, *(audit(actor="u-two-exports", details={"export": True}) for _ in range(2))
    )
    subjects = {a["subject"] for a in await alerts(watched, "export_volume")}
    assert "u-two-exports" not in subjects


async def test_logins_at_odd_hours(watched: Platform) -> None:
    zone = ZoneInfo("Asia/Shanghai")
    night = datetime.now(zone).replace(hour=3, minute=10).astimezone(UTC)
    day = datetime.now(zone).replace(hour=10, minute=0).astimezone(UTC)
    ok = {"action": "auth.login", "outcome": "success"}
    await publish(
        watched, audit(actor="u-night", at=night, details={"username": "night.owl"}, **ok)
    )
    await publish(watched, audit(actor="u-day", at=day, details={"username": "day.worker"}, **ok))
    alert = await wait_alert(watched, "odd_hour_login", "night.owl")
    assert alert["severity"] == "low"
    assert "day.worker" not in {a["subject"] for a in await alerts(watched, "odd_hour_login")}


async def test_logins_from_a_new_address_through_the_gateway(watched: Platform) -> None:
    _, username, password = await watched.person(
        Role.DISTRICT_OFFICER, {"kind": "districts", "districts": ["610112"]}
    )
    assert (await watched.login(watched.client("10.6.0.1"), username, password)).status_code == 200
    assert (await watched.login(watched.client("10.6.0.1"), username, password)).status_code == 200
    subjects = {a["subject"] for a in await alerts(watched, "new_address_login", settle_s=1.0)}
    assert not any(s.startswith(username) for s in subjects)  # first address, then the same
    assert (await watched.login(watched.client("10.6.0.99"), username, password)).status_code == 200
    alert = await wait_alert(watched, "new_address_login", f"{username}@10.6.0.99")
    assert alert["evidence"]["source_ip"] == "10.6.0.99"


def frame(mn: str, reason_code: str | None, peer: str = "10.7.0.1:50000") -> FrameReceived:
    return FrameReceived(
        raw=b"##0000",
        peer=peer,
        received_at=datetime.now(UTC),
        mn=mn,
        cn="2011",
        verdict="rejected" if reason_code else "accepted",
        reason_code=reason_code,
        reason="PW does not match" if reason_code else None,
    )


async def test_device_authentication_failures_spiking(watched: Platform) -> None:
    await publish(
        watched, *(frame("MNSPOOFED0001", "bad_password") for _ in range(3)), topic="hj212.frames"
    )
    await publish(
        watched, *(frame("MNQUIET00001", "bad_password") for _ in range(1)), topic="hj212.frames"
    )
    await publish(
        watched, *(frame("MNOTHER00001", "unknown_mn") for _ in range(6)), topic="hj212.frames"
    )
    await publish(watched, *(frame("MNGOOD00001", None) for _ in range(20)), topic="hj212.frames")
    alert = await wait_alert(watched, "device_auth_failures", "device:MNSPOOFED0001")
    assert alert["evidence"]["peer"] == "10.7.0.1"
    subjects = {a["subject"] for a in await alerts(watched, "device_auth_failures")}
    assert "device:MNQUIET00001" not in subjects and "device:MNOTHER00001" not in subjects
    assert "platform" not in subjects  # four PW failures in all: under the platform's five
    await publish(watched, frame("MNQUIET00001", "bad_password"), topic="hj212.frames")
    await wait_alert(watched, "device_auth_failures", "platform")


async def test_a_repeating_pattern_updates_one_alert(watched: Platform) -> None:
    await publish(
        watched,
        *(audit(actor="u-loop", outcome="denied", details={"status": 403}) for _ in range(9)),
    )
    alert = await wait_alert(watched, "repeated_denials", "u-loop")
    rows = [a for a in await alerts(watched, "repeated_denials") if a["subject"] == "u-loop"]
    assert len(rows) == 1 and rows[0]["count"] >= 6
    admin = await watched.admin()
    listed = await admin.get("/api/auth/security-alerts", params={"rule": "repeated_denials"})
    assert [a["id"] for a in listed.json()["items"] if a["subject"] == "u-loop"] == [alert["id"]]
    export = await admin.get("/api/auth/security-alerts.xlsx")
    assert export.status_code == 200 and export.content[:2] == b"PK"
    rules = await admin.get("/api/auth/security-rules")
    assert {r["code"] for r in rules.json()} == {
        "brute_force_account",
        "brute_force_address",
        "repeated_denials",
        "export_volume",
        "odd_hour_login",
        "new_address_login",
        "device_auth_failures",
    }
    _ = uuid
