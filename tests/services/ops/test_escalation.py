"""Escalation timing with an injectable clock (no sleeps): a new incident is announced, a
warning goes out once 75 % of a clock's allowance is used, a breach notice once the deadline
passes, each exactly once, to the contacts who want it and the signed webhook; responding
stops the response clock; a level change moves the deadlines and warns again. A request's
working-time deadline escalates the same way. Real PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from ecowatt_kernel.identity import Role
from ecowatt_kernel.notify import sign_body
from ecowatt_ops.escalation.service import Notifier, run_escalations
from ecowatt_ops.settings import OpsSettings

from tests.services.ops.conftest import Desk, bearer

pytestmark = pytest.mark.integration

SECRET = "webhook-secret-for-tests"


class Hook:
    """The receiving end of the desk's webhook (an external system), recording requests."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.transport = httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        assert request.headers["X-EcoWatt-Signature"] == sign_body(SECRET, request.content)
        self.received.append(json.loads(request.content))
        return httpx.Response(204)


async def escalate(desk: Desk, notifier: Notifier, at: datetime) -> list[tuple[str, str, str]]:
    desk.clock.now = at
    done = await run_escalations(
        db=desk.context.database,
        notifier=notifier,
        settings=desk.runtime.settings,
        now=at,
    )
    return [(e.number, e.clock, e.stage) for e in done]


@pytest.fixture(scope="module")
async def escalating(desk: Desk) -> tuple[Desk, Notifier, Hook]:
    hook = Hook()
    settings: OpsSettings = desk.runtime.settings
    notifier = Notifier(
        sms=desk.runtime.notifier.sms,  # the log gateway (no provider configured)
        webhook_urls=["https://im.example.gov.cn/hooks/ops"],
        webhook_secret=SECRET,
        timeout_s=settings.ops_notify_timeout_s,
        transport=hook.transport,
    )
    editor = bearer(Role.OM_OPERATOR)
    for contact in (
        {"name": "值班工程师", "phone": "13800138000", "events": ["incident_opened", "warning"]},
        {"name": "运维经理", "phone": "13900139000", "events": ["breached"], "levels": ["major"]},
        {
            "name": "只管非常严重",
            "phone": "13700137000",
            "events": ["breached"],
            "levels": ["critical"],
        },
    ):
        response = await desk.client.post("/contacts", json=contact, headers=editor)
        assert response.status_code == 201, response.text
    return desk, notifier, hook


async def test_incident_clocks_escalate_once_per_stage(
    escalating: tuple[Desk, Notifier, Hook],
) -> None:
    desk, notifier, hook = escalating
    om = bearer(Role.OM_OPERATOR)
    opened_at = desk.clock.now = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)
    response = await desk.client.post(
        "/incidents",
        json={"title": "报警推送延迟", "level": "major", "affected_function": "报警"},
        headers=bearer(Role.CITY_SUPERVISOR),
    )
    assert response.status_code == 201, response.text
    incident = response.json()
    number, incident_id = incident["number"], incident["id"]

    # announced at once, and only once
    assert await escalate(desk, notifier, opened_at) == [(number, "response", "opened")]
    assert await escalate(desk, notifier, opened_at + timedelta(seconds=30)) == []
    # response: 30 minutes, warning at 22.5
    assert await escalate(desk, notifier, opened_at + timedelta(minutes=22)) == []
    assert await escalate(desk, notifier, opened_at + timedelta(minutes=23)) == [
        (number, "response", "warning")
    ]
    assert await escalate(desk, notifier, opened_at + timedelta(minutes=29)) == []
    assert await escalate(desk, notifier, opened_at + timedelta(minutes=31)) == [
        (number, "response", "breached")
    ]
    assert await escalate(desk, notifier, opened_at + timedelta(minutes=45)) == []

    # the response stops that clock; resolution (24 h) warns at 18 h, breaches at 24 h
    desk.clock.now = opened_at + timedelta(minutes=50)
    assert (
        await desk.client.post(f"/incidents/{incident_id}/respond", json={}, headers=om)
    ).status_code == 200
    assert await escalate(desk, notifier, opened_at + timedelta(hours=17, minutes=59)) == []
    assert await escalate(desk, notifier, opened_at + timedelta(hours=18)) == [
        (number, "resolution", "warning")
    ]
    # raised to 非常严重 (not hardware: 40 minutes from opening, long past): breached at once
    desk.clock.now = opened_at + timedelta(hours=19)
    response = await desk.client.patch(
        f"/incidents/{incident_id}",
        json={"level": "critical", "reason": "全市报警中断"},
        headers=om,
    )
    assert response.status_code == 200, response.text
    assert response.json()["resolution_clock"]["status"] == "overdue"
    assert await escalate(desk, notifier, opened_at + timedelta(hours=19)) == [
        (number, "resolution", "breached")
    ]
    # resolved: nothing more
    desk.clock.now = opened_at + timedelta(hours=20)
    response = await desk.client.post(
        f"/incidents/{incident_id}/resolve", json={"text": "扩容推送队列"}, headers=om
    )
    assert response.json()["resolution_clock"]["status"] == "missed"
    assert await escalate(desk, notifier, opened_at + timedelta(hours=30)) == []

    detail = (await desk.client.get(f"/incidents/{incident_id}", headers=om)).json()
    escalated = [e["text"] for e in detail["timeline"] if e["kind"] == "escalated"]
    assert len(escalated) == 4
    assert "即将超出响应时限" in escalated[0] and "已超出响应时限" in escalated[1]

    # who heard what: the webhook everything, the duty engineer announcements and warnings,
    # the manager (严重 only) the response breach; the critical-only contact the breach
    # after the level became 非常严重
    log = (
        await desk.client.get(
            "/notifications", params={"subject_id": incident_id, "page_size": 100}, headers=om
        )
    ).json()["items"]
    by_event: dict[str, set[str]] = {}
    for entry in log:
        by_event.setdefault(entry["event"], set()).add(entry["recipient"])
    hook_host = "im.example.gov.cn"
    assert by_event["incident_opened"] == {"138****8000", hook_host}
    assert by_event["warning"] == {"138****8000", hook_host}
    assert by_event["breached"] == {"139****9000", "137****7000", hook_host}
    assert all(e["outcome"] in ("sent", "logged") for e in log)
    mine = [h for h in hook.received if h["subject_id"] == incident_id]
    assert [(h["clock"], h["stage"]) for h in mine] == [
        ("response", "opened"),
        ("response", "warning"),
        ("response", "breached"),
        ("resolution", "warning"),
        ("resolution", "breached"),
    ]
    assert mine[0]["number"] == number and mine[0]["event"] == "incident_opened"


async def test_a_request_escalates_on_working_time(
    escalating: tuple[Desk, Notifier, Hook],
) -> None:
    desk, notifier, hook = escalating
    # Friday 4 December 2026, 17:50 local: a question, answered by Monday 09:20
    received = desk.clock.now = datetime(2026, 12, 4, 9, 50, tzinfo=UTC)
    response = await desk.client.post(
        "/requests",
        json={"kind": "question", "title": "如何导出本月报警统计？"},
        headers=bearer(Role.ENTERPRISE_USER, enterprises=("ent-001",)),
    )
    assert response.status_code == 201, response.text
    request = response.json()
    assert request["clock"]["due_at"] == "2026-12-07T01:20:00Z"  # Monday 09:20 local
    number = request["number"]
    assert await escalate(desk, notifier, received) == [(number, "request", "opened")]
    # 75 % of 30 working minutes = 22.5: Monday 09:12:30; nothing over the weekend
    assert await escalate(desk, notifier, datetime(2026, 12, 6, 12, tzinfo=UTC)) == []
    assert await escalate(desk, notifier, datetime(2026, 12, 7, 1, 13, tzinfo=UTC)) == [
        (number, "request", "warning")
    ]
    assert await escalate(desk, notifier, datetime(2026, 12, 7, 1, 21, tzinfo=UTC)) == [
        (number, "request", "breached")
    ]
    events = [h["event"] for h in hook.received if h["subject_id"] == request["id"]]
    assert events == ["request_submitted", "warning", "breached"]


async def test_a_failing_webhook_is_logged_and_does_not_stop_the_others(
    escalating: tuple[Desk, Notifier, Hook],
) -> None:
    desk, notifier, _ = escalating
    broken = Notifier(
        sms=notifier.sms,
        webhook_urls=["https://down.example.gov.cn/hook"],
        webhook_secret=None,
        timeout_s=1,
        transport=httpx.MockTransport(lambda request: httpx.Response(503)),
    )
    at = desk.clock.now = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)
    response = await desk.client.post(
        "/incidents", json={"title": "日报生成失败", "level": "minor"}, headers=bearer(Role.ADMIN)
    )
    assert response.status_code == 201
    assert len(await escalate(desk, broken, at)) == 1
    log = (
        await desk.client.get(
            "/notifications",
            params={"subject_id": response.json()["id"]},
            headers=bearer(Role.ADMIN),
        )
    ).json()["items"]
    outcomes = {(e["recipient"], e["outcome"]) for e in log}
    assert outcomes == {("down.example.gov.cn", "failed"), ("138****8000", "logged")}
    export = await desk.client.get("/notifications.xlsx", headers=bearer(Role.ADMIN))
    assert export.status_code == 200 and export.content[:2] == b"PK"
