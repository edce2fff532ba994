"""The emergency reduction list: edits make versions (with history and differences), the
archive and conflicts are checked, scope and roles hold, Excel goes out and comes back, and
a workbook with any problem is refused row by row in Chinese with nothing written."""

from __future__ import annotations

import io
from typing import Any

import pytest
from ecowatt_kernel.identity import Role
from openpyxl import load_workbook

from .conftest import Harness, headers, list_workbook, row_of, upload

pytestmark = pytest.mark.integration

CITY = headers(Role.CITY_SUPERVISOR, subject="city-1")


async def _version(h: Harness) -> int:
    r = await h.client.get("/measures/versions", params={"page_size": 1}, headers=CITY)
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    return int(items[0]["version"]) if items else 0


async def _measures(h: Harness, enterprise_id: str, **params: Any) -> list[dict[str, Any]]:
    r = await h.client.get(
        "/measures", params={"enterprise_id": enterprise_id, **params}, headers=CITY
    )
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def test_edits_make_versions_with_history_and_differences(
    harness: Harness, listed: int
) -> None:
    h = harness
    body = {
        "enterprise_id": "CPT-M01",
        "level": "yellow",
        "action": "LIMIT",
        "reduction_pct": 20,
        "ramp_min": 90,
        "legal_text": "黄色预警期间限产 20%。",
        "reason": "新增",
    }
    r = await h.client.post("/measures", json=body, headers=CITY)
    assert r.status_code == 201, r.text
    created = r.json()
    mid, v1 = created["measure_id"], created["version_from"]
    assert created["target_ids"] == ["CPT-M01"] and created["district_code"] == "610113"

    # The same values again: no change, no version.
    r = await h.client.patch(f"/measures/{mid}", json={"reduction_pct": 20}, headers=CITY)
    assert r.status_code == 200 and r.json()["version_from"] == v1
    r = await h.client.patch(
        f"/measures/{mid}", json={"reduction_pct": 25, "reason": "收紧"}, headers=CITY
    )
    assert r.status_code == 200, r.text
    v2 = r.json()["version_from"]
    assert v2 > v1 and r.json()["reduction_pct"] == 25

    r = await h.client.get(f"/measures/{mid}/history", headers=CITY)
    history = r.json()
    assert [m["reduction_pct"] for m in history] == [20, 25]
    assert history[0]["version_to"] == v2 and history[1]["version_to"] is None

    r = await h.client.get(f"/measures/versions/{v2}/changes", headers=CITY)
    [change] = [c for c in r.json() if c["measure_id"] == mid]
    assert change["change"] == "updated"
    assert (change["before"]["reduction_pct"], change["after"]["reduction_pct"]) == (20, 25)
    # The list as of v1 still has 20 %.
    old = await _measures(h, "CPT-M01", version=v1)
    assert [m["reduction_pct"] for m in old if m["measure_id"] == mid] == [20]

    r = await h.client.delete(f"/measures/{mid}", params={"reason": "撤销"}, headers=CITY)
    assert r.status_code == 204
    assert await _measures(h, "CPT-M01", level="yellow") == []
    r = await h.client.get(f"/measures/versions/{v2 + 1}/changes", headers=CITY)
    assert [c["change"] for c in r.json() if c["measure_id"] == mid] == ["deleted"]
    r = await h.client.get("/measures/versions", headers=CITY)
    newest = r.json()["items"][0]
    assert newest["actor"] == "city-1" and newest["reason"] == "撤销" and newest["deleted"] == 1
    await h.relay_drained()
    audits = [
        a for a in h.of(h.settings.control_plan_audit_topic) if a.resource == f"measure:{mid}"
    ]
    assert [a.action for a in audits][:3] == [
        "control_plan.measure.create",
        "control_plan.measure.update",
        "control_plan.measure.delete",
    ]


async def test_field_archive_and_conflict_rules(harness: Harness, listed: int) -> None:
    h = harness
    bad = [
        ({"action": "LIMIT"}, "reduction_pct"),  # LIMIT needs one of the percentages
        ({"action": "LIMIT", "reduction_pct": 10, "allowed_load_pct": 50}, "reduction_pct"),
        ({"action": "OFFPEAK"}, "windows"),
        ({"action": "EXEMPT"}, "exempt_reason"),
        ({"action": "STOP", "windows": [{"start": "25:00", "end": "06:00"}]}, "windows"),
        ({"action": "STOP", "target_kind": "facility"}, "target_ids"),
    ]
    before = await _version(h)
    for fields, _ in bad:
        body = {"enterprise_id": "CPT-M01", "level": "yellow"} | fields
        r = await h.client.post("/measures", json=body, headers=CITY)
        assert r.status_code == 422, (fields, r.text)
    # Archive: a control facility cannot be stopped; an unknown target is refused.
    for targets in (["CPT-E01-CF1"], ["NOPE"]):
        r = await h.client.post(
            "/measures",
            json={
                "enterprise_id": "CPT-M01",
                "level": "yellow",
                "action": "STOP",
                "target_kind": "facility",
                "target_ids": targets,
            },
            headers=CITY,
        )
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["loc"] == ["body", "target_ids"]
    # EXEMPT excludes any other measure at the same level.
    r = await h.client.post(
        "/measures",
        json={
            "enterprise_id": "CPT-M02",
            "level": "yellow",
            "action": "EXEMPT",
            "exempt_reason": "民生保障",
        },
        headers=CITY,
    )
    assert r.status_code == 201, r.text
    r = await h.client.post(
        "/measures",
        json={"enterprise_id": "CPT-M02", "level": "yellow", "action": "STOP"},
        headers=CITY,
    )
    assert r.status_code == 409, r.text
    assert await _version(h) == before + 1, "only the valid EXEMPT made a version"


async def test_roles_and_scope(harness: Harness, listed: int) -> None:
    h = harness
    body = {"enterprise_id": "CPT-M01", "level": "red", "action": "STOP"}
    firm = headers(Role.ENTERPRISE_USER, enterprises=("CPT-E01",))
    r = await h.client.post("/measures", json=body, headers=firm)
    assert r.status_code == 403
    foreign = headers(Role.DISTRICT_OFFICER, districts=("610112",))
    r = await h.client.post("/measures", json=body, headers=foreign)
    assert r.status_code == 403, "CPT-M01 is in 610113"
    own = headers(Role.DISTRICT_OFFICER, districts=("610113",), subject="yt-1")
    r = await h.client.post("/measures", json=body, headers=own)
    assert r.status_code == 201, r.text
    # Reads are filtered on the server, whatever the query asks for.
    r = await h.client.get("/measures", params={"page_size": 500}, headers=firm)
    assert {m["enterprise_id"] for m in r.json()["items"]} == {"CPT-E01"}
    r = await h.client.get(
        "/measures", params={"enterprise_id": "CPT-E03", "page_size": 500}, headers=firm
    )
    assert r.json()["items"] == []
    r = await h.client.get("/measures", params={"page_size": 500}, headers=foreign)
    assert {m["district_code"] for m in r.json()["items"]} == {"610112"}
    r = await h.client.get(f"/measures/{r.json()['items'][0]['measure_id']}", headers=firm)
    assert r.status_code == 404
    r = await h.client.get("/measures", headers={})
    assert r.status_code == 401


async def test_excel_round_trip_changes_nothing(harness: Harness, listed: int) -> None:
    h = harness
    r = await h.client.get("/measures/export.xlsx", headers=CITY)
    assert r.status_code == 200
    book = load_workbook(io.BytesIO(r.content))
    assert book.sheetnames == ["黄色预警", "橙色预警", "红色预警", "说明"]
    header = [c.value for c in book["橙色预警"][1]]
    assert header[:3] == ["措施编号", "企业编号*", "企业名称"]
    orange = list(book["橙色预警"].iter_rows(min_row=2, values_only=True))
    assert any(row[1] == "CPT-E06" and row[10] == "11:00-12:00、13:00-14:00" for row in orange)
    before = await _version(h)
    r = await upload(h, r.content, CITY)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["version"] is None and report["applied"]
    assert report["sheets"]["橙色预警"]["unchanged"] == len(orange)
    assert await _version(h) == before


async def test_a_bad_workbook_is_refused_row_by_row_and_writes_nothing(
    harness: Harness, listed: int
) -> None:
    h = harness
    good = row_of("CPT-M02", {"action": "STOP", "target_kind": "enterprise"})
    rows = [
        good,
        row_of("CPT-NOPE", {"action": "STOP", "target_kind": "enterprise"}),
        row_of("CPT-M01", {"action": "LIMIT", "target_kind": "enterprise"}),
        row_of("CPT-M01", {"action": "LIMIT", "target_kind": "enterprise", "reduction_pct": 130}),
        [
            *row_of(
                "CPT-M01", {"action": "OFFPEAK", "target_kind": "enterprise"} | {"windows": []}
            )[:7],
            "8点到9点",
            60,
            None,
            None,
        ],
        row_of(
            "CPT-M01", {"action": "STOP", "target_kind": "facility", "target_ids": ["CPT-E01-PF1"]}
        ),
        ["", "CPT-M01", "工厂", None, "停产", None, None, None, 60, None, None],
        row_of("CPT-M02", {"action": "STOP", "target_kind": "enterprise"}),
    ]
    before = await _version(h)
    data = list_workbook({"黄色预警": rows})
    r = await upload(h, data, CITY, dry_run="false")
    assert r.status_code == 422, r.text
    errors = {(e["row"], e["column"]): e["message"] for e in r.json()["errors"]}
    assert errors[(3, "企业编号")] == "企业“CPT-NOPE”不在档案中"
    assert "须填写“减排比例”或“允许负荷”" in errors[(4, "减排比例(%)")]
    assert "不超过 100" in errors[(5, "减排比例(%)")]
    assert "格式不正确" in errors[(6, "错峰时段")]
    assert "不属于该企业" in errors[(7, "对象编号")]
    assert "不是有效的对象类型" in errors[(8, "对象类型")]
    assert "第 2 行" in errors[(9, "对象编号")], "the same target twice"
    assert all(e["sheet"] == "黄色预警" for e in r.json()["errors"])
    assert not r.json()["applied"]
    assert await _version(h) == before, "nothing is written when any row is wrong"
    assert await _measures(h, "CPT-M02", level="yellow", action="STOP") == []
    # The same report as a workbook (工作表, 行号, 列, 错误信息).
    r = await upload(h, data, CITY, report="xlsx")
    sheet = load_workbook(io.BytesIO(r.content)).active
    assert [c.value for c in sheet[1]] == ["工作表", "行号", "列", "错误信息"]
    assert sheet.max_row - 1 == len(errors)
    # Not a workbook at all.
    r = await upload(h, b"PK\x03\x04 not really", CITY)
    assert r.status_code == 422 and r.json()["type"].endswith("invalid-workbook")


async def test_replace_mode_deletes_what_the_workbook_lacks_in_scope(
    harness: Harness, listed: int
) -> None:
    h = harness
    yt = headers(Role.DISTRICT_OFFICER, districts=("610113",), subject="yt-2")
    data = list_workbook(
        {
            "黄色预警": [
                row_of(
                    "CPT-M01", {"action": "LIMIT", "target_kind": "enterprise", "reduction_pct": 15}
                )
            ]
        }
    )
    r = await upload(h, data, yt, dry_run="true", mode="replace")
    assert r.status_code == 200, r.text
    dry = r.json()
    assert dry["version"] is None and dry["sheets"]["黄色预警"]["created"] == 1
    r = await upload(h, data, yt, mode="replace")
    assert r.status_code == 200, r.text
    # Yellow measures of 610113 that the workbook lacks are gone; 610112's are untouched.
    yellow = (
        await h.client.get("/measures", params={"level": "yellow", "page_size": 500}, headers=CITY)
    ).json()["items"]
    assert {
        (m["enterprise_id"], m["action"]) for m in yellow if m["district_code"] == "610113"
    } == {("CPT-M01", "LIMIT")}
    assert any(m["enterprise_id"] == "CPT-M02" for m in yellow), "outside the officer's scope"
