"""Support requests through the API: scope (an enterprise user sees only its own
enterprise's requests, a district officer its district's), the workflow and its clock, the
audit events, the Excel export; a calendar change moves the deadlines of open requests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from ecowatt_kernel.excel import load_workbook_bytes
from ecowatt_kernel.identity import Role

from tests.services.ops.conftest import Desk, bearer

pytestmark = pytest.mark.integration

OM = bearer(Role.OM_OPERATOR, subject="om-wang")
ACME = bearer(Role.ENTERPRISE_USER, subject="acme-user", enterprises=("ent-acme",))
ACME_2 = bearer(Role.ENTERPRISE_USER, subject="acme-user-2", enterprises=("ent-acme",))
OTHER = bearer(Role.ENTERPRISE_USER, subject="other-user", enterprises=("ent-other",))
WEIYANG = bearer(Role.DISTRICT_OFFICER, subject="weiyang", districts=("610112",))
BEILIN = bearer(Role.DISTRICT_OFFICER, subject="beilin", districts=("610103",))


async def raise_request(desk: Desk, headers: Any, **body: Any) -> dict[str, Any]:
    response = await desk.client.post("/requests", json=body, headers=headers)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def visible(desk: Desk, headers: Any) -> set[str]:
    response = await desk.client.get("/requests", params={"page_size": 500}, headers=headers)
    assert response.status_code == 200, response.text
    return {r["number"] for r in response.json()["items"]}


async def test_each_caller_sees_only_the_requests_of_its_scope(desk: Desk) -> None:
    desk.clock.now = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)  # Monday 10:00 local
    acme = await raise_request(
        desk, ACME, kind="data_correction", title="治污设施额定功率填错", description="应为 75 kW"
    )
    assert acme["enterprise_id"] == "ent-acme"  # from the user's scope
    assert acme["clock"]["due_at"] == "2026-12-09T02:00:00Z"  # Wednesday 10:00: 2 working days
    other = await raise_request(desk, OTHER, kind="question", title="如何修改联系人手机号")
    district = await raise_request(desk, WEIYANG, kind="account", title="为新同事开通账号")
    assert district["district_code"] == "610112"
    city = await raise_request(
        desk, bearer(Role.CITY_SUPERVISOR), kind="other", title="平台首页加载慢"
    )

    assert await visible(desk, ACME) == {acme["number"]}
    assert await visible(desk, ACME_2) == {acme["number"]}  # the same enterprise
    assert await visible(desk, OTHER) == {other["number"]}
    assert await visible(desk, WEIYANG) == {district["number"]}
    assert await visible(desk, BEILIN) == set()
    everything = {acme["number"], other["number"], district["number"], city["number"]}
    assert everything <= await visible(desk, OM)
    assert everything <= await visible(desk, bearer(Role.AUDITOR))

    # another enterprise's request does not exist for you: read, act, export
    assert (await desk.client.get(f"/requests/{acme['id']}", headers=OTHER)).status_code == 404
    response = await desk.client.post(
        f"/requests/{acme['id']}/comments", json={"text": "看看"}, headers=OTHER
    )
    assert response.status_code == 404
    export = await desk.client.get("/requests.xlsx", headers=OTHER)
    rows = list(load_workbook_bytes(export.content)["服务请求"].iter_rows(values_only=True))
    assert [r[0] for r in rows[1:]] == [other["number"]]

    # a request outside one's scope cannot be raised
    response = await desk.client.post(
        "/requests",
        json={"kind": "question", "title": "x", "enterprise_id": "ent-acme"},
        headers=OTHER,
    )
    assert response.status_code == 403
    response = await desk.client.post(
        "/requests", json={"kind": "question", "title": "x"}, headers=bearer(Role.AUDITOR)
    )
    assert response.status_code == 403


async def test_workflow_clock_and_audit(desk: Desk) -> None:
    desk.clock.now = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)  # Monday 10:00 local
    question = await raise_request(desk, ACME, kind="question", title="报警统计怎么导出")
    request_id = question["id"]
    assert question["clock"]["status"] == "running"
    assert question["sla"] == "30 分钟内答复"

    # the requester cannot answer their own question
    response = await desk.client.post(
        f"/requests/{request_id}/reply", json={"text": "自己答"}, headers=ACME
    )
    assert response.status_code == 403
    desk.clock.advance(minutes=5)
    accepted = await desk.client.post(f"/requests/{request_id}/accept", json={}, headers=OM)
    assert accepted.json()["status"] == "accepted" and accepted.json()["assignee"] == "om-wang"
    desk.clock.advance(minutes=20)
    answered = await desk.client.post(
        f"/requests/{request_id}/reply",
        json={"text": "报警统计页选择月份后点击导出。"},
        headers=OM,
    )
    body = answered.json()
    assert body["status"] == "answered" and body["clock"]["status"] == "met"
    # closing is the requester's (a colleague of the same enterprise may too)
    closed = await desk.client.post(f"/requests/{request_id}/close", headers=ACME_2)
    assert closed.json()["status"] == "closed"
    twice = await desk.client.post(f"/requests/{request_id}/close", headers=ACME)
    assert twice.status_code == 409
    kinds = [e["kind"] for e in closed.json()["timeline"]]
    assert kinds == ["submitted", "accepted", "answered", "closed"]

    # a data correction answered late
    desk.clock.now = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)
    late = await raise_request(desk, ACME, kind="data_correction", title="阈值改为 5 kW")
    desk.clock.now = datetime(2026, 12, 9, 3, 0, tzinfo=UTC)  # Wednesday 11:00, due 10:00
    response = await desk.client.get(f"/requests/{late['id']}", headers=ACME)
    assert response.json()["clock"]["status"] == "overdue"
    overdue = await desk.client.get("/requests", params={"overdue": "true"}, headers=OM)
    assert late["number"] in {r["number"] for r in overdue.json()["items"]}
    done = await desk.client.post(
        f"/requests/{late['id']}/resolve", json={"text": "已在档案中修改"}, headers=OM
    )
    assert done.json()["clock"]["status"] == "missed"

    # only the requester withdraws
    third = await raise_request(desk, ACME, kind="question", title="误提交")
    response = await desk.client.post(f"/requests/{third['id']}/withdraw", headers=ACME_2)
    assert response.status_code == 403
    response = await desk.client.post(f"/requests/{third['id']}/withdraw", headers=ACME)
    assert response.json()["status"] == "withdrawn"

    audits = [(e.action, e.actor) for e in desk.audit_events() if e.resource.startswith("request:")]
    assert ("request.raise", "acme-user") in audits
    assert ("request.accept", "om-wang") in audits
    assert ("request.reply", "om-wang") in audits
    assert ("request.close", "acme-user-2") in audits
    assert ("request.withdraw", "acme-user") in audits


async def test_a_calendar_change_moves_open_deadlines(desk: Desk) -> None:
    # Thursday 31 December 2026, 17:00 local: 2027 is not in the calendar package
    desk.clock.now = datetime(2026, 12, 31, 9, 0, tzinfo=UTC)
    request = await raise_request(
        desk, OM, kind="account", title="开通账号", district_code="610112"
    )
    assert request["calendar_estimated"] is True
    # 1 working day: 1 h on the 31st, 8 h on Friday 1 January (counted as a weekday)
    assert request["clock"]["due_at"] == "2027-01-01T09:00:00Z"
    city = bearer(Role.CITY_SUPERVISOR)
    response = await desk.client.put(
        "/calendar/days/2027-01-01", json={"workday": False, "name": "元旦"}, headers=city
    )
    assert response.status_code == 200, response.text
    moved = (await desk.client.get(f"/requests/{request['id']}", headers=OM)).json()
    assert moved["clock"]["due_at"] == "2027-01-04T09:00:00Z"  # Monday 17:00 local
    assert moved["timeline"][-1]["kind"] == "deadline_changed"
    year = (await desk.client.get("/calendar", params={"year": 2027}, headers=OM)).json()
    assert year["known"] is False
    assert year["special_days"] == [
        {"day": "2027-01-01", "workday": False, "name": "元旦", "source": "override"}
    ]
    # only the bureau sets the calendar the supplier is measured by
    response = await desk.client.put(
        "/calendar/days/2027-01-02", json={"workday": True, "name": "调休"}, headers=OM
    )
    assert response.status_code == 403
    assert (await desk.client.delete("/calendar/days/2027-01-01", headers=city)).status_code == 204
    back = (await desk.client.get(f"/requests/{request['id']}", headers=OM)).json()
    assert back["clock"]["due_at"] == "2027-01-01T09:00:00Z"
