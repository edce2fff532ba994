"""A report's files: the Excel workbook (every table in full) and the PDF (summary text,
key figures, tables and charts, Chinese throughout, with an embedded CJK font)."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ecowatt_kernel.excel import Column, Sheet, write_workbook

from ecowatt_reporting.archive.models import GRADE_ZH
from ecowatt_reporting.events.models import LEVEL_ZH
from ecowatt_reporting.reports.fonts import register_font
from ecowatt_reporting.statistics.models import Count, Energy, Statistics

__all__ = ["ReportDocument", "headline", "render_pdf", "render_xlsx", "summary_paragraphs"]


@dataclass(frozen=True)
class ReportDocument:
    """What a report file shows besides the statistics."""

    title: str
    kind_name: str
    period_label: str
    scope_label: str
    generated_at: datetime
    definition: str
    inputs_version: str
    provisional: bool
    notes: tuple[str, ...]
    top_n: int
    daily_charts: bool


def pct(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f}%"


def num(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def change(value: float | None) -> str:
    return "—" if value is None else f"{value:+.1f}%"


def hours(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} 小时"


def headline(stats: Statistics) -> dict[str, Any]:
    """The report's key figures (stored with it as `summary`)."""
    a, t = stats.availability, stats.timeliness
    return {
        "enterprises": stats.enterprises,
        "points": stats.points,
        "online_rate": a.online_rate,
        "enterprise_online_rate": a.enterprise_online_rate,
        "completeness": a.completeness,
        "energy_kwh": stats.energy_total.energy_kwh,
        "energy_change_pct": stats.energy_total.change_pct,
        "alarms": stats.alarms_total.count,
        "alarms_previous": stats.alarms_total.previous,
        "alarms_change_pct": stats.alarms_total.change_pct,
        "alarms_suppressed": stats.alarms_suppressed,
        "serious_alarms": next((c.count for c in stats.alarms_by_level if c.key == "3"), 0),
        "feedback_rate": t.feedback_rate,
        "on_time_feedback_rate": t.on_time_feedback_rate,
        "close_rate": t.close_rate,
        "repeat_offenders": len(stats.repeat_offenders),
        "findings_opened": sum(f.opened for f in stats.findings_by_kind),
        "findings_open_at_end": sum(f.open_at_end for f in stats.findings_by_kind),
    }


def summary_paragraphs(stats: Statistics, document: ReportDocument) -> list[str]:
    """The report's opening text, as a bureau writes it, with the numbers in it."""
    h = headline(stats)
    a = stats.availability
    out = [
        f"{document.period_label}，{document.scope_label}纳入用电监管的企业 {h['enterprises']} 家、"
        f"在用监测点位 {h['points']} 个。点位在线率 {pct(a.online_rate)}（企业在线率 "
        f"{pct(a.enterprise_online_rate)}），数据完整率 {pct(a.completeness)}。",
        f"监管企业总用电量 {num(h['energy_kwh'])} kWh，环比 {change(h['energy_change_pct'])}；"
        f"其中产污设施 {num(stats.energy_total.production_kwh)} kWh，治污设施 "
        f"{num(stats.energy_total.control_kwh)} kWh。",
        f"共产生报警 {h['alarms']} 起（上期 {h['alarms_previous']} 起，环比 "
        f"{change(h['alarms_change_pct'])}），其中严重 {h['serious_alarms']} 起；因停电、报备或"
        f"管控停产抑制 {h['alarms_suppressed']} 起。企业反馈率 {pct(h['feedback_rate'])}，按时"
        f"反馈率 {pct(h['on_time_feedback_rate'])}，销号率 {pct(h['close_rate'])}。",
    ]
    findings = (
        f"新增数据质量问题 {h['findings_opened']} 个，期末仍未解决 {h['findings_open_at_end']} 个"
    )
    if stats.repeat_offenders:
        names = "、".join(o.enterprise_name for o in stats.repeat_offenders[:3])
        out.append(
            f"{findings}。报警 {stats.repeat_offender_min} 起及以上的重复报警企业 "
            f"{h['repeat_offenders']} 家，居前的是{names}。"
        )
    else:
        out.append(f"{findings}。本期无重复报警企业。")
    compliance = {c.verdict: c for c in stats.compliance}
    if sum(c.hours for c in stats.compliance):
        out.append(
            f"重污染天气管控期间，合规 {compliance['compliant'].hours} 企业小时，不合规 "
            f"{compliance['non_compliant'].hours} 企业小时（涉及 "
            f"{compliance['non_compliant'].enterprises} 家企业），无法判定 "
            f"{compliance['unknown'].hours} 企业小时。"
        )
    return out


# ------------------------------------------------------------------------------ tables

COUNT_COLUMNS = (
    Column("name", "名称", width=28),
    Column("count", "本期", width=10),
    Column("previous", "上期", width=10),
    Column("change", "环比", width=10),
)
AVAILABILITY_COLUMNS = (
    Column("name", "名称", width=24),
    Column("points", "点位数", width=10),
    Column("online_rate", "点位在线率", width=12),
    Column("enterprise_online_rate", "企业在线率", width=12),
    Column("completeness", "数据完整率", width=12),
)
ENERGY_COLUMNS = (
    Column("name", "名称", width=28),
    Column("enterprises", "企业数", width=10),
    Column("energy", "用电量(kWh)", width=16),
    Column("previous", "上期(kWh)", width=16),
    Column("change", "环比", width=10),
    Column("production", "产污设施(kWh)", width=16),
    Column("control", "治污设施(kWh)", width=16),
)


def _count_rows(items: Sequence[Count]) -> list[dict[str, Any]]:
    return [
        {"name": c.name, "count": c.count, "previous": c.previous, "change": change(c.change_pct)}
        for c in items
    ]


def _energy_rows(items: Sequence[Energy]) -> list[dict[str, Any]]:
    return [
        {
            "name": e.name,
            "enterprises": e.enterprises,
            "energy": round(e.energy_kwh, 1),
            "previous": round(e.previous_kwh, 1),
            "change": change(e.change_pct),
            "production": round(e.production_kwh, 1),
            "control": round(e.control_kwh, 1),
        }
        for e in items
    ]


def _availability_rows(stats: Statistics, items: Sequence[Any]) -> list[dict[str, Any]]:
    return [
        {
            "name": a.name,
            "points": a.points,
            "online_rate": pct(a.online_rate),
            "enterprise_online_rate": pct(a.enterprise_online_rate),
            "completeness": pct(a.completeness),
        }
        for a in items
    ]


def _timeliness_rows(stats: Statistics) -> list[dict[str, Any]]:
    t = stats.timeliness
    return [
        {"name": "报警总数（不含抑制）", "value": t.alarms},
        {"name": "已反馈", "value": t.with_feedback},
        {"name": f"{t.feedback_deadline_h:g} 小时内反馈", "value": t.feedback_within_deadline},
        {"name": "反馈率", "value": pct(t.feedback_rate)},
        {"name": "按时反馈率", "value": pct(t.on_time_feedback_rate)},
        {"name": "平均反馈用时", "value": hours(t.mean_feedback_h)},
        {"name": "已销号", "value": t.closed},
        {"name": f"{t.close_deadline_h:g} 小时内销号", "value": t.closed_within_deadline},
        {"name": "销号率", "value": pct(t.close_rate)},
        {"name": "平均销号用时", "value": hours(t.mean_close_h)},
        {"name": "未销号", "value": t.still_open},
    ]


def _offender_rows(stats: Statistics) -> list[dict[str, Any]]:
    return [
        {
            "name": o.enterprise_name,
            "district": o.district_name,
            "industry": o.industry_name,
            "alarms": o.alarms,
            "level": LEVEL_ZH.get(o.max_level, str(o.max_level)),
            "rules": "；".join(f"{k} {v} 起" for k, v in o.rules.items()),
        }
        for o in stats.repeat_offenders
    ]


def _finding_rows(stats: Statistics) -> list[dict[str, Any]]:
    return [
        {
            "name": f.name,
            "opened": f.opened,
            "previous": f.previous,
            "change": change(f.change_pct),
            "open_at_end": f.open_at_end,
        }
        for f in stats.findings_by_kind
    ]


def _key_rows(stats: Statistics) -> list[dict[str, Any]]:
    a = stats.availability
    return [
        {"name": "监管企业（家）", "value": stats.enterprises},
        {"name": "在用点位（个）", "value": stats.points},
        {"name": "点位在线率", "value": pct(a.online_rate)},
        {"name": "企业在线率", "value": pct(a.enterprise_online_rate)},
        {"name": "数据完整率", "value": pct(a.completeness)},
        {"name": "总用电量（kWh）", "value": num(stats.energy_total.energy_kwh)},
        {"name": "用电量环比", "value": change(stats.energy_total.change_pct)},
        {"name": "报警（起）", "value": stats.alarms_total.count},
        {"name": "报警环比", "value": change(stats.alarms_total.change_pct)},
        {"name": "抑制报警（起）", "value": stats.alarms_suppressed},
        {"name": "重复报警企业（家）", "value": len(stats.repeat_offenders)},
        {"name": "新增数据质量问题（个）", "value": sum(f.opened for f in stats.findings_by_kind)},
    ]


KEY_COLUMNS = (Column("name", "指标", width=28), Column("value", "数值", width=20))
TIMELINESS_COLUMNS = (Column("name", "指标", width=28), Column("value", "数值", width=16))
OFFENDER_COLUMNS = (
    Column("name", "企业", width=30),
    Column("district", "区县", width=12),
    Column("industry", "行业", width=20),
    Column("alarms", "报警数", width=10),
    Column("level", "最高等级", width=10),
    Column("rules", "报警规则", width=40),
)
FINDING_COLUMNS = (
    Column("name", "问题类型", width=36),
    Column("opened", "本期新增", width=10),
    Column("previous", "上期新增", width=10),
    Column("change", "环比", width=10),
    Column("open_at_end", "期末未解决", width=12),
)
DAILY_COLUMNS = (
    Column("day", "日期", width=12),
    Column("energy", "用电量(kWh)", width=16),
    Column("alarms", "报警数", width=10),
    Column("online_rate", "点位在线率", width=12),
    Column("completeness", "数据完整率", width=12),
)
ENTERPRISE_COLUMNS = (
    Column("name", "企业", width=32),
    Column("district", "区县", width=12),
    Column("industry", "行业", width=20),
    Column("grade", "绩效分级", width=10),
    Column("points", "点位数", width=8),
    Column("online_rate", "点位在线率", width=12),
    Column("completeness", "数据完整率", width=12),
    Column("energy", "用电量(kWh)", width=14),
    Column("production", "产污设施(kWh)", width=14),
    Column("control", "治污设施(kWh)", width=14),
    Column("alarms", "报警数", width=8),
)
COMPLIANCE_COLUMNS = (
    Column("name", "判定", width=16),
    Column("hours", "企业小时", width=12),
    Column("enterprises", "涉及企业", width=12),
)


def _daily_rows(stats: Statistics) -> list[dict[str, Any]]:
    return [
        {
            "day": d.day,
            "energy": round(d.energy_kwh, 1),
            "alarms": d.alarms,
            "online_rate": pct(d.online_rate),
            "completeness": pct(d.completeness),
        }
        for d in stats.daily
    ]


def _enterprise_rows(stats: Statistics) -> list[dict[str, Any]]:
    return [
        {
            "name": r.name,
            "district": r.district_name,
            "industry": r.industry_name,
            "grade": GRADE_ZH.get(r.grade or "none", r.grade),
            "points": r.points,
            "online_rate": pct(r.online_rate),
            "completeness": pct(r.completeness),
            "energy": round(r.energy_kwh, 1),
            "production": round(r.production_kwh, 1),
            "control": round(r.control_kwh, 1),
            "alarms": r.alarms,
        }
        for r in sorted(stats.by_enterprise, key=lambda r: (-r.energy_kwh, r.name))
    ]


def _compliance_rows(stats: Statistics) -> list[dict[str, Any]]:
    return [
        {"name": c.name, "hours": c.hours, "enterprises": c.enterprises} for c in stats.compliance
    ]


def render_xlsx(stats: Statistics, document: ReportDocument) -> bytes:
    """The report as a workbook: summary, key figures and every table in full."""
    about: list[dict[str, Any]] = [
        {"name": "报表", "value": document.title},
        {"name": "统计周期", "value": document.period_label},
        {"name": "范围", "value": document.scope_label},
        {"name": "生成时间", "value": document.generated_at},
        {"name": "报表定义", "value": document.definition},
        {"name": "数据版本", "value": document.inputs_version},
        *({"name": "说明", "value": note} for note in document.notes),
        *({"name": "概述", "value": text} for text in summary_paragraphs(stats, document)),
    ]
    sheets = [
        Sheet(
            "概况", (Column("name", "项目", width=14), Column("value", "内容", width=100)), about
        ),
        Sheet("主要指标", KEY_COLUMNS, _key_rows(stats)),
        Sheet(
            "在线率-区县",
            AVAILABILITY_COLUMNS,
            _availability_rows(stats, stats.availability_by_district),
        ),
        Sheet(
            "在线率-行业",
            AVAILABILITY_COLUMNS,
            _availability_rows(stats, stats.availability_by_industry),
        ),
        Sheet("报警-规则", COUNT_COLUMNS, _count_rows(stats.alarms_by_rule)),
        Sheet("报警-区县", COUNT_COLUMNS, _count_rows(stats.alarms_by_district)),
        Sheet("报警-行业", COUNT_COLUMNS, _count_rows(stats.alarms_by_industry)),
        Sheet("报警-等级", COUNT_COLUMNS, _count_rows(stats.alarms_by_level)),
        Sheet("处置及时性", TIMELINESS_COLUMNS, _timeliness_rows(stats)),
        Sheet("重复报警企业", OFFENDER_COLUMNS, _offender_rows(stats)),
        Sheet("数据质量问题", FINDING_COLUMNS, _finding_rows(stats)),
        Sheet("用电-区县", ENERGY_COLUMNS, _energy_rows(stats.energy_by_district)),
        Sheet("用电-行业", ENERGY_COLUMNS, _energy_rows(stats.energy_by_industry)),
        Sheet("管控合规", COMPLIANCE_COLUMNS, _compliance_rows(stats)),
        Sheet("每日", DAILY_COLUMNS, _daily_rows(stats)),
        Sheet("企业明细", ENTERPRISE_COLUMNS, _enterprise_rows(stats)),
    ]
    return write_workbook(sheets)


# --------------------------------------------------------------------------------- PDF


def render_pdf(
    stats: Statistics,
    document: ReportDocument,
    *,
    font_path: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> bytes:
    """The report as a PDF: text, key figures, tables and charts (A4, CJK font embedded)."""
    from reportlab.lib import colors
    from reportlab.lib.enums import TA_CENTER
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.platypus import (
        Paragraph,
        SimpleDocTemplate,
        Spacer,
        Table,
        TableStyle,
    )

    from ecowatt_reporting.reports.charts import bar_chart, line_chart

    font = register_font(font_path)
    title = ParagraphStyle(
        "title", fontName=font, fontSize=18, leading=24, alignment=TA_CENTER, spaceAfter=4 * mm
    )
    sub = ParagraphStyle(
        "sub", fontName=font, fontSize=9, leading=13, alignment=TA_CENTER, textColor=colors.grey
    )
    heading = ParagraphStyle(
        "h", fontName=font, fontSize=13, leading=18, spaceBefore=5 * mm, spaceAfter=2 * mm
    )
    body = ParagraphStyle(
        "body", fontName=font, fontSize=10.5, leading=17, firstLineIndent=21, wordWrap="CJK"
    )
    cell = ParagraphStyle("cell", fontName=font, fontSize=8.5, leading=11, wordWrap="CJK")

    def table(
        columns: Sequence[Column], rows: Sequence[dict[str, Any]], widths: Sequence[float]
    ) -> Table:
        data: list[list[Paragraph | str]] = [[Paragraph(c.header, cell) for c in columns]]
        for row in rows:
            data.append(
                [
                    Paragraph("" if row.get(c.key) is None else str(row.get(c.key)), cell)
                    for c in columns
                ]
            )
        if len(data) == 1:
            data.append([Paragraph("（无）", cell), *[""] * (len(columns) - 1)])
        result = Table(data, colWidths=[w * mm for w in widths], repeatRows=1)
        result.setStyle(
            TableStyle(
                [
                    ("GRID", (0, 0), (-1, -1), 0.4, colors.HexColor("#9AA5B1")),
                    ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#E4ECF5")),
                    ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
                ]
            )
        )
        return result

    n = document.top_n
    story: list[Any] = [
        Paragraph(document.title, title),
        Paragraph(
            f"统计周期：{document.period_label}　范围：{document.scope_label}　生成时间："
            f"{document.generated_at:%Y-%m-%d %H:%M}　数据版本：{document.inputs_version}",
            sub,
        ),
    ]
    for note in document.notes:
        story.append(Paragraph(note, sub))
    story.append(Paragraph("一、总体情况", heading))
    story += [Paragraph(text, body) for text in summary_paragraphs(stats, document)]
    story.append(Spacer(1, 3 * mm))
    story.append(table(KEY_COLUMNS, _key_rows(stats), (70, 50)))
    if progress:
        progress("在线率与完整率")
    story.append(Paragraph("二、在线率与数据完整率", heading))
    story.append(
        table(
            AVAILABILITY_COLUMNS,
            _availability_rows(stats, stats.availability_by_district),
            (50, 22, 30, 30, 30),
        )
    )
    districts = stats.availability_by_district[:12]
    if districts:
        story.append(
            bar_chart(
                "各区县点位在线率（%）",
                [a.name for a in districts],
                [[(a.online_rate or 0) * 100 for a in districts]],
                ["点位在线率"],
                font,
                value_max=100,
            )
        )
    if document.daily_charts:
        story.append(
            line_chart(
                "每日点位在线率与数据完整率（%）",
                [f"{d.day:%m-%d}" for d in stats.daily],
                [
                    [None if d.online_rate is None else d.online_rate * 100 for d in stats.daily],
                    [None if d.completeness is None else d.completeness * 100 for d in stats.daily],
                ],
                ["点位在线率", "数据完整率"],
                font,
            )
        )
    if progress:
        progress("报警统计")
    story.append(Paragraph("三、报警情况", heading))
    story.append(Paragraph("（一）按规则", body))
    story.append(table(COUNT_COLUMNS, _count_rows(stats.alarms_by_rule), (70, 25, 25, 25)))
    story.append(Paragraph("（二）按区县", body))
    story.append(table(COUNT_COLUMNS, _count_rows(stats.alarms_by_district), (70, 25, 25, 25)))
    story.append(Paragraph(f"（三）按行业（前 {n} 位）", body))
    story.append(table(COUNT_COLUMNS, _count_rows(stats.alarms_by_industry[:n]), (70, 25, 25, 25)))
    story.append(Paragraph("（四）按等级", body))
    story.append(table(COUNT_COLUMNS, _count_rows(stats.alarms_by_level), (70, 25, 25, 25)))
    if document.daily_charts:
        story.append(
            line_chart(
                "每日报警数（起）",
                [f"{d.day:%m-%d}" for d in stats.daily],
                [[float(d.alarms) for d in stats.daily]],
                ["报警数"],
                font,
            )
        )
    elif stats.alarms_by_rule:
        rules = stats.alarms_by_rule[:8]
        story.append(
            bar_chart(
                "各规则报警数（起）",
                [c.name for c in rules],
                [[float(c.count) for c in rules], [float(c.previous) for c in rules]],
                ["本期", "上期"],
                font,
            )
        )
    story.append(Paragraph("四、处置及时性", heading))
    story.append(table(TIMELINESS_COLUMNS, _timeliness_rows(stats), (70, 50)))
    story.append(
        Paragraph(f"五、重复报警企业（报警 {stats.repeat_offender_min} 起及以上）", heading)
    )
    story.append(table(OFFENDER_COLUMNS, _offender_rows(stats)[:n], (45, 18, 28, 14, 16, 49)))
    story.append(Paragraph("六、数据质量问题", heading))
    story.append(table(FINDING_COLUMNS, _finding_rows(stats), (70, 22, 22, 22, 24)))
    if progress:
        progress("用电统计")
    story.append(Paragraph("七、用电情况", heading))
    story.append(Paragraph("（一）按区县", body))
    story.append(
        table(ENERGY_COLUMNS, _energy_rows(stats.energy_by_district), (36, 16, 26, 26, 16, 26, 26))
    )
    story.append(Paragraph(f"（二）按行业（前 {n} 位）", body))
    by_industry = sorted(stats.energy_by_industry, key=lambda e: -e.energy_kwh)[:n]
    story.append(table(ENERGY_COLUMNS, _energy_rows(by_industry), (36, 16, 26, 26, 16, 26, 26)))
    if document.daily_charts:
        story.append(
            line_chart(
                "每日用电量（kWh）",
                [f"{d.day:%m-%d}" for d in stats.daily],
                [[d.energy_kwh for d in stats.daily]],
                ["用电量"],
                font,
            )
        )
    elif stats.energy_by_district:
        top = stats.energy_by_district[:12]
        story.append(
            bar_chart(
                "各区县用电量（kWh）",
                [e.name for e in top],
                [[e.energy_kwh for e in top], [e.previous_kwh for e in top]],
                ["本期", "上期"],
                font,
            )
        )
    story.append(Paragraph(f"（三）用电量居前的企业（前 {n} 位）", body))
    story.append(
        table(
            ENTERPRISE_COLUMNS[:1] + ENTERPRISE_COLUMNS[1:2] + ENTERPRISE_COLUMNS[7:],
            _enterprise_rows(stats)[:n],
            (55, 18, 26, 26, 26, 17),
        )
    )
    if sum(c.hours for c in stats.compliance):
        story.append(Paragraph("八、重污染天气管控合规情况", heading))
        story.append(table(COMPLIANCE_COLUMNS, _compliance_rows(stats), (50, 30, 30)))
    story.append(Spacer(1, 4 * mm))
    story.append(Paragraph("企业明细及全部分组数据见同名 Excel 报表。", sub))

    def footer(canvas: Any, doc: Any) -> None:
        canvas.saveState()
        canvas.setFont(font, 8)
        canvas.setFillColor(colors.grey)
        canvas.drawCentredString(A4[0] / 2, 10 * mm, f"{document.title}　第 {doc.page} 页")
        canvas.restoreState()

    buffer = io.BytesIO()
    SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=16 * mm,
        rightMargin=16 * mm,
        topMargin=16 * mm,
        bottomMargin=18 * mm,
        title=document.title,
        author="EcoWatt",
    ).build(story, onFirstPage=footer, onLaterPages=footer)
    return buffer.getvalue()
