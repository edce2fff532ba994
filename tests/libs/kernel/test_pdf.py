"""`ecowatt_kernel.pdf`: Chinese text survives into the PDF (extracted again with pypdf),
user text cannot inject reportlab markup, long tables break across pages with page numbers,
and a missing TrueType font falls back to the built-in CID font."""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path

import pytest
from ecowatt_kernel import pdf
from ecowatt_kernel.pdf import PdfDocument
from pypdf import PdfReader


def text_of(data: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def test_chinese_text_tables_and_page_numbers() -> None:
    document = PdfDocument(
        title="系统运行异常事件报告", subtitle="2026年11月", generated_at=datetime(2026, 12, 1, 8)
    )
    document.heading("一、概况")
    document.paragraph("本月共发生异常事件 3 起，<b>未</b> & 全部按时响应。")
    document.figures([("事件数", "3"), ("响应达标率", "100%")])
    document.table(
        ["编号", "级别", "说明"], [[f"INC-{i:03d}", "严重", "服务未就绪"] for i in range(120)]
    )
    data = document.render()
    assert data.startswith(b"%PDF")
    reader = PdfReader(io.BytesIO(data))
    assert len(reader.pages) >= 3  # 120 rows do not fit on one page
    text = text_of(data)
    assert "系统运行异常事件报告" in text and "响应达标率" in text
    assert "INC-000" in text and "INC-119" in text
    # the user's markup is printed, not interpreted
    assert "<b>未</b> & 全部" in text
    assert "第 1 页" in text and f"第 {len(reader.pages)} 页" in text


def test_a_broken_font_file_falls_back_to_a_debian_font_or_the_cid_font(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "broken.ttf"
    broken.write_bytes(b"not a font")
    debian = next((p for p in pdf.CJK_FONT_CANDIDATES if p.is_file()), None)
    expected = ("embedded", str(debian)) if debian else ("cid", "STSong-Light")
    assert pdf.font_source(broken) == expected
    # no TrueType font at all: the built-in CID font, and the text is still extractable
    monkeypatch.setattr(pdf, "CJK_FONT_CANDIDATES", ())
    monkeypatch.setattr(pdf, "_registered", {})
    assert pdf.font_source(tmp_path / "missing.ttf") == ("cid", "STSong-Light")
    document = pdf.PdfDocument(title="中文标题", font=tmp_path / "missing.ttf")
    document.paragraph("正文内容")
    text = text_of(document.render())
    assert "中文标题" in text and "正文内容" in text
