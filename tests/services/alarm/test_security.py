"""Issue 21, the alarm service: webhook targets checked when stored and when called (no
server-side request forgery, no DNS rebinding), withdrawing an approved filing needs the
bureau, feedback attachments limited in count and size with nothing written on refusal,
Excel exports capped. Each limit is hit."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from ecowatt_alarm.notifications.notifier import Notifier
from ecowatt_alarm.notifications.webhooks import WebhookPolicy, WebhookRefused, check_url
from ecowatt_alarm.tables import attachment, journal
from ecowatt_kernel.contracts import AlarmChanged
from ecowatt_kernel.identity import Role
from sqlalchemy import func, select

from .conftest import CityRun, Harness

pytestmark = pytest.mark.integration

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://10.20.30.40/hook", "private"),
        ("http://[::1]:8080/hook", "loopback"),
        ("ftp://example.org/hook", "scheme"),
        ("http://user:secret@example.org/hook", "credentials"),
        ("http://[fe80::1]/hook", "link-local"),
    ],
)
async def test_a_webhook_to_an_internal_target_is_refused_when_stored(
    harness: Harness, url: str, reason: str
) -> None:
    h = harness
    body = {"district_code": "610199", "name": f"测试-{reason}", "webhook_url": url}
    r = await h.client.put("/district-contacts", json=body, headers=h.headers(Role.CITY_SUPERVISOR))
    assert r.status_code == 422, r.text
    assert r.json()["type"].endswith("webhook-refused") and reason in r.json()["detail"]
    r = await h.client.get(
        "/district-contacts", params={"page_size": 500}, headers=h.headers(Role.CITY_SUPERVISOR)
    )
    assert all(c["name"] != body["name"] for c in r.json()["items"]), "nothing stored"


async def test_an_operator_allow_listed_target_may_be_stored(harness: Harness) -> None:
    h = harness  # its settings allow 127.0.0.0/8 (the local webhook server)
    body = {"district_code": "610199", "name": "本地", "webhook_url": "http://127.0.0.1:9/hook"}
    r = await h.client.put("/district-contacts", json=body, headers=h.headers(Role.CITY_SUPERVISOR))
    assert r.status_code == 200, r.text


async def test_a_webhook_rebound_to_an_internal_address_is_refused_when_called(
    harness: Harness,
) -> None:
    """The name resolves to a public address when stored and checked, to the local webhook
    server when the connection is made: nothing reaches it, the attempt is logged failed."""
    h = harness
    port = int(h.settings.alarm_webhook_urls[0].split(":")[2].split("/")[0])
    answers = iter([["93.184.216.34"], ["93.184.216.34"]])

    async def resolve(host: str, _port: int) -> list[str]:
        return next(answers, ["127.0.0.1"])

    policy = WebhookPolicy.from_setting((), resolve=resolve)  # no allow-list
    url = f"http://rebinding.example:{port}/hook"
    await check_url(url, policy)  # stored: public
    notifier = Notifier(
        database=h.processor.db, settings=h.settings, view=h.processor.view, webhook_policy=policy
    )
    now = datetime.now(UTC)
    event = AlarmChanged(
        alarm_id="REBIND-1",
        enterprise_id="nobody",
        rule_code="R1",
        rule_version=1,
        subject_id="G",
        change="opened",
        status="open",
        opened_at=now,
        changed_at=now,
    )
    before = len(h.webhook)
    with pytest.raises(WebhookRefused, match=r"127\.0\.0\.1"):
        await notifier._webhook(url, event)
    assert len(h.webhook) == before, "nothing was sent to the internal address"


async def test_withdrawing_an_approved_filing_needs_the_bureau(
    city_run: CityRun, harness: Harness
) -> None:
    h = harness
    enterprise = city_run.city.enterprise("healthy")
    firm = h.headers(Role.ENTERPRISE_USER, enterprises=(enterprise.id,))
    body = {
        "enterprise_id": enterprise.id,
        "reason": "设备检修",
        "starts_at": "2026-12-03T00:00:00+08:00",
        "ends_at": "2026-12-03T12:00:00+08:00",
    }
    pending = (await h.client.post("/filings", json=body, headers=firm)).json()["id"]
    r = await h.client.post(f"/filings/{pending}/withdraw", json={}, headers=firm)
    assert r.status_code == 200 and r.json()["status"] == "withdrawn", "its own pending filing"
    approved = (await h.client.post("/filings", json=body, headers=firm)).json()["id"]
    city = h.headers(Role.CITY_SUPERVISOR)
    assert (await h.client.post(f"/filings/{approved}/approve", json={}, headers=city)).is_success
    r = await h.client.post(f"/filings/{approved}/withdraw", json={}, headers=firm)
    assert r.status_code == 403 and "bureau" in r.json()["detail"], r.text
    r = await h.client.get("/filings", params={"enterprise_id": enterprise.id}, headers=city)
    assert {f["id"]: f["status"] for f in r.json()["items"]}[approved] == "approved"
    r = await h.client.post(f"/filings/{approved}/withdraw", json={}, headers=city)
    assert r.status_code == 200 and r.json()["status"] == "withdrawn"


async def _written(h: Harness, alarm_id: str) -> tuple[int, int]:
    async with h.processor.db.session() as s:
        journals = await s.scalar(
            select(func.count()).select_from(journal).where(journal.c.alarm_id == alarm_id)
        )
        files = await s.scalar(
            select(func.count()).select_from(attachment).where(attachment.c.alarm_id == alarm_id)
        )
    return int(journals or 0), int(files or 0)


async def test_feedback_attachments_are_limited_and_a_refusal_writes_nothing(
    city_run: CityRun, harness: Harness
) -> None:
    h = harness
    alarm = next(
        a
        for a in city_run.alarms
        if a["rule_code"] == "R5" and a["enterprise_id"] == city_run.city.enterprise("r5_pos").id
    )
    firm = h.headers(Role.ENTERPRISE_USER, enterprises=(alarm["enterprise_id"],))
    path = f"/alarms/{alarm['id']}/feedback"
    before = await _written(h, alarm["id"])
    many = [("files", (f"p{i}.png", PNG, "image/png")) for i in range(3)]
    r = await h.client.post(path, data={"text": "三张照片"}, files=many, headers=firm)
    assert r.status_code == 422 and "at most 2 attachments" in r.json()["detail"], r.text
    big = [("files", ("big.png", PNG + b"\x00" * (64 * 1024), "image/png"))]
    r = await h.client.post(path, data={"text": "大文件"}, files=big, headers=firm)
    assert r.status_code == 413 and "exceeds 65536 bytes" in r.json()["detail"], r.text
    announced = {**firm, "Content-Type": "multipart/form-data; boundary=x"}
    r = await h.client.post(path, content=b"--x\r\n" + b"0" * (1024 * 1024), headers=announced)
    assert r.status_code == 413, "a body larger than the limits allow is refused unread"
    r = await h.client.post(path, json={"text": "不是表单"}, headers=firm)
    assert r.status_code == 415
    assert await _written(h, alarm["id"]) == before, "nothing written on a refusal"
    two = [("files", (f"ok{i}.png", PNG, "image/png")) for i in range(2)]
    r = await h.client.post(
        path, data={"text": "两张照片", "cause": "检修"}, files=two, headers=firm
    )
    assert r.status_code == 200 and len(r.json()["attachments"]) == 2, r.text
    assert await _written(h, alarm["id"]) == (before[0] + 1, before[1] + 2)


async def test_excel_exports_are_capped(city_run: CityRun, harness: Harness) -> None:
    h = harness  # its settings cap exports at 10 rows
    city = h.headers(Role.CITY_SUPERVISOR)
    r = await h.client.get("/alarms/export.xlsx", headers=city)
    assert r.status_code == 422, r.text
    problem: dict[str, Any] = r.json()
    assert problem["type"].endswith("export-too-large") and "at most 10" in problem["detail"]
    r = await h.client.get("/alarms/export.xlsx", params={"rule": "R2"}, headers=city)
    assert r.status_code == 200 and r.content[:2] == b"PK"
