"""Alert orders: approval by a second bureau person, decomposition into `control.tasks` on the
broker, districts, a regional order over a city one (the higher level governs), raising the
level and lifting mid-period, rejection, and every step audited on `audit.events`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from ecowatt_control_plan.tasks import service as tasks
from ecowatt_kernel.contracts import AuditEvent, ControlTaskChanged
from ecowatt_kernel.identity import Role

from .city import TZ
from .conftest import Harness, headers

pytestmark = pytest.mark.integration

PROPOSER = headers(Role.CITY_SUPERVISOR, subject="city-1")
APPROVER = headers(Role.CITY_SUPERVISOR, subject="city-2")


def when(day: int, hour: int, minute: int = 0) -> datetime:
    """December 2026, local time (far from the compliance tests' day)."""
    return datetime(2026, 12, day, hour, minute, tzinfo=TZ).astimezone(UTC)


async def _issue(h: Harness, **body: Any) -> tuple[str, int]:
    r = await h.client.post("/alerts", json=body, headers=PROPOSER)
    assert r.status_code == 201, r.text
    order = r.json()
    assert order["status"] == "pending_approval" and order["pending_changes"] == 1
    return order["id"], order["changes"][0]["id"]


async def _approve(h: Harness, alert_id: str, change_id: int) -> dict[str, Any]:
    r = await h.client.post(
        f"/alerts/{alert_id}/changes/{change_id}/approve", json={"note": "同意"}, headers=APPROVER
    )
    assert r.status_code == 200, r.text
    await h.relay_drained()
    return dict(r.json())


async def _events(h: Harness, alert_id: str, at_least: int) -> list[ControlTaskChanged]:
    topic = h.settings.control_plan_tasks_topic

    def mine() -> list[ControlTaskChanged]:
        return [
            e for e in h.of(topic) if isinstance(e, ControlTaskChanged) and e.alert_id == alert_id
        ]

    await h.wait_for(lambda: len(mine()) >= at_least)
    return mine()


async def _listed(h: Harness, level: str, districts: set[str] | None = None) -> set[str]:
    """Enterprises with measures at `level` in the current list (in `districts`)."""
    r = await h.client.get("/measures", params={"level": level, "page_size": 500}, headers=PROPOSER)
    return {
        m["enterprise_id"]
        for m in r.json()["items"]
        if districts is None or m["district_code"] in districts
    }


async def test_an_order_needs_a_second_bureau_person_and_is_audited(
    harness: Harness, listed: int
) -> None:
    h = harness
    h.clock.now = when(1, 8)
    alert_id, change_id = await _issue(
        h,
        name="测试橙色预警",
        level="orange",
        effective_at=when(1, 10).isoformat(),
        expected_end=when(2, 10).isoformat(),
        districts=["610112"],
        notice="橙色预警，自 10 时起启动 II 级响应。",
    )
    path = f"/alerts/{alert_id}/changes/{change_id}/approve"
    r = await h.client.post(path, json={}, headers=PROPOSER)
    assert r.status_code == 403, "the proposer cannot approve"
    for role in (Role.DISTRICT_OFFICER, Role.ENTERPRISE_USER, Role.OM_OPERATOR):
        r = await h.client.post(path, json={}, headers=headers(role, districts=("610112",)))
        assert r.status_code == 403, role
    expected = await _listed(h, "orange", {"610112"})
    result = await _approve(h, alert_id, change_id)
    assert result["tasks"]["issued"] == len(expected)
    assert result["alert"]["status"] == "scheduled" and result["alert"]["list_version"] >= listed
    events = await _events(h, alert_id, len(expected))
    assert {e.enterprise_id for e in events} == expected
    e05 = next(e for e in events if e.enterprise_id == "CPT-E05")
    assert e05.change == "issued" and e05.level == "orange" and e05.revision == 1
    assert e05.valid_from == when(1, 10) and e05.valid_to == when(2, 10)
    limit = next(m for m in e05.measures if m["action"] == "LIMIT")
    assert limit["target_kind"] == "facility" and limit["target_ids"] == ["CPT-E05-PF1"]
    assert limit["allowed_load_pct"] == 50
    assert datetime.fromisoformat(limit["effective_at"]) == when(1, 11), "after the ramp"
    keep = next(m for m in e05.measures if m["action"] == "KEEP_CONTROL_RUNNING")
    assert datetime.fromisoformat(keep["effective_at"]) == when(1, 10)

    # Each step is on audit.events: the proposal, the refused self-approval, the approval.
    audits = [
        a
        for a in h.of(h.settings.control_plan_audit_topic)
        if isinstance(a, AuditEvent) and a.resource == f"alert:{alert_id}"
    ]
    assert [(a.action, a.outcome, a.actor) for a in audits] == [
        ("control_plan.alert.propose_issue", "success", "city-1"),
        ("control_plan.alert.approve", "denied", "city-1"),
        ("control_plan.alert.approve", "success", "city-2"),
    ]
    # Approving twice is refused.
    r = await h.client.post(path, json={}, headers=APPROVER)
    assert r.status_code == 409
    # Decomposing again changes nothing.
    async with h.runtime.database.transaction() as session:
        again = await tasks.decompose(
            session, view=h.runtime.view, now=h.clock.now, topic="unused", reason="test"
        )
    assert again.issued == again.changed == again.ended == 0

    # The enterprise sees its own task; a district officer their district's.
    firm = headers(Role.ENTERPRISE_USER, enterprises=("CPT-E05",))
    r = await h.client.get("/tasks", params={"alert_id": alert_id}, headers=firm)
    assert [t["enterprise_id"] for t in r.json()["items"]] == ["CPT-E05"]
    other = headers(Role.DISTRICT_OFFICER, districts=("610113",))
    r = await h.client.get("/tasks", params={"alert_id": alert_id}, headers=other)
    assert r.json()["total"] == 0
    r = await h.client.get(f"/tasks/{e05.task_id}", headers=other)
    assert r.status_code == 404
    r = await h.client.get(f"/tasks/{e05.task_id}", headers=firm)
    assert r.status_code == 200 and len(r.json()["history"]) == 1


async def test_raise_then_lift_mid_period(harness: Harness, listed: int) -> None:
    h = harness
    h.clock.now = when(5, 8)
    alert_id, change_id = await _issue(
        h,
        name="城市橙色预警",
        level="orange",
        effective_at=when(5, 10).isoformat(),
        expected_end=when(6, 20).isoformat(),
    )
    await _approve(h, alert_id, change_id)
    orange_listed = await _listed(h, "orange")
    red_listed = await _listed(h, "red")
    await _events(h, alert_id, len(orange_listed))

    h.clock.now = when(5, 13, 30)
    r = await h.client.post(
        f"/alerts/{alert_id}/amend",
        json={"level": "red", "effective_at": when(5, 14).isoformat(), "reason": "污染加重"},
        headers=PROPOSER,
    )
    assert r.status_code == 201, r.text
    r2 = await h.client.post(f"/alerts/{alert_id}/lift", json={"reason": "并发"}, headers=PROPOSER)
    assert r2.status_code == 409, "one pending change at a time"
    result = await _approve(h, alert_id, r.json()["id"])
    counts = result["tasks"]
    assert (counts["issued"], counts["changed"], counts["ended"]) == (
        len(red_listed),
        0,
        len(orange_listed),
    ), "other orders' tasks are left as they are"
    events = await _events(h, alert_id, 2 * len(orange_listed) + len(red_listed))
    e04 = [e for e in events if e.enterprise_id == "CPT-E04"]
    orange, red = e04[1], e04[2]
    assert (orange.change, orange.level, orange.valid_to) == ("ended", "orange", when(5, 14))
    assert orange.revision == 2 and orange.task_id == e04[0].task_id
    assert (red.change, red.level, red.valid_from) == ("issued", "red", when(5, 14))
    stop = next(m for m in red.measures if m["action"] == "STOP")
    assert datetime.fromisoformat(stop["effective_at"]) == when(5, 15)
    # E07 keeps the same LIMIT at red: it keeps being checked from its first effective time.
    e07 = [e for e in events if e.enterprise_id == "CPT-E07"]
    limit = next(m for m in e07[-1].measures if m["action"] == "LIMIT")
    assert datetime.fromisoformat(limit["effective_at"]) == when(5, 11)

    h.clock.now = when(5, 18)
    r = await h.client.post(
        f"/alerts/{alert_id}/lift", json={"reason": "空气质量好转"}, headers=PROPOSER
    )
    assert r.status_code == 201, r.text
    result = await _approve(h, alert_id, r.json()["id"])
    assert result["tasks"]["ended"] == len(red_listed)
    assert result["alert"]["status"] == "lifted"
    events = await _events(h, alert_id, 2 * len(orange_listed) + 2 * len(red_listed))
    last = [e for e in events if e.enterprise_id == "CPT-E04"][-1]
    assert (last.change, last.valid_to, last.level) == ("ended", when(5, 18), "red")
    r = await h.client.post(
        f"/alerts/{alert_id}/amend", json={"level": "yellow", "reason": "x"}, headers=PROPOSER
    )
    assert r.status_code == 409, "a lifted order cannot be amended"


async def test_a_regional_red_order_over_a_city_orange_one(harness: Harness, listed: int) -> None:
    h = harness
    h.clock.now = when(10, 6)
    city_id, change = await _issue(
        h,
        name="市级橙色",
        level="orange",
        effective_at=when(10, 8).isoformat(),
        expected_end=when(11, 8).isoformat(),
    )
    await _approve(h, city_id, change)
    regional_id, change = await _issue(
        h,
        name="区域红色",
        origin="regional",
        level="red",
        districts=["610113"],
        effective_at=when(10, 12).isoformat(),
        expected_end=when(10, 20).isoformat(),
    )
    yanta = await _listed(h, "red", {"610113"})
    weiyang = await _listed(h, "orange", {"610112"})
    assert yanta <= await _listed(h, "orange", {"610113"})
    await _approve(h, regional_id, change)
    regional = await _events(h, regional_id, len(yanta))
    assert {e.enterprise_id for e in regional} == yanta
    assert all(e.level == "red" and e.valid_from == when(10, 12) for e in regional)
    city = await _events(h, city_id, len(yanta) + len(weiyang) + len(yanta))
    cut = [e for e in city if e.change == "ended"]
    assert {e.enterprise_id for e in cut} == yanta
    assert all(e.valid_to == when(10, 12) for e in cut)
    # After the regional order, the city's orange governs 雁塔 again, in a task of its own.
    back = [e for e in city if e.change == "issued" and e.valid_from == when(10, 20)]
    assert {e.enterprise_id for e in back} == yanta
    assert all(e.level == "orange" and e.valid_to == when(11, 8) for e in back)
    r = await h.client.get(
        "/tasks", params={"at": when(10, 15).isoformat(), "page_size": 500}, headers=PROPOSER
    )
    levels = {t["enterprise_id"]: t["level"] for t in r.json()["items"]}
    assert {levels[e] for e in yanta} == {"red"} and {levels[e] for e in weiyang} == {"orange"}


async def test_rejected_and_withdrawn_orders_issue_nothing(harness: Harness, listed: int) -> None:
    h = harness
    h.clock.now = when(15, 8)
    alert_id, change = await _issue(
        h,
        name="误发",
        level="yellow",
        effective_at=when(15, 10).isoformat(),
        expected_end=when(15, 20).isoformat(),
    )
    r = await h.client.post(
        f"/alerts/{alert_id}/changes/{change}/reject", json={"note": "级别有误"}, headers=APPROVER
    )
    assert r.status_code == 200, r.text
    assert r.json()["alert"]["status"] == "rejected" and r.json()["tasks"] == {}
    r = await h.client.get("/tasks", params={"alert_id": alert_id}, headers=PROPOSER)
    assert r.json()["total"] == 0
    alert_id, change = await _issue(
        h,
        name="撤回",
        level="yellow",
        effective_at=when(15, 10).isoformat(),
    )
    r = await h.client.post(f"/alerts/{alert_id}/changes/{change}/withdraw", headers=APPROVER)
    assert r.status_code == 403, "only the proposer withdraws"
    r = await h.client.post(f"/alerts/{alert_id}/changes/{change}/withdraw", headers=PROPOSER)
    assert r.status_code == 200 and r.json()["status"] == "rejected"
    r = await h.client.post(
        "/alerts",
        json={
            "name": "x",
            "level": "red",
            "effective_at": when(15, 10).isoformat(),
            "expected_end": when(15, 9).isoformat(),
        },
        headers=PROPOSER,
    )
    assert r.status_code == 422
    r = await h.client.post(
        "/alerts",
        json={"name": "x", "level": "red", "effective_at": when(15, 10).isoformat()},
        headers=headers(Role.DISTRICT_OFFICER, districts=("610113",)),
    )
    assert r.status_code == 403, "orders are issued by the city"
    r = await h.client.get(
        "/alerts", headers=headers(Role.ENTERPRISE_USER, enterprises=("CPT-E01",))
    )
    assert r.status_code == 200 and r.json()["total"] >= 4
