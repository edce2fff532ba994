"""The abnormal-event report: its figures equal what SQL over the stored incidents and
requests says (counted independently here), its tracking list holds exactly the incidents
open at the period's end, the Excel and PDF files carry the same numbers, a filed report does
not change afterwards, and the monthly job files each month once."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from ecowatt_kernel.excel import load_workbook_bytes
from ecowatt_kernel.identity import Role
from ecowatt_ops.reports.service import store_monthly_report
from pypdf import PdfReader
from sqlalchemy import text

from tests.services.ops.conftest import Desk, bearer

pytestmark = pytest.mark.integration

OM = bearer(Role.OM_OPERATOR)
CITY = bearer(Role.CITY_SUPERVISOR)
NOV = datetime(2026, 10, 31, 16, 0, tzinfo=UTC)  # 1 November 00:00 local
DEC = datetime(2026, 11, 30, 16, 0, tzinfo=UTC)  # 1 December 00:00 local


async def story(desk: Desk) -> None:
    """Incidents and requests around November 2026, each step at its own moment."""

    async def at(moment: datetime, method: str, path: str, body: Any = None, who: Any = OM) -> Any:
        desk.clock.now = moment
        response = await desk.client.request(method, path, json=body, headers=who)
        assert response.status_code in (200, 201), (path, response.text)
        return response.json()

    async def opened(moment: datetime, title: str, level: str, function: str) -> str:
        body = {"title": title, "level": level, "affected_function": function, "impact": "影响"}
        return str((await at(moment, "POST", "/incidents", body))["id"])

    h = timedelta(hours=1)
    m = timedelta(minutes=1)
    # October, still open in November: on November's tracking list, not an event of it
    old = await opened(NOV - 3 * h, "十月遗留：报表偶发超时", "minor", "报表")
    await at(NOV - 2 * h, "POST", f"/incidents/{old}/respond", {})
    # 1: major, answered in 10 min, resolved in 5 h, verified in November
    a = await opened(NOV + 24 * h, "告警服务不可达", "major", "报警")
    await at(NOV + 24 * h + 10 * m, "POST", f"/incidents/{a}/respond", {})
    await at(NOV + 29 * h, "POST", f"/incidents/{a}/resolve", {"text": "重启"})
    await at(NOV + 30 * h, "POST", f"/incidents/{a}/verify", {}, CITY)
    # 2: critical, answered late (12 min > 5), resolved in 35 min (< 40), not verified
    b = await opened(NOV + 100 * h, "数据接入中断", "critical", "数据接入")
    await at(NOV + 100 * h + 12 * m, "POST", f"/incidents/{b}/respond", {})
    await at(NOV + 100 * h + 35 * m, "POST", f"/incidents/{b}/resolve", {"text": "切换主机"})
    # 3: moderate, resolved after 13 h (> 12), verified
    c = await opened(NOV + 200 * h, "消费者组积压", "moderate", "报警")
    await at(NOV + 200 * h + 5 * m, "POST", f"/incidents/{c}/workaround", {"text": "扩容"})
    await at(NOV + 213 * h, "POST", f"/incidents/{c}/resolve", {"text": "调优"})
    await at(NOV + 214 * h, "POST", f"/incidents/{c}/verify", {}, CITY)
    await at(NOV + 215 * h, "PUT", f"/incidents/{c}/review", {"text": "分区数不足，已扩容。"})
    # 4: minor, opened late November, never answered: open at the end of the month
    d = await opened(DEC - 2 * h, "首页统计图偶发空白", "minor", "报表")
    # 5: cancelled (a false alarm): counted apart
    e = await opened(NOV + 300 * h, "误报", "minor", "其他")
    await at(NOV + 300 * h + 3 * m, "POST", f"/incidents/{e}/cancel", {"text": "误报"})
    # December: not November's
    await opened(DEC + 5 * h, "十二月的故障", "major", "报警")
    assert d
    # requests of November: one question answered in time, one correction late
    enterprise = bearer(Role.ENTERPRISE_USER, enterprises=("ent-1",))
    q = await at(NOV + 50 * h, "POST", "/requests", {"kind": "question", "title": "问"}, enterprise)
    await at(NOV + 50 * h + 10 * m, "POST", f"/requests/{q['id']}/reply", {"text": "答"})
    r = await at(
        NOV + 50 * h, "POST", "/requests", {"kind": "data_correction", "title": "改"}, enterprise
    )
    await at(NOV + 150 * h, "POST", f"/requests/{r['id']}/resolve", {"text": "已改"})


async def counted_by_sql(desk: Desk) -> dict[str, Any]:
    """November's figures straight from the tables."""
    window = {"start": NOV, "end": DEC}
    async with desk.context.database.session() as session:

        async def one(sql: str) -> Any:
            return (await session.execute(text(sql), window)).scalar()

        base = "FROM ops.incident WHERE opened_at >= :start AND opened_at < :end"
        live = f"{base} AND status <> 'cancelled'"
        return {
            "events": await one(f"SELECT count(*) {live}"),
            "cancelled": await one(f"SELECT count(*) {base} AND status = 'cancelled'"),
            "resolved": await one(f"SELECT count(*) {live} AND resolved_at IS NOT NULL"),
            "response_met": await one(
                f"SELECT count(*) {live} AND coalesce(responded_at, resolved_at) <= response_due"
            ),
            "resolution_met": await one(
                f"SELECT count(*) {live} AND resolved_at <= resolution_due"
            ),
            "resolution_missed": await one(
                f"SELECT count(*) {live} AND coalesce(resolved_at, now()) > resolution_due"
                " AND resolved_at IS NOT NULL"
            ),
            "duration_min": await one(
                "SELECT round(sum(extract(epoch FROM resolved_at - opened_at))::numeric / 60, 1)"
                f" {live} AND resolved_at IS NOT NULL"
            ),
            "tracking": set(
                (
                    await session.execute(
                        text(
                            "SELECT number FROM ops.incident WHERE opened_at < :end"
                            " AND (verified_at IS NULL OR verified_at >= :end)"
                            " AND (cancelled_at IS NULL OR cancelled_at >= :end)"
                        ),
                        window,
                    )
                ).scalars()
            ),
            "requests": dict(
                (
                    await session.execute(
                        text(
                            "SELECT kind, count(*) FROM ops.support_request"
                            " WHERE received_at >= :start AND received_at < :end GROUP BY kind"
                        ),
                        window,
                    )
                ).all()
            ),
        }


async def test_report_figures_match_the_database(desk: Desk) -> None:
    await story(desk)
    desk.clock.now = DEC + timedelta(days=2)
    response = await desk.client.get(
        "/reports/abnormal-events", params={"month": "2026-11"}, headers=CITY
    )
    assert response.status_code == 200, response.text
    report = response.json()
    f = report["figures"]
    sql = await counted_by_sql(desk)
    assert f["events"] == sql["events"] == 4
    assert f["cancelled"] == sql["cancelled"] == 1
    assert f["resolved"] == sql["resolved"] == 3
    assert f["response_met"] == sql["response_met"]
    # the unanswered minor incident's response is overdue: a miss as of now
    assert f["response_missed"] == sql["events"] - sql["response_met"]
    assert f["resolution_met"] == sql["resolution_met"]
    assert f["resolution_missed"] == sql["resolution_missed"] + 1  # + the open, overdue one
    assert f["duration_min"] == float(sql["duration_min"])
    assert {e["number"] for e in report["tracking"]} == sql["tracking"]
    assert f["open_at_end"] == len(sql["tracking"]) == 3  # October's, the critical, the minor
    levels = {x["level"]: x for x in f["by_level"]}
    assert levels["critical"]["response_missed"] == 1 and levels["critical"]["resolution_met"] == 1
    assert levels["moderate"]["resolution_missed"] == 1
    requests = {r["kind"]: r for r in report["requests"]}
    assert {k: v["received"] for k, v in requests.items() if v["received"]} == sql["requests"]
    assert requests["question"]["met"] == 1 and requests["data_correction"]["missed"] == 1
    assert report["title"] == "系统运行异常事件报告（2026年11月）"
    reviewed = [e for e in report["events"] if e["review"]]
    assert [e["title"] for e in reviewed] == ["消费者组积压"]

    # the same numbers in the Excel workbook and the PDF
    xlsx = await desk.client.get(
        "/reports/abnormal-events.xlsx", params={"month": "2026-11"}, headers=CITY
    )
    book = load_workbook_bytes(xlsx.content)
    events = list(book["异常事件"].iter_rows(values_only=True))
    assert len(events) - 1 == f["events"]
    assert len(list(book["跟踪列表"].iter_rows(values_only=True))) - 1 == f["open_at_end"]
    summary = dict(book["汇总"].iter_rows(values_only=True, min_row=2))
    assert summary["异常事件"] == f"{f['events']} 起"
    pdf = await desk.client.get(
        "/reports/abnormal-events.pdf", params={"month": "2026-11"}, headers=CITY
    )
    assert pdf.headers["content-type"] == "application/pdf"
    text_ = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.content)).pages)
    assert f"本期共发生系统运行异常事件 {f['events']} 起" in text_
    for event in report["tracking"]:
        assert event["number"] in text_


async def test_a_filed_report_stays_as_filed(desk: Desk) -> None:
    desk.clock.now = DEC + timedelta(days=3)
    filed = await desk.client.post("/reports", json={"month": "2026-11"}, headers=CITY)
    assert filed.status_code == 201, filed.text
    report_id = filed.json()["id"]
    before = (await desk.client.get(f"/reports/{report_id}", headers=CITY)).json()
    # an incident of November is verified afterwards: the live report changes, the filed not
    open_ones = (
        await desk.client.get("/incidents", params={"status": "resolved"}, headers=CITY)
    ).json()["items"]
    (critical,) = [i for i in open_ones if i["level"] == "critical"]
    await desk.client.post(f"/incidents/{critical['id']}/verify", json={}, headers=CITY)
    after = (await desk.client.get(f"/reports/{report_id}", headers=CITY)).json()
    assert after == before
    live = (
        await desk.client.get("/reports/abnormal-events", params={"month": "2026-11"}, headers=CITY)
    ).json()
    assert live["figures"]["open_at_end"] == before["figures"]["open_at_end"]  # verified in Dec
    listed = (await desk.client.get("/reports", headers=CITY)).json()["items"]
    assert [r["id"] for r in listed] == [report_id] and listed[0]["events"] == 4
    files = [
        await desk.client.get(f"/reports/{report_id}/report.{kind}", headers=CITY)
        for kind in ("xlsx", "pdf")
    ]
    assert [r.status_code for r in files] == [200, 200]
    # a period and a month at once, or neither: a clear 422
    bad = await desk.client.get("/reports/abnormal-events", headers=CITY)
    assert bad.status_code == 422
    enterprise = bearer(Role.ENTERPRISE_USER, enterprises=("ent-1",))
    assert (await desk.client.get("/reports", headers=enterprise)).status_code == 403


async def test_the_monthly_job_files_each_month_once(desk: Desk) -> None:
    run = {
        "db": desk.context.database,
        "settings": desk.runtime.settings,
        "notifier": desk.runtime.notifier,
        "now": DEC + timedelta(minutes=15),
    }
    assert await store_monthly_report(day=date(2026, 11, 29), **run) is None  # not month end
    first = await store_monthly_report(day=date(2026, 11, 30), **run)
    assert first is not None
    assert await store_monthly_report(day=date(2026, 11, 30), **run) is None
    monthly = (await desk.client.get("/reports", params={"kind": "monthly"}, headers=CITY)).json()[
        "items"
    ]
    assert [r["id"] for r in monthly] == [first]
    assert monthly[0]["title"] == "系统运行异常事件报告（2026年11月）"
