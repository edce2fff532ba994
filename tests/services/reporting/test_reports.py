"""Reports: a generated monthly report whose numbers match the database and whose PDF
renders with the totals in its text; progress, inputs version, subscriptions, schedule."""

from __future__ import annotations

import asyncio
import io
import json
import threading
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from city import SmallCity, local, today
from conftest import Harness
from ecowatt_kernel.excel import load_workbook_bytes
from ecowatt_kernel.identity import Role
from ecowatt_kernel.notify import SIGNATURE_HEADER, verify_signature
from ecowatt_reporting.reports.fonts import FontMissingError, find_font
from pypdf import PdfReader

# Month M: two calendar months before this one (never the month of the statistics tests).
FIRST = (today().replace(day=1) - timedelta(days=1)).replace(day=1)
MONTH = (FIRST - timedelta(days=1)).replace(day=1)
PLAN = {"T1": 10.0, "P2": 5.0, "P3": 4.0, "C3": 1.0}  # kWh per hourly sample
DAYS = (3, 4, 5)
ENERGY = 24 * len(DAYS) * sum(PLAN.values())  # 24 × 3 × 20 = 1,440 kWh


class RecordingSms:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def send(self, phone: str, text: str) -> str:
        self.sent.append((phone, text))
        return "ok"


class _Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.received.append({"body": body, "signature": self.headers.get(SIGNATURE_HEADER)})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture(scope="module")
def webhook() -> Any:
    received: list[dict[str, Any]] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Hook", (_Hook,), {"received": received}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/reports", received
    server.shutdown()


@pytest.fixture(scope="module")
async def month_data(harness: Harness, city: SmallCity) -> None:
    h = harness
    readings = [
        city.reading(point, local(MONTH.replace(day=d), hour, 30), power=kwh, energy=kwh)
        for point, kwh in PLAN.items()
        for d in DAYS
        for hour in range(24)
    ]
    await h.publish(readings, h.settings.reporting_points_topic)
    alarms = [
        city.alarm("M1", "E1", "R1", local(MONTH.replace(day=10), 9), level=3),
        city.alarm("M2", "E3", "R2", local(MONTH.replace(day=12), 10)),
    ]
    await h.publish(alarms, h.settings.reporting_alarms_topic)
    await h.wait_rows(
        "SELECT count(*) FROM point_sample WHERE point_id = ANY(CAST(:ids AS text[])) "
        "AND data_time >= :s AND data_time < :e",
        len(readings),
        ids=[city.e(p) for p in PLAN],
        s=local(MONTH),
        e=local(FIRST),
    )
    await h.wait_rows(
        "SELECT count(*) FROM alarm_record WHERE alarm_id = ANY(CAST(:ids AS text[]))",
        2,
        ids=[a.alarm_id for a in alarms],
    )


async def _wait_done(h: Harness, report_id: str, headers: dict[str, str]) -> dict[str, Any]:
    seen: list[int] = []
    for _ in range(600):
        r = await h.client.get(f"/reports/{report_id}", headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        seen.append(body["progress"])
        if body["status"] in ("done", "failed"):
            assert seen == sorted(seen), "progress never goes back"
            return body  # type: ignore[no-any-return]
        await asyncio.sleep(0.1)
    raise AssertionError("report not generated in time")


async def test_monthly_report_matches_database_and_renders(
    harness: Harness, city: SmallCity, month_data: None, webhook: Any
) -> None:
    h = harness
    supervisor = h.headers(Role.CITY_SUPERVISOR, subject="boss")
    url, received = webhook
    sms = RecordingSms()
    h.runtime.reports.sms = sms
    for subscription in (
        {"kind": "monthly", "recipient_kind": "role", "recipient": "city_supervisor"},
        {"kind": "monthly", "channel": "webhook", "target": url},
        {"kind": "all", "channel": "sms", "target": "13800138000"},
    ):
        r = await h.client.post("/subscriptions", json=subscription, headers=supervisor)
        assert r.status_code == 201, r.text

    r = await h.client.post(
        "/reports", json={"kind": "monthly", "day": MONTH.replace(day=15).isoformat()},
        headers=supervisor,
    )  # fmt: skip
    assert r.status_code == 202, r.text
    report_id = r.json()["id"]
    assert r.headers["location"].endswith(f"/reports/{report_id}")
    body = await _wait_done(h, report_id, supervisor)
    assert body["status"] == "done", body["error"]
    assert (body["period_start"], body["period_end"]) == (MONTH.isoformat(), FIRST.isoformat())
    assert body["progress"] == 100 and body["provisional"] is False
    assert body["inputs_version"] and body["inputs"]["definition"] == "monthly@1"
    assert body["stale"] is False

    # The numbers match the database: energy straight from the raw samples, alarms counted.
    raw_energy = await h.scalar(
        "SELECT sum(energy_kwh) FROM point_sample WHERE data_time >= :s AND data_time < :e "
        "AND point_id = ANY(CAST(:ids AS text[]))",
        s=local(MONTH),
        e=local(FIRST),
        ids=[city.e(p) for p in PLAN],
    )
    alarms = await h.scalar(
        "SELECT count(*) FROM alarm_record WHERE opened_at >= :s AND opened_at < :e "
        "AND NOT suppressed",
        s=local(MONTH),
        e=local(FIRST),
    )
    summary = body["summary"]
    assert raw_energy == ENERGY
    assert summary["energy_kwh"] == ENERGY
    assert summary["alarms"] == alarms == 2
    assert summary["serious_alarms"] == 1

    pdf = await h.client.get(f"/reports/{report_id}/pdf", headers=supervisor)
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    reader = PdfReader(io.BytesIO(pdf.content))
    assert len(reader.pages) >= 2
    text = "".join(page.extract_text() for page in reader.pages)
    assert f"{ENERGY:,.1f}" in text  # 1,440.0 kWh
    assert "共产生报警 2 起" in text
    assert "月报" in text and "雁塔区" in text and "长安区" in text
    assert "甲涂装有限公司" in text

    xlsx = await h.client.get(f"/reports/{report_id}/xlsx", headers=supervisor)
    workbook = load_workbook_bytes(xlsx.content)
    assert {"概况", "报警-规则", "用电-区县", "企业明细"} <= set(workbook.sheetnames)
    detail = {row[0]: row for row in workbook["企业明细"].iter_rows(min_row=2, values_only=True)}
    assert detail["甲涂装有限公司"][7] == 720.0
    assert detail["丙化工有限公司"][7] == 360.0

    # Deliveries: the role's inbox, a signed webhook, an SMS — once each.
    r = await h.client.get("/reports/inbox", headers=h.headers(Role.CITY_SUPERVISOR, subject="x"))
    assert report_id in [item["report"]["id"] for item in r.json()["items"]]
    await h.wait_for(lambda: received)
    notice = received[0]
    assert verify_signature("test-secret", notice["body"], notice["signature"])
    payload = json.loads(notice["body"])
    assert payload["report"]["id"] == report_id
    assert payload["links"]["pdf"].startswith("https://ecowatt.example/api/reporting/reports/")
    assert sms.sent and sms.sent[0][0] == "13800138000" and "报警 2 起" in sms.sent[0][1]
    assert await h.runtime.reports.deliver(report_id) == 0

    # Late data for the month make the stored report stale; it can be generated again.
    late = city.reading("T1", local(MONTH.replace(day=20), 10, 30), power=1.0, energy=1.0)
    await h.publish([late], h.settings.reporting_points_topic)
    await h.wait_rows(
        "SELECT count(*) FROM point_sample WHERE point_id = :p AND data_time = :t",
        1,
        p=late.point_id,
        t=late.data_time,
    )
    r = await h.client.get(f"/reports/{report_id}", headers=supervisor)
    assert r.json()["stale"] is True


async def test_report_scope_and_validation(harness: Harness, month_data: None) -> None:
    h = harness
    officer = h.headers(Role.DISTRICT_OFFICER, districts=["610113"])
    day = MONTH.replace(day=4).isoformat()
    r = await h.client.post("/reports", json={"kind": "daily", "day": day}, headers=officer)
    assert r.status_code == 403
    r = await h.client.post(
        "/reports", json={"kind": "daily", "day": day, "district_code": "610116"}, headers=officer
    )
    assert r.status_code == 403
    r = await h.client.post(
        "/reports", json={"kind": "daily", "day": day, "district_code": "610113"}, headers=officer
    )
    assert r.status_code == 202, r.text
    own = await _wait_done(h, r.json()["id"], officer)
    assert own["status"] == "done" and own["summary"]["energy_kwh"] == 240.0 + 120.0
    listed = await h.client.get("/reports", headers=officer)
    kinds = {(i["district_code"], i["kind"]) for i in listed.json()["items"]}
    assert kinds == {("610113", "daily")}, "city reports stay invisible to a district"
    future = (today() + timedelta(days=2)).isoformat()
    r = await h.client.post(
        "/reports", json={"kind": "daily", "day": future}, headers=h.headers(Role.CITY_SUPERVISOR)
    )
    assert r.status_code == 422
    r = await h.client.get("/reports", headers=h.headers(Role.ENTERPRISE_USER, enterprises=["x"]))
    assert r.status_code == 403
    r = await h.client.get("/report-definitions", headers=officer)
    assert [d["kind"] for d in r.json()] == ["daily", "weekly", "monthly"]


async def test_schedule_closes_days_weeks_and_months(harness: Harness, month_data: None) -> None:
    h = harness
    provisional = await h.runtime.reports.refresh_today()
    assert await h.runtime.reports.last_scheduled_day() is None, "today closes nothing"
    last = FIRST - timedelta(days=1)  # the month's last day
    ids = await h.runtime.reports.close_day(last)
    kinds = ["daily", "monthly"] + (["weekly"] if last.weekday() == 6 else [])
    r = await h.client.get("/reports", params={"page_size": 100}, headers=h.headers(Role.ADMIN))
    made = {i["id"]: i for i in r.json()["items"]}
    assert sorted(made[str(i)]["kind"] for i in ids) == sorted(kinds)
    assert all(made[str(i)]["trigger"] == "schedule" for i in ids)
    assert all(made[str(i)]["status"] == "done" for i in ids)
    assert await h.runtime.reports.last_scheduled_day() == last
    today_report = (
        await h.client.get(f"/reports/{provisional}", headers=h.headers(Role.ADMIN))
    ).json()
    assert (
        today_report["provisional"] is True and today_report["period_start"] == today().isoformat()
    )


def test_font_missing_is_explained(tmp_path: Path) -> None:
    assert find_font().is_file()  # `make fonts` installed one
    with pytest.raises(FontMissingError, match="does not exist"):
        find_font(tmp_path / "none.ttf")


def test_periods() -> None:
    from ecowatt_reporting.statistics.models import Period

    month = Period.of("month", date(2026, 3, 15))
    assert (month.start, month.end, month.previous().start) == (
        date(2026, 3, 1),
        date(2026, 4, 1),
        date(2026, 2, 1),
    )
    week = Period.of("week", date(2026, 12, 6))  # a Sunday
    assert (week.start, week.end) == (date(2026, 11, 30), date(2026, 12, 7))
    assert week.previous() == type(week)(date(2026, 11, 23), date(2026, 11, 30), "week")
