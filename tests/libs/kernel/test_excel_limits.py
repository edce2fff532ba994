"""Workbooks from outside are parsed safely and exports are bounded (`ecowatt_kernel.excel`).

The hostile workbooks are real .xlsx files (written by openpyxl) whose XML was then edited
the way an attacker would: an entity-expansion bomb, an external entity reaching for a local
file, and a zip that unpacks far beyond its size.
"""

from __future__ import annotations

import io
import zipfile

import pytest
from ecowatt_kernel.excel import (
    Column,
    ExportTooLarge,
    Sheet,
    WorkbookError,
    check_export_size,
    load_workbook_bytes,
    read_sheet,
    rows_to_xlsx,
    write_workbook,
)

COLUMNS = [Column("name", "企业名称", required=True), Column("code", "区县代码")]

BOMB_DOCTYPE = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<!DOCTYPE lolz [<!ENTITY lol "lol">'
    '<!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    '<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">'
    '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>\n'
)
EXTERNAL_DOCTYPE = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
)


def _plain() -> bytes:
    return rows_to_xlsx(COLUMNS, [{"name": "西安甲涂装有限公司", "code": "610112"}], title="企业")


def _rewrite(data: bytes, member: str, edit: str, entity: str) -> bytes:
    """`data` with `member`'s XML declaration replaced by `edit` and its first cell text
    replaced by a reference to `entity`."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            content = source.read(info.filename)
            if info.filename == member:
                text = content.decode("utf-8")
                body = text[text.index("?>") + 2 :] if text.startswith("<?xml") else text
                body = body.replace("西安甲涂装有限公司", f"&{entity};", 1)
                content = (edit + body).encode("utf-8")
            target.writestr(info, content)
    return out.getvalue()


def _sheet_member(data: bytes) -> str:
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    return next(n for n in names if n.startswith("xl/worksheets/sheet"))


def _read(data: bytes) -> object:
    return read_sheet(load_workbook_bytes(data), "企业", COLUMNS)


def test_a_plain_workbook_reads() -> None:
    parsed = read_sheet(load_workbook_bytes(_plain()), "企业", COLUMNS)
    assert [r.values for r in parsed.rows] == [{"name": "西安甲涂装有限公司", "code": "610112"}]


@pytest.mark.parametrize(
    ("doctype", "entity"), [(BOMB_DOCTYPE, "lol3"), (EXTERNAL_DOCTYPE, "xxe")], ids=["bomb", "xxe"]
)
def test_workbooks_declaring_xml_entities_are_refused(doctype: str, entity: str) -> None:
    data = _plain()
    hostile = _rewrite(data, _sheet_member(data), doctype, entity)
    with pytest.raises(WorkbookError, match="XML 实体"):
        _read(hostile)


def test_entities_in_the_workbook_part_are_refused_on_open() -> None:
    data = _plain()
    hostile = _rewrite(data, "xl/workbook.xml", EXTERNAL_DOCTYPE, "xxe")
    with pytest.raises(WorkbookError, match="XML 实体"):
        load_workbook_bytes(hostile)


def test_a_zip_bomb_is_refused_before_any_xml_is_read() -> None:
    data = _plain()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        with zipfile.ZipFile(io.BytesIO(data)) as source:
            for info in source.infolist():
                target.writestr(info, source.read(info.filename))
        target.writestr("xl/padding.bin", b"\0" * (8 * 1024 * 1024))
    assert len(out.getvalue()) < 100_000, "small on the wire"
    with pytest.raises(WorkbookError, match="解压后"):
        load_workbook_bytes(out.getvalue(), max_unpacked_bytes=4 * 1024 * 1024)
    load_workbook_bytes(out.getvalue())  # within the default cap it is just a workbook


def test_a_sheet_beyond_the_row_cap_is_an_error_not_a_memory_hog() -> None:
    rows = [{"name": f"企业{i}", "code": "610112"} for i in range(30)]
    parsed = read_sheet(
        load_workbook_bytes(rows_to_xlsx(COLUMNS, rows, title="企业")), "企业", COLUMNS, max_rows=10
    )
    assert len(parsed.rows) == 10
    assert parsed.errors and "10 行上限" in parsed.errors[0].message


def test_exports_are_capped_with_a_problem_stating_the_cap() -> None:
    rows = [{"name": f"企业{i}"} for i in range(11)]
    with pytest.raises(ExportTooLarge) as refused:
        write_workbook([Sheet("企业", COLUMNS, rows)], max_rows=10)
    problem = refused.value.to_dict()
    assert problem["status"] == 422 and problem["max_rows"] == 10
    assert "最多 10 行" in problem["detail"]
    write_workbook([Sheet("企业", COLUMNS, rows[:10])], max_rows=10)
    with pytest.raises(ExportTooLarge):
        check_export_size(11, limit=10)
    check_export_size(10, limit=10)
