"""The registry's Excel import and exports stay within their limits, with nothing written.

Every limit is hit through the real API (kernel `create_app`, real PostgreSQL): a workbook
larger than the upload limit, two files at once, a file that is no .xlsx, an XML bomb and an
external-entity workbook, and an export beyond the row cap.
"""

from __future__ import annotations

import io
import zipfile
from typing import Any

import pytest
from ecowatt_registry.excel import exporter
from ecowatt_registry.excel.views import EXCEL_UPLOAD

from .conftest import CITY, Registry, enterprise_body
from .test_excel import XLSX, archive, workbook

pytestmark = pytest.mark.integration

BOMB = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE b [<!ENTITY a "aaaaaaaaaa">'
    '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>'
)
EXTERNAL = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
)


def hostile(doctype: str, entity: str) -> bytes:
    """The import test's workbook with an entity declared and used in its first sheet."""
    data = workbook(archive())
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            content = source.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                text = content.decode("utf-8")
                text = text[text.index("?>") + 2 :] if text.startswith("<?xml") else text
                text = text.replace("西安甲涂装有限公司", f"&{entity};")
                content = (doctype + text).encode("utf-8")
            target.writestr(info, content)
    return out.getvalue()


async def enterprise_count(registry: Registry) -> int:
    page = (await registry.client.get("/enterprises", headers=CITY)).json()
    return int(page["total"])


async def post(registry: Registry, files: Any) -> Any:
    return await registry.client.post("/import", files=files, headers=CITY)


def refused(response: Any, status: int, kind: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["type"].endswith(f"/{kind}"), body
    return body


@pytest.mark.parametrize(("doctype", "entity"), [(BOMB, "c"), (EXTERNAL, "xxe")])
async def test_xml_entity_workbooks_are_refused_and_nothing_is_written(
    registry: Registry, doctype: str, entity: str
) -> None:
    response = await post(registry, {"file": ("a.xlsx", hostile(doctype, entity), XLSX)})
    body = refused(response, 422, "invalid-workbook")
    assert "XML 实体" in body["detail"]
    assert "root:" not in response.text, "no file content leaks into the answer"
    assert await enterprise_count(registry) == 0
    assert registry.changes() == []


async def test_a_workbook_over_the_size_limit_is_a_413_and_nothing_is_written(
    registry: Registry,
) -> None:
    just_over = b"PK" + b"\0" * (EXCEL_UPLOAD.max_file_bytes - 1)
    response = await post(registry, {"file": ("a.xlsx", just_over, XLSX)})
    assert refused(response, 413, "file-too-large")["max_file_bytes"] == 20 * 1024 * 1024
    far_over = b"PK" + b"\0" * EXCEL_UPLOAD.max_body_bytes
    response = await post(registry, {"file": ("a.xlsx", far_over, XLSX)})
    assert refused(response, 413, "content-too-large")["max_bytes"] == EXCEL_UPLOAD.max_body_bytes
    assert await enterprise_count(registry) == 0


async def test_two_files_or_a_file_that_is_no_workbook_are_refused(registry: Registry) -> None:
    data = workbook(archive())
    two = [("file", ("a.xlsx", data, XLSX)), ("file", ("b.xlsx", data, XLSX))]
    response = await post(registry, two)
    assert response.status_code == 400, response.text
    assert "Too many files" in response.json()["detail"]
    csv = await post(registry, {"file": ("a.csv", b"name,code\n", "text/csv")})
    assert refused(csv, 415, "unsupported-file-type")["accepted"] == [".xlsx"]
    assert await enterprise_count(registry) == 0


async def test_an_export_beyond_the_row_cap_is_refused_stating_the_cap(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("E1", "E2"):
        created = await registry.client.post(
            "/enterprises", json=enterprise_body(id=name), headers=CITY
        )
        assert created.status_code == 201, created.text
    monkeypatch.setattr(exporter, "EXPORT_ROW_LIMIT", 1)
    for path in ("/enterprises.xlsx", "/export/archive.xlsx"):
        body = refused(await registry.client.get(path, headers=CITY), 422, "export-too-large")
        assert body["max_rows"] == 1 and "最多 1 行" in body["detail"]
    monkeypatch.setattr(exporter, "EXPORT_ROW_LIMIT", 2)
    assert (await registry.client.get("/enterprises.xlsx", headers=CITY)).status_code == 200
