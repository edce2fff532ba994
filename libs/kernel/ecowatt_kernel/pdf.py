"""Printable PDF documents with Chinese text: a title, headings, paragraphs, key figures and
tables, page numbers in the footer (reportlab; install `ecowatt-kernel[pdf]`).

    document = PdfDocument(title="系统运行异常事件报告", subtitle="2026年11月")
    document.heading("一、概况")
    document.paragraph("本月共发生异常事件 3 起 …")
    document.figures([("事件数", "3"), ("响应达标率", "100%")])
    document.table(["编号", "级别"], [["INC-1", "严重"]], widths=[3, 1])
    data = await pdf_response(document, "report.pdf")     # built in a worker thread

Fonts. A PDF that embeds its font shows the same glyphs everywhere, so `cjk_font` first looks
for a TrueType CJK font (the configured file, else one of Debian's: `fonts-wqy-zenhei`,
`fonts-wqy-microhei`, `fonts-droid-fallback`, `fonts-arphic-uming`; reportlab reads TrueType
outlines only, not the OpenType/CFF Noto CJK files) and embeds a subset of it. Without one it
falls back to reportlab's built-in Adobe CID font `STSong-Light`: the document is still valid
and its text extractable, but the glyphs come from the viewer's own CJK fonts (every common
viewer has them). `font_source()` says which was used, so a deployment can check.

Every text is escaped before it reaches reportlab's paragraph markup: a title typed by a user
cannot inject markup.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from xml.sax.saxutils import escape

from fastapi.responses import Response

__all__ = [
    "CID_FALLBACK",
    "CJK_FONT_CANDIDATES",
    "PDF_MEDIA_TYPE",
    "FontSource",
    "PdfDocument",
    "cjk_font",
    "font_source",
    "pdf_response",
]

PDF_MEDIA_TYPE = "application/pdf"
CJK_FONT_CANDIDATES = (
    Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"),
    Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),
    Path("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf"),
    Path("/usr/share/fonts/truetype/arphic/uming.ttc"),
)
CID_FALLBACK = "STSong-Light"
_EMBEDDED_NAME = "EcoWattCJK"

FontSource = tuple[Literal["embedded", "cid"], str]
_registered: dict[str, tuple[str, FontSource]] = {}
"""Configured path (or "") → (reportlab font name, where its glyphs come from)."""


def _register(configured: Path | None) -> tuple[str, FontSource]:
    key = str(configured or "")
    if key in _registered:
        return _registered[key]
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfbase.ttfonts import TTFont

    candidates = [configured] if configured is not None else []
    for path in [*candidates, *CJK_FONT_CANDIDATES]:
        if not path.is_file():
            continue
        name = f"{_EMBEDDED_NAME}{len(_registered)}"
        try:
            options: dict[str, Any] = {"subfontIndex": 0} if path.suffix == ".ttc" else {}
            pdfmetrics.registerFont(TTFont(name, str(path), **options))
        except Exception:  # noqa: S112 - not a usable TrueType font: try the next one
            continue
        _registered[key] = (name, ("embedded", str(path)))
        return _registered[key]
    pdfmetrics.registerFont(UnicodeCIDFont(CID_FALLBACK))
    _registered[key] = (CID_FALLBACK, ("cid", CID_FALLBACK))
    return _registered[key]


def cjk_font(configured: Path | None = None) -> str:
    """Register a CJK font with reportlab (once) and return its name: the TrueType font of
    `configured` or a Debian CJK font, embedded; else the CID font `STSong-Light`."""
    return _register(configured)[0]


def font_source(configured: Path | None = None) -> FontSource:
    """("embedded", font file) or ("cid", "STSong-Light"): what `cjk_font` uses."""
    return _register(configured)[1]


@dataclass
class _Block:
    kind: Literal["heading", "paragraph", "figures", "table", "spacer"]
    text: str = ""
    rows: Sequence[Sequence[Any]] = ()
    header: Sequence[str] = ()
    widths: Sequence[float] | None = None


@dataclass
class PdfDocument:
    """A document built block by block; `render()` returns the PDF bytes."""

    title: str
    subtitle: str = ""
    footer: str = ""
    landscape: bool = True
    font: Path | None = None
    generated_at: datetime | None = None
    blocks: list[_Block] = field(default_factory=list)

    def heading(self, text: str) -> None:
        self.blocks.append(_Block("heading", text=text))

    def paragraph(self, text: str) -> None:
        self.blocks.append(_Block("paragraph", text=text))

    def figures(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Key figures: label and value side by side, four pairs a row."""
        self.blocks.append(_Block("figures", rows=[list(p) for p in pairs]))

    def table(
        self,
        header: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        widths: Sequence[float] | None = None,
        empty: str = "无",
    ) -> None:
        """A table (header repeated on every page); `widths` are relative column widths."""
        if not rows:
            self.paragraph(empty)
            return
        self.blocks.append(_Block("table", header=header, rows=rows, widths=widths))

    def render(self) -> bytes:
        """The PDF (blocking: CPU work; see `pdf_response`)."""
        from reportlab.lib import colors
        from reportlab.lib.enums import TA_CENTER
        from reportlab.lib.pagesizes import A4, landscape
        from reportlab.lib.styles import ParagraphStyle
        from reportlab.lib.units import mm
        from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

        font = cjk_font(self.font)
        size = landscape(A4) if self.landscape else A4
        body = ParagraphStyle("body", fontName=font, fontSize=10, leading=15, wordWrap="CJK")
        small = ParagraphStyle("small", parent=body, fontSize=8.5, leading=12)
        title = ParagraphStyle("title", parent=body, fontSize=18, leading=26, alignment=TA_CENTER)
        subtitle = ParagraphStyle("subtitle", parent=body, alignment=TA_CENTER, spaceAfter=8)
        heading = ParagraphStyle("heading", parent=body, fontSize=13, leading=20, spaceBefore=8)

        def text(value: Any, style: ParagraphStyle = small) -> Paragraph:
            shown = "" if value is None else str(value)
            return Paragraph(escape(shown).replace("\n", "<br/>"), style)

        story: list[Any] = [text(self.title, title)]
        if self.subtitle:
            story.append(text(self.subtitle, subtitle))
        width = size[0] - 30 * mm
        grid = TableStyle(
            [
                ("FONTNAME", (0, 0), (-1, -1), font),
                ("GRID", (0, 0), (-1, -1), 0.4, colors.grey),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#E8EEF4")),
            ]
        )
        for block in self.blocks:
            if block.kind == "heading":
                story.append(text(block.text, heading))
            elif block.kind == "paragraph":
                story.append(text(block.text, body))
            elif block.kind == "figures":
                cells = [text(v, body) for pair in block.rows for v in pair]
                cells += [text("")] * (-len(cells) % 8)
                rows = [cells[i : i + 8] for i in range(0, len(cells), 8)]
                table = Table(rows, colWidths=[width / 8] * 8)
                table.setStyle(
                    TableStyle(
                        [
                            ("FONTNAME", (0, 0), (-1, -1), font),
                            ("BOX", (0, 0), (-1, -1), 0.4, colors.grey),
                            *[
                                ("BACKGROUND", (c, 0), (c, -1), colors.HexColor("#F3F5F7"))
                                for c in range(0, 8, 2)
                            ],
                        ]
                    )
                )
                story.append(table)
            elif block.kind == "table":
                relative = list(block.widths or [1.0] * len(block.header))
                total = sum(relative)
                rows = [[text(h) for h in block.header]]
                rows += [[text(v) for v in row] for row in block.rows]
                table = Table(rows, colWidths=[width * w / total for w in relative], repeatRows=1)
                table.setStyle(grid)
                story.append(table)
            story.append(Spacer(1, 4 * mm))

        footer = self.footer
        stamp = self.generated_at.strftime("%Y-%m-%d %H:%M") if self.generated_at else ""

        def decorate(canvas: Any, doc: Any) -> None:
            canvas.saveState()
            canvas.setFont(font, 8)
            line = f"{footer}  {stamp}".strip()
            canvas.drawString(15 * mm, 8 * mm, line)
            canvas.drawRightString(size[0] - 15 * mm, 8 * mm, f"第 {doc.page} 页")
            canvas.restoreState()

        buffer = io.BytesIO()
        template = SimpleDocTemplate(
            buffer,
            pagesize=size,
            leftMargin=15 * mm,
            rightMargin=15 * mm,
            topMargin=15 * mm,
            bottomMargin=15 * mm,
            title=self.title,
            author="EcoWatt",
        )
        template.build(story, onFirstPage=decorate, onLaterPages=decorate)
        return buffer.getvalue()


async def pdf_response(document: PdfDocument, filename: str) -> Response:
    """A PDF download of `document`, rendered in a worker thread (never on the event loop)."""
    data = await asyncio.to_thread(document.render)
    return Response(
        data,
        media_type=PDF_MEDIA_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
