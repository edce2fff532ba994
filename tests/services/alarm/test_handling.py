"""The handling workflow and the API's role and scope rules, on the city's alarms."""

from __future__ import annotations

import io
from typing import Any

import pytest
from ecowatt_kernel.db import async_url
from ecowatt_kernel.identity import Role
from openpyxl import load_workbook
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from .conftest import CityRun, Harness

pytestmark = pytest.mark.integration

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def _alarm(run: CityRun, scenario: str, rule: str) -> dict[str, Any]:
    enterprise = run.city.enterprise(scenario).id
    return next(
        a for a in run.alarms if a["enterprise_id"] == enterprise and a["rule_code"] == rule
    )


async def test_full_handling_journal_and_role_rules(city_run: CityRun, harness: Harness) -> None:
    h = harness
    alarm = _alarm(city_run, "r1_pos", "R1")
    aid, district, enterprise = alarm["id"], alarm["district_code"], alarm["enterprise_id"]
    other = "610102" if district == "610113" else "610113"
    city = h.headers(Role.CITY_SUPERVISOR, subject="city-1")
    own = h.headers(Role.DISTRICT_OFFICER, districts=(district,), subject="district-1")
    foreign = h.headers(Role.DISTRICT_OFFICER, districts=(other,), subject="district-2")
    firm = h.headers(Role.ENTERPRISE_USER, enterprises=(enterprise,), subject="firm-1")

    r = await h.client.post(f"/alarms/{aid}/dispatch", json={"note": "请核查"}, headers=city)
    assert r.status_code == 200 and r.json()["dispatched_to"] == district, r.text
    r = await h.client.post(f"/alarms/{aid}/dispatch", json={}, headers=own)
    assert r.status_code == 403, "only the city dispatches"

    # The enterprise answers with an attachment; bad attachments are refused.
    r = await h.client.post(
        f"/alarms/{aid}/feedback",
        data={"text": "风机检修，已恢复", "cause": "设备检修"},
        files=[("files", ("photo.png", PNG, "image/png"))],
        headers=firm,
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "replied" and len(r.json()["attachments"]) == 1
    r = await h.client.post(
        f"/alarms/{aid}/feedback",
        data={"text": "x"},
        files=[("files", ("evil.png", b"MZ\x90\x00not a png", "image/png"))],
        headers=firm,
    )
    assert r.status_code == 415, r.text
    r = await h.client.post(
        f"/alarms/{aid}/feedback",
        data={"text": "x"},
        files=[("files", ("big.pdf", b"%PDF-" + b"0" * 70_000, "application/pdf"))],
        headers=firm,
    )
    assert r.status_code == 413, r.text

    # An enterprise user can neither verify nor close; a foreign district sees nothing.
    r = await h.client.post(f"/alarms/{aid}/verify", json={"result": "false_alarm"}, headers=firm)
    assert r.status_code == 403
    r = await h.client.post(f"/alarms/{aid}/close", json={}, headers=firm)
    assert r.status_code == 403
    for method, path, body in (
        ("get", f"/alarms/{aid}", None),
        ("post", f"/alarms/{aid}/verify", {"result": "false_alarm"}),
        ("post", f"/alarms/{aid}/close", {}),
        ("post", f"/alarms/{aid}/comments", {"text": "我来处理"}),
    ):
        r = await h.client.request(method, path, json=body, headers=foreign)
        assert r.status_code == 404, (path, r.status_code)

    r = await h.client.post(f"/alarms/{aid}/close", json={}, headers=own)
    assert r.status_code == 409, "closing needs a verification first"
    r = await h.client.post(
        f"/alarms/{aid}/verify",
        json={"result": "enterprise_problem", "note": "现场核实"},
        headers=own,
    )
    assert r.status_code == 200, r.text
    r = await h.client.post(f"/alarms/{aid}/close", json={"note": "已整改"}, headers=own)
    assert r.status_code == 200, r.text

    r = await h.client.get(f"/alarms/{aid}", headers=firm)
    body = r.json()
    assert body["status"] == "closed" and body["verification"] == "enterprise_problem"
    actions = [(j["action"], j["actor"]) for j in body["journal"]]
    assert actions[-4:] == [
        ("dispatched", "city-1"),
        ("feedback", "firm-1"),
        ("verified", "district-1"),
        ("closed", "district-1"),
    ], actions
    attachment = body["attachments"][0]
    r = await h.client.get(f"/alarms/{aid}/attachments/{attachment['id']}", headers=firm)
    assert r.content == PNG and r.headers["content-type"] == "image/png"

    # The journal is append-only in the database itself.
    engine = create_async_engine(async_url(h.database_url))
    try:
        async with engine.connect() as connection:
            with pytest.raises(DBAPIError, match="append-only"):
                await connection.execute(text("UPDATE alarm.journal SET text = 'x'"))
    finally:
        await engine.dispose()


async def test_scope_filters_lists_and_pages(city_run: CityRun, harness: Harness) -> None:
    h = harness
    enterprise = city_run.city.enterprise("r2_pos")
    firm = h.headers(Role.ENTERPRISE_USER, enterprises=(enterprise.id,))
    r = await h.client.get("/alarms", params={"page_size": 500}, headers=firm)
    assert {a["enterprise_id"] for a in r.json()["items"]} == {enterprise.id}
    district = h.headers(Role.DISTRICT_OFFICER, districts=("610113",))
    r = await h.client.get(
        "/alarms", params={"page_size": 500, "district": "610102"}, headers=district
    )
    assert r.json()["total"] == 0, "a district filter never widens the scope"
    r = await h.client.get("/alarms", params={"page_size": 500}, headers=district)
    assert r.json()["total"] > 0
    assert {a["district_code"] for a in r.json()["items"]} == {"610113"}
    city = h.headers(Role.CITY_SUPERVISOR)
    r = await h.client.get(
        "/alarms", params={"rule": "R4", "page_size": 2, "page": 2}, headers=city
    )
    body = r.json()
    assert body["total"] >= 4 and len(body["items"]) == 2
    assert all(a["rule_code"] == "R4" for a in body["items"])
    r = await h.client.get("/alarms", params={"status": "suppressed", "level": 1}, headers=city)
    assert all(a["status"] == "suppressed" and a["level"] == 1 for a in r.json()["items"])
    r = await h.client.get("/alarms", headers={})
    assert r.status_code == 401


async def test_statistics_and_export(city_run: CityRun, harness: Harness) -> None:
    h = harness
    city = h.headers(Role.CITY_SUPERVISOR)
    total = (await h.client.get("/alarms", params={"page_size": 1}, headers=city)).json()["total"]
    assert total >= len(city_run.alarms)
    for by in ("rule", "district", "industry", "day"):
        r = await h.client.get("/statistics", params={"by": by}, headers=city)
        assert r.status_code == 200, r.text
        assert sum(i["count"] for i in r.json()["items"]) == total, by
    r = await h.client.get("/statistics", params={"by": "rule"}, headers=city)
    by_rule = {i["key"]: i for i in r.json()["items"]}
    assert set(by_rule) == {"R1", "R2", "R3", "R4", "R5", "R6", "R7", "OFFLINE"}
    r = await h.client.get("/alarms/export.xlsx", params={"rule": "R1"}, headers=city)
    assert r.status_code == 200
    sheet = load_workbook(io.BytesIO(r.content)).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][0] == "报警编号" and len(rows) == 1 + by_rule["R1"]["count"]


async def test_filings_need_a_bureau_in_scope(city_run: CityRun, harness: Harness) -> None:
    h = harness
    enterprise = city_run.city.enterprise("healthy")
    other = "610102" if enterprise.district == "610113" else "610113"
    body = {
        "enterprise_id": enterprise.id,
        "reason": "年度检修",
        "starts_at": "2026-12-01T00:00:00+08:00",
        "ends_at": "2026-12-02T00:00:00+08:00",
    }
    r = await h.client.post(
        "/filings", json=body, headers=h.headers(Role.ENTERPRISE_USER, enterprises=("someone",))
    )
    assert r.status_code == 404, "an enterprise files only for itself"
    firm = h.headers(Role.ENTERPRISE_USER, enterprises=(enterprise.id,))
    r = await h.client.post("/filings", json=body, headers=firm)
    assert r.status_code == 201
    filing = r.json()["id"]
    r = await h.client.post(f"/filings/{filing}/approve", json={}, headers=firm)
    assert r.status_code == 403
    r = await h.client.post(
        f"/filings/{filing}/approve",
        json={},
        headers=h.headers(Role.DISTRICT_OFFICER, districts=(other,)),
    )
    assert r.status_code == 404
    r = await h.client.post(
        f"/filings/{filing}/reject",
        json={"note": "材料不全"},
        headers=h.headers(Role.CITY_SUPERVISOR),
    )
    assert r.status_code == 200 and r.json()["status"] == "rejected"


async def test_rules_are_versioned_and_thresholds_explained(
    city_run: CityRun, harness: Harness
) -> None:
    h = harness
    r = await h.client.get(
        "/rules", headers=h.headers(Role.DISTRICT_OFFICER, districts=("610113",))
    )
    assert {x["code"] for x in r.json()["items"]} >= {"R1", "R7", "OFFLINE", "STATE"}
    r = await h.client.put(
        "/rules/R5",
        json={"params": {"confirm_min": 45}, "reason": "试行"},
        headers=h.headers(Role.ENTERPRISE_USER, enterprises=("x",)),
    )
    assert r.status_code == 403
    r = await h.client.put(
        "/rules/R5",
        json={"params": {"bogus": 1}, "reason": "试行"},
        headers=h.headers(Role.CITY_SUPERVISOR),
    )
    assert r.status_code == 422
    r = await h.client.put(
        "/rules/R5",
        json={"params": {"confirm_min": 45}, "reason": "试行"},
        headers=h.headers(Role.CITY_SUPERVISOR),
    )
    assert r.status_code == 200 and r.json()["version"] == 2
    assert h.processor.rules["R5"].version == 2 and h.processor.rules["R5"].p("confirm_min") == 45
    await h.client.put(
        "/rules/R5",
        json={"params": {"confirm_min": 60}, "reason": "恢复"},
        headers=h.headers(Role.CITY_SUPERVISOR),
    )

    enterprise = city_run.city.enterprise("healthy").id
    r = await h.client.post("/learning/run", headers=h.headers(Role.OM_OPERATOR))
    assert r.status_code == 200 and r.json()["updated"] > 0
    r = await h.client.get(
        "/thresholds", params={"enterprise_id": enterprise}, headers=h.headers(Role.CITY_SUPERVISOR)
    )
    points = {p["kind"]: p for p in r.json()["items"]}
    production = points["production"]
    assert production["defaulted"] and "额定功率 100 kW 的 20%" in production["basis"]
    assert production["learned_rated_kw"] == pytest.approx(80, rel=0.08)
    assert production["suggestion"] is None
    r = await h.client.get(
        "/states",
        params={"enterprise_id": enterprise},
        headers=h.headers(Role.ENTERPRISE_USER, enterprises=(enterprise,)),
    )
    assert r.status_code == 200 and r.json()["facilities"]
