"""Excel: template, idempotent all-or-nothing import with a Chinese error report, exports."""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import pytest
from ecowatt_kernel.identity import Role
from openpyxl import Workbook, load_workbook

from .conftest import CITY, Registry, credit_code, token, wait_for

pytestmark = pytest.mark.integration
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CODE = credit_code("91610112MA6U0B1A0")


def workbook(sheets: dict[str, list[list[Any]]]) -> bytes:
    """A workbook written by hand, the way a person fills the template."""
    book = Workbook()
    book.remove(book.active)  # type: ignore[arg-type]
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def archive(**changes: Any) -> dict[str, list[list[Any]]]:
    sheets: dict[str, list[list[Any]]] = {
        "企业": [
            [
                "企业编号*",
                "企业名称*",
                "统一社会信用代码",
                "区县代码*",
                "管理片区",
                "行业代码",
                "绩效分级",
                "联系人",
            ],
            [
                "E1",
                "西安甲涂装有限公司",
                CODE,
                "610112",
                "经开区",
                "3360",
                "B",
                "王伟/13800000000/环保负责人",
            ],
            ["E2", "西安乙铸造有限公司", None, "610116", None, "3391", "未分级", None],
        ],
        "设施": [
            ["设施编号", "企业编号", "设施类别", "设施名称", "额定功率(kW)"],
            ["F1", "E1", "产污设施", "喷涂线", 55],
            ["F2", "E1", "治污设施", "活性炭吸附", 30],
        ],
        "数采仪": [["MN", "企业编号", "设备密码"], ["AABBCCDDEEFF001122334455", "E1", "112233"]],
        "监测点位": [
            [
                "点位编号",
                "企业编号",
                "点位名称",
                "点位类型",
                "设施编号",
                "MN",
                "回路号",
                "额定功率(kW)",
                "启停阈值(kW)",
                "联网时间",
            ],
            [
                "P1",
                "E1",
                "总电",
                "总电",
                None,
                "AABBCCDDEEFF001122334455",
                1,
                100,
                20,
                "2024-06-30 08:00:00",
            ],
            ["P2", "E1", "主风机", "治污", "F2", "AABBCCDDEEFF001122334455", 2, 30, 3, None],
        ],
        "产治关系": [
            ["关系编号", "企业编号", "产污设施编号", "治污设施编号", "联动方式"],
            ["G1", "E1", "F1", "F2", "全部"],
        ],
    }
    return sheets | changes


async def upload(
    registry: Registry, data: bytes, headers: Mapping[str, str] = CITY, **params: Any
) -> Any:
    return await registry.client.post(
        "/import", files={"file": ("a.xlsx", data, XLSX)}, params=params, headers=headers
    )


async def test_import_is_idempotent(registry: Registry) -> None:
    data = workbook(archive())
    first = await upload(registry, data)
    assert first.status_code == 200, first.text
    sheets = first.json()["sheets"]
    assert sheets["企业"]["created"] == 2 and sheets["监测点位"]["created"] == 2
    assert sheets["产治关系"]["created"] == 1 and first.json()["errors"] == []
    point = (await registry.client.get("/points/P1", headers=CITY)).json()
    assert point["commissioned_at"] == "2024-06-30T00:00:00Z", "local time (UTC+8) stored as UTC"
    assert (await registry.client.get("/enterprises/E1", headers=CITY)).json()["zone"] == "XA-JK"
    await wait_for(lambda: len(registry.changes()) == 8)
    history_before = (await registry.client.get("/history", headers=CITY)).json()["total"]

    second = await upload(registry, data)
    assert second.status_code == 200
    counts = second.json()["sheets"]
    assert all(c["created"] == 0 and c["updated"] == 0 for c in counts.values()), counts
    assert counts["企业"]["unchanged"] == 2 and counts["数采仪"]["unchanged"] == 1
    import asyncio

    await asyncio.sleep(0.3)
    assert len(registry.changes()) == 8, "nothing published the second time"
    assert (await registry.client.get("/history", headers=CITY)).json()["total"] == history_before
    assert (await registry.client.get("/enterprises/E1", headers=CITY)).json()["revision"] == 1


async def test_one_bad_cell_rejects_the_workbook_with_a_chinese_report(registry: Registry) -> None:
    bad = archive()
    bad["企业"] = [
        *bad["企业"],
        [
            "E3",
            "西安丙公司",
            CODE[:17] + ("1" if CODE[17] != "1" else "2"),
            "610100",
            None,
            "99",
            None,
            None,
        ],
    ]
    bad["监测点位"] = [
        *bad["监测点位"],
        ["P3", "E1", "水泵", "治污", "F1", "AABBCCDDEEFF001122334455", 2, 5, None, None],
    ]
    response = await upload(registry, workbook(bad))
    assert response.status_code == 422
    body = response.json()
    assert body["applied"] is False
    errors = {(e["sheet"], e["row"], e["column"]): e["message"] for e in body["errors"]}
    assert "校验位错误" in errors[("企业", 4, "统一社会信用代码")]
    assert "区县级行政区划代码" in errors[("企业", 4, "区县代码")]
    assert "不是 GB/T 4754-2017 行业代码" in errors[("企业", 4, "行业代码")]
    assert (await registry.client.get("/enterprises", headers=CITY)).json()["total"] == 0, (
        "nothing written"
    )
    # Cross-sheet rules are reported too once the cells are valid.
    bad["企业"] = bad["企业"][:3]
    response = await upload(registry, workbook(bad))
    errors = {(e["sheet"], e["row"], e["column"]): e["message"] for e in response.json()["errors"]}
    assert errors[("监测点位", 4, "设施编号")] == "点位类型与设施类别不符"
    assert "已被点位“P2”占用" in errors[("监测点位", 4, "回路号")]
    report = await upload(registry, workbook(bad), report="xlsx")
    rows = list(load_workbook(io.BytesIO(report.content))["导入错误"].iter_rows(values_only=True))
    assert rows[0] == ("工作表", "行号", "列", "错误信息")
    assert ("监测点位", 4, "设施编号", "点位类型与设施类别不符") in rows


async def test_partial_mode_skips_bad_rows_and_their_dependents(registry: Registry) -> None:
    bad = archive()
    bad["设施"] = [*bad["设施"], ["F9", "E9", "治污设施", "孤儿设施", 10]]
    bad["企业"] = [*bad["企业"], ["E9", "坏企业", None, "999999", None, None, None, None]]
    response = await upload(registry, workbook(bad), mode="partial")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["applied"] is True
    assert body["sheets"]["企业"]["created"] == 2 and body["sheets"]["企业"]["rejected"] == 1
    assert body["sheets"]["设施"]["created"] == 2 and body["sheets"]["设施"]["rejected"] == 1
    assert (await registry.client.get("/facilities/F9", headers=CITY)).status_code == 404


async def test_import_respects_the_callers_scope(registry: Registry) -> None:
    officer = token(Role.DISTRICT_OFFICER, districts=("610112",))
    response = await upload(registry, workbook(archive()), headers=officer)
    assert response.status_code == 422
    assert any("不在您的数据范围内" in e["message"] for e in response.json()["errors"])


async def test_export_round_trip_and_filtered_lists(registry: Registry) -> None:
    await upload(registry, workbook(archive()))
    exported = await registry.client.get("/export/archive.xlsx", headers=CITY)
    assert exported.status_code == 200 and exported.headers["content-type"] == XLSX
    book = load_workbook(io.BytesIO(exported.content))
    assert book.sheetnames == ["企业", "生产线", "设施", "数采仪", "监测点位", "产治关系"]
    header = [c.value for c in book["企业"][1]]
    assert header[:4] == ["企业编号*", "企业名称*", "统一社会信用代码", "区县代码*"]
    assert "设备密码" in [c.value for c in book["数采仪"][1]]
    assert all(row[-1] is None for row in book["数采仪"].iter_rows(min_row=2, values_only=True)), (
        "no passwords"
    )
    again = await upload(registry, exported.content)
    assert again.status_code == 200, again.text
    counts = again.json()["sheets"]
    assert all(c["created"] == 0 and c["updated"] == 0 for c in counts.values()), counts
    listed = await registry.client.get(
        "/points.xlsx", params={"district": "610112", "sort": "-circuit"}, headers=CITY
    )
    rows = list(load_workbook(io.BytesIO(listed.content)).active.iter_rows(values_only=True))
    assert [r[0] for r in rows[1:]] == ["P2", "P1"]
    none = await registry.client.get(
        "/enterprises.xlsx", params={"district": "610113"}, headers=CITY
    )
    assert len(list(load_workbook(io.BytesIO(none.content)).active.iter_rows())) == 1


async def test_template_lists_every_sheet_and_instructions(registry: Registry) -> None:
    response = await registry.client.get("/import/template", headers=CITY)
    book = load_workbook(io.BytesIO(response.content))
    assert book.sheetnames == ["企业", "生产线", "设施", "数采仪", "监测点位", "产治关系", "说明"]
    notes = list(book["说明"].iter_rows(values_only=True))
    assert ("监测点位", "点位类型", "point_type", "是") in [r[:4] for r in notes]


async def test_row_level_rules_get_chinese_messages_on_their_column(registry: Registry) -> None:
    bad = archive()
    bad["产治关系"] = [
        [*bad["产治关系"][0], "生效日期", "失效日期"],
        ["G1", "E1", "F1", "F2", "全部", "2025-02-01", "2025-01-01"],
        ["G2", "E1", "F1、F2", "F2", "任一", None, None],
    ]
    bad["监测点位"] = [
        *bad["监测点位"],
        ["P9", "E1", "风机", "治污", None, None, None, 5, None, None],
    ]
    bad["设施"] = [*bad["设施"], ["F3", "E1", "其他设施", "锅炉", -1]]
    response = await upload(registry, workbook(bad))
    errors = {(e["sheet"], e["row"], e["column"]): e["message"] for e in response.json()["errors"]}
    assert errors[("产治关系", 2, "失效日期")] == "失效日期不能早于生效日期"
    assert errors[("产治关系", 3, "治污设施编号")] == "同一设施不能既是产污设施又是治污设施"
    assert errors[("监测点位", 4, "设施编号")] == "点位类型需要填写设施编号"
    assert errors[("设施", 4, "设施类别")].startswith("“其他设施”不是有效值")
    assert errors[("设施", 4, "额定功率(kW)")] == "必须大于 0"
    assert len(errors) == 5, errors
