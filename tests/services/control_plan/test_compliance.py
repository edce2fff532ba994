"""Hourly compliance on the real broker and database: every measure kind on both sides of its
tolerance, cannot-judge cases, the level raised and the order lifted mid-period, provisional
hours, backfilled data judged again, `control.compliance` events, supervision issues and
their workflow, the reports of the period.

What each enterprise does, and what the rules must conclude, is worked out in `city.py`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from ecowatt_kernel.contracts import ComplianceVerdict
from ecowatt_kernel.identity import Role
from openpyxl import load_workbook
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from .city import DAY, TZ, at, local, reading
from .conftest import Harness, headers

pytestmark = pytest.mark.integration

PROPOSER = headers(Role.CITY_SUPERVISOR, subject="city-1")
APPROVER = headers(Role.CITY_SUPERVISOR, subject="city-2")
OPERATOR = headers(Role.OM_OPERATOR, subject="om-1")


@dataclass
class Run:
    alert_id: str
    hours: dict[tuple[str, int], dict[str, Any]]
    provisional: dict[tuple[str, int], dict[str, Any]]
    events_after_provisional: int
    first_pass: dict[str, Any]


async def _decide(h: Harness, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = await h.client.post(path, json=body, headers=PROPOSER)
    assert r.status_code == 201, r.text
    body = r.json()
    if "changes" in body:  # a new order
        alert_id, change_id = body["id"], body["changes"][-1]["id"]
    else:  # an amendment or a lift
        alert_id, change_id = body["alert_id"], body["id"]
    r = await h.client.post(
        f"/alerts/{alert_id}/changes/{change_id}/approve", json={}, headers=APPROVER
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


async def _hours(h: Harness, alert_id: str) -> dict[tuple[str, int], dict[str, Any]]:
    out: dict[tuple[str, int], dict[str, Any]] = {}
    page = 1
    while True:
        r = await h.client.get(
            "/compliance/hours",
            params={"alert_id": alert_id, "page": page, "page_size": 500},
            headers=PROPOSER,
        )
        assert r.status_code == 200, r.text
        for item in r.json()["items"]:
            hour = datetime.fromisoformat(item["hour_start"]).astimezone(TZ).hour
            out[(item["enterprise_id"], hour)] = item
        if page >= r.json()["pages"]:
            return out
        page += 1


def _compliance_events(h: Harness) -> list[ComplianceVerdict]:
    return [
        e
        for e in h.of(h.settings.control_plan_compliance_topic)
        if isinstance(e, ComplianceVerdict)
    ]


@pytest.fixture(scope="module")
async def run(harness: Harness, listed: int) -> Run:
    h = harness
    h.clock.now = at(9)
    issued = await _decide(
        h,
        "/alerts",
        {
            "name": "西安市重污染天气橙色预警",
            "level": "orange",
            "effective_at": at(10).isoformat(),
            "expected_end": at(18).isoformat(),
        },
    )
    alert_id = issued["alert"]["id"]
    h.clock.now = at(13, 30)
    await _decide(
        h,
        f"/alerts/{alert_id}/amend",
        {"level": "red", "effective_at": at(14).isoformat(), "reason": "升级为红色"},
    )
    h.clock.now = at(16)
    await _decide(h, f"/alerts/{alert_id}/lift", {"reason": "解除"})
    await h.record(list(h.city.readings(local(DAY - timedelta(days=3), 0), at(16, 30))))

    h.clock.now = at(15, 40)
    r = await h.client.post("/compliance/run", headers=OPERATOR)
    assert r.status_code == 200, r.text
    await h.relay_drained()
    provisional = {k: v for k, v in (await _hours(h, alert_id)).items() if v["provisional"]}
    events = len(_compliance_events(h))

    h.clock.now = at(17, 30)
    r = await h.client.post("/compliance/run", headers=OPERATOR)
    assert r.status_code == 200, r.text
    await h.relay_drained()
    return Run(alert_id, await _hours(h, alert_id), provisional, events, r.json())


def test_every_enterprise_hour_gets_the_status_the_rules_give(harness: Harness, run: Run) -> None:
    wrong = []
    for e in harness.city.enterprises:
        for hour, status in e.expected.items():
            got = run.hours.get((e.id, hour), {}).get("status")
            if got != status:
                wrong.append((e.id, e.scenario, hour, status, got))
    assert wrong == []
    assert ("CPT-E11", 10) not in run.hours, "nothing to judge: no status"
    assert ("CPT-E02", 10) in run.hours, "KEEP_CONTROL_RUNNING is judged from the start"
    assert not any(h == 16 for _, h in run.hours), "the order was lifted at 16:00"
    assert all(not v["provisional"] for v in run.hours.values())


async def _verdicts(h: Harness, enterprise_id: str, hour: int) -> list[dict[str, Any]]:
    r = await h.client.get(
        "/compliance/verdicts",
        params={
            "enterprise_id": enterprise_id,
            "from": at(hour).isoformat(),
            "to": at(hour + 1).isoformat(),
        },
        headers=PROPOSER,
    )
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def test_verdicts_show_their_numbers(harness: Harness, run: Run) -> None:
    h = harness
    [limit] = [v for v in await _verdicts(h, "CPT-E04", 11) if v["action"] == "LIMIT"]
    assert limit["evidence"]["reduction_pct"] == pytest.approx(26.0)
    assert (limit["baseline_kwh"], limit["actual_kwh"]) == pytest.approx((160.0, 118.4))
    assert limit["evidence"]["baseline_source"] == ["history"]
    [stop] = [v for v in await _verdicts(h, "CPT-E03", 12) if v["action"] == "STOP"]
    assert stop["verdict"] == "non_compliant" and stop["evidence"]["allowed_kwh"] == 8.0
    assert stop["evidence"]["curve_kw"][0] == pytest.approx(8.2)
    [learned] = [v for v in await _verdicts(h, "CPT-E13", 11) if v["action"] == "LIMIT"]
    assert learned["evidence"]["baseline_source"] == ["learned"]
    offline = await _verdicts(h, "CPT-E08", 12)
    assert {v["verdict"] for v in offline} == {"unknown"}
    assert {v["evidence"]["cause"] for v in offline} == {"offline"}
    incomplete = [v for v in await _verdicts(h, "CPT-E09", 11) if v["action"] == "LIMIT"]
    assert incomplete[0]["evidence"]["cause"] == "incomplete" and "80%" in incomplete[0]["reason"]
    [keep] = [v for v in await _verdicts(h, "CPT-E07", 12) if v["action"] == "KEEP_CONTROL_RUNNING"]
    assert keep["verdict"] == "non_compliant" and keep["evidence"]["coverage"] == 0.0
    assert keep["target_id"] == "keep:CPT-E07-G"
    exempt = await _verdicts(h, "CPT-E10", 12)
    assert {v["action"] for v in exempt} == {"KEEP_CONTROL_RUNNING"}, "EXEMPT is not judged"


def test_the_hour_in_progress_is_provisional_and_not_published(harness: Harness, run: Run) -> None:
    assert run.provisional, "15:00-15:40 was judged provisionally"
    assert {hour for _, hour in run.provisional} == {15}
    assert run.provisional[("CPT-E02", 15)]["status"] == "未响应停产"
    early = _compliance_events(harness)[: run.events_after_provisional]
    assert not any(e.hour_start.astimezone(TZ).hour == 15 for e in early)


async def test_final_verdicts_are_published_once(harness: Harness, run: Run) -> None:
    h = harness
    events = _compliance_events(h)
    statuses = [e for e in events if e.action == "ENTERPRISE" and e.alert_id == run.alert_id]
    assert {(e.enterprise_id, e.hour_start.astimezone(TZ).hour) for e in statuses} == set(run.hours)
    e02 = next(e for e in statuses if e.enterprise_id == "CPT-E02" and e.hour_start == at(12))
    assert (e02.status, e02.verdict, e02.district_code) == ("未响应停产", "non_compliant", "610113")
    before = len(events)
    r = await h.client.post("/compliance/run", headers=OPERATOR)
    assert r.status_code == 200 and r.json()["published"] == 0
    await h.relay_drained()
    assert len(_compliance_events(h)) == before


async def test_backfilled_data_is_judged_again(harness: Harness, run: Run) -> None:
    h = harness
    e08 = h.city.enterprise("offline")
    late = [
        reading(e08.id, e08.point(role), at(12) + timedelta(minutes=5 * i), power)
        for i in range(12)
        for role, power in (("P1", 80.0), ("P2", 80.0), ("C1", 24.0), ("T", 194.0))
    ]
    await h.record(late)
    r = await h.client.post("/compliance/run", headers=OPERATOR)
    assert r.status_code == 200 and r.json()["published"] > 0
    await h.relay_drained()
    hours = await _hours(h, run.alert_id)
    assert hours[(e08.id, 12)]["status"] == "未响应停产"
    assert hours[(e08.id, 13)]["status"] == "离线/无法判定"
    latest = [
        e
        for e in _compliance_events(h)
        if e.enterprise_id == e08.id and e.action == "ENTERPRISE" and e.hour_start == at(12)
    ]
    assert [(e.status, e.revision) for e in latest] == [("离线/无法判定", 1), ("未响应停产", 2)]


async def test_violations_become_issues_handled_by_the_district(harness: Harness, run: Run) -> None:
    h = harness
    r = await h.client.get(
        "/issues", params={"alert_id": run.alert_id, "page_size": 500}, headers=PROPOSER
    )
    issues = r.json()["items"]
    e02 = sorted(
        (i for i in issues if i["enterprise_id"] == "CPT-E02"), key=lambda i: i["first_hour"]
    )
    assert [(i["category"], i["hours"]) for i in e02] == [("未响应停产", 3), ("未响应停产", 2)]
    e07 = next(i for i in issues if i["enterprise_id"] == "CPT-E07")
    assert (e07["category"], e07["hours"], e07["state"]) == ("未开启治污设备", 3, "open")
    assert not any(i["enterprise_id"] in ("CPT-E01", "CPT-E10", "CPT-E13") for i in issues)

    issue_id, district = e07["id"], e07["district_code"]
    firm = headers(Role.ENTERPRISE_USER, enterprises=("CPT-E07",), subject="firm-7")
    officer = headers(Role.DISTRICT_OFFICER, districts=(district,), subject="yt-officer")
    foreign = headers(Role.DISTRICT_OFFICER, districts=("610112",), subject="wy-officer")
    r = await h.client.get(f"/issues/{issue_id}", headers=firm)
    detail = r.json()
    assert [j["action"] for j in detail["journal"]] == ["opened", "dispatched"]
    hour = detail["evidence"]["hours"][0]
    assert (
        hour["status"] == "未开启治污设备"
        and hour["verdicts"][0]["action"] == "KEEP_CONTROL_RUNNING"
    )
    r = await h.client.get(f"/issues/{issue_id}/chart.svg", headers=firm)
    assert r.status_code == 200 and r.text.startswith("<svg") and "基线电量" in r.text
    r = await h.client.get(f"/issues/{issue_id}", headers=foreign)
    assert r.status_code == 404
    r = await h.client.get("/issues", params={"page_size": 500}, headers=firm)
    assert {i["enterprise_id"] for i in r.json()["items"]} == {"CPT-E07"}

    r = await h.client.post(f"/issues/{issue_id}/close", json={"text": "x"}, headers=officer)
    assert r.status_code == 409, "closing needs a verification"
    r = await h.client.post(
        f"/issues/{issue_id}/feedback",
        json={"text": "除尘风机故障停机，已抢修恢复", "cause": "equipment_fault"},
        headers=firm,
    )
    assert r.status_code == 200 and r.json()["state"] == "feedback", r.text
    r = await h.client.post(
        f"/issues/{issue_id}/verify", json={"result": "confirmed"}, headers=firm
    )
    assert r.status_code == 403
    r = await h.client.post(
        f"/issues/{issue_id}/verify",
        json={"result": "confirmed", "note": "现场核实"},
        headers=foreign,
    )
    assert r.status_code == 404
    r = await h.client.post(
        f"/issues/{issue_id}/verify",
        json={"result": "confirmed", "note": "现场核实"},
        headers=officer,
    )
    assert r.status_code == 200 and r.json()["verification"] == "confirmed"
    r = await h.client.post(f"/issues/{issue_id}/close", json={"text": "已处罚"}, headers=officer)
    assert r.status_code == 200, r.text
    closed = r.json()
    assert closed["state"] == "closed" and closed["closed_by"] == "yt-officer"
    assert [j["action"] for j in closed["journal"]] == [
        "opened",
        "dispatched",
        "feedback",
        "verify",
        "close",
    ]
    async with h.runtime.database.transaction() as session:
        with pytest.raises(DBAPIError, match="append-only"):
            await session.execute(text("UPDATE control_plan.issue_journal SET text = 'x'"))
    r = await h.client.get(
        "/issues/export.xlsx", params={"alert_id": run.alert_id}, headers=PROPOSER
    )
    sheet = load_workbook(io.BytesIO(r.content)).active
    assert sheet.max_row - 1 == len(issues) and sheet["A1"].value == "问题编号"


async def test_board_and_reports(harness: Harness, run: Run) -> None:
    h = harness
    r = await h.client.get(
        "/compliance/board",
        params={"alert_id": run.alert_id, "hour": at(12).isoformat()},
        headers=PROPOSER,
    )
    board = r.json()
    backfilled = {"CPT-E08": "未响应停产"}  # by test_backfilled_data_is_judged_again
    expected = [
        backfilled.get(e.id, e.expected[12]) for e in h.city.enterprises if 12 in e.expected
    ]
    assert board["totals"] == {s: expected.count(s) for s in board["totals"]}
    firm = headers(Role.ENTERPRISE_USER, enterprises=("CPT-E02",))
    r = await h.client.get("/compliance/board", params={"hour": at(12).isoformat()}, headers=firm)
    assert [e["enterprise_id"] for e in r.json()["enterprises"]] == ["CPT-E02"]

    r = await h.client.get(f"/alerts/{run.alert_id}/reports/launch", headers=PROPOSER)
    launch = r.json()
    listed = {e.id for e in h.city.enterprises if e.orange}
    assert launch["enterprises_total"] >= len(listed)
    yanta = next(d for d in launch["by_district"] if d["key"] == "610113")
    assert yanta["name"] == "雁塔区" and yanta["stop"] >= 3
    grade_a = next(g for g in launch["by_grade"] if g["key"] == "A级")
    assert grade_a["exempt"] == 1

    r = await h.client.get(
        f"/alerts/{run.alert_id}/reports/daily", params={"day": DAY.isoformat()}, headers=PROPOSER
    )
    daily = r.json()
    weiyang = next(d for d in daily["by_district"] if d["district_code"] == "610112")
    # 未央: E03, E04, E05 violated; E08 was backfilled into a violation; E10, E13 complied.
    assert (weiyang["non_compliant"], weiyang["compliant"]) == (4, 2)
    assert daily["top_violators"][0]["enterprise_id"] == "CPT-E02"
    industry = daily["reduction_by_industry"][0]
    assert industry["reduction_kwh"] > 0 and industry["baseline_kwh"] > industry["actual_kwh"]

    r = await h.client.get(f"/alerts/{run.alert_id}/reports/assessment", headers=PROPOSER)
    assessment = r.json()
    review = [e["enterprise_id"] for e in assessment["grade_review"]]
    assert "CPT-E02" in review and "CPT-E07" in review and "CPT-E10" not in review
    assert assessment["issues"]["total"] >= 6 and 0 < assessment["issues"]["feedback_rate"] < 1
    for name, sheet in (
        ("launch", "企业措施"),
        ("daily", "区县执行情况"),
        ("assessment", "建议复核绩效分级"),
    ):
        params = {"day": DAY.isoformat()} if name == "daily" else {}  # only daily has a day
        r = await h.client.get(
            f"/alerts/{run.alert_id}/reports/{name}.xlsx", params=params, headers=PROPOSER
        )
        assert r.status_code == 200, r.text
        assert sheet in load_workbook(io.BytesIO(r.content)).sheetnames
