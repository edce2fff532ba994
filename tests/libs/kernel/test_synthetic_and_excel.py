"""Synthetic device passwords and the Excel helpers."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

from ecowatt_kernel.excel import (
    CellError,
    Column,
    errors_to_xlsx,
    load_workbook_bytes,
    read_sheet,
    rows_to_xlsx,
)
from ecowatt_kernel.synthetic import device_password


def test_device_password_follows_the_documented_derivation() -> None:
    mn = "0123456789ABCDEF01234567"
    digest = hmac.new(b"ecowatt-synthetic-city:42", mn.encode(), hashlib.sha256).digest()
    expected = str(int.from_bytes(digest[:8], "big") % 1_000_000).zfill(6)
    assert device_password(42, mn) == expected
    assert len(device_password(7, mn)) == 6 and device_password(7, mn).isdigit()
    assert device_password(42, mn) != device_password(43, mn)


def test_rows_round_trip_with_chinese_or_english_headers() -> None:
    columns = [Column("name", "名称", required=True), Column("kw", "功率"), Column("at", "时间")]
    at = datetime(2024, 6, 30, 8, 0, tzinfo=UTC)
    data = rows_to_xlsx(
        columns, [{"name": "甲", "kw": 1.5, "at": at}, {"name": " 乙 ", "kw": None}], title="表"
    )
    parsed = read_sheet(load_workbook_bytes(data), "表", columns)
    assert parsed.errors == []
    assert [(r.row, r.values["name"], r.values["kw"]) for r in parsed.rows] == [
        (2, "甲", 1.5),
        (3, "乙", None),
    ]
    assert parsed.rows[0].values["at"] == datetime(2024, 6, 30, 8, 0)
    english = rows_to_xlsx([Column("name", "name"), Column("kw", "kw")], [{"name": "丙", "kw": 2}])
    assert read_sheet(load_workbook_bytes(english), "数据", columns).rows[0].values == {
        "name": "丙",
        "kw": 2,
    }


def test_missing_required_column_and_error_report() -> None:
    data = rows_to_xlsx([Column("kw", "功率")], [{"kw": 1}], title="表")
    parsed = read_sheet(load_workbook_bytes(data), "表", [Column("name", "名称", required=True)])
    assert parsed.errors == [CellError("表", 1, "名称", "缺少必填列“名称”")]
    report = load_workbook_bytes(errors_to_xlsx([CellError("企业", 3, "区县代码", "不是区县代码")]))
    rows = list(report["导入错误"].iter_rows(values_only=True))
    assert rows == [("工作表", "行号", "列", "错误信息"), ("企业", 3, "区县代码", "不是区县代码")]
