"""The report's files: Excel (every table in full) and PDF (`ecowatt_kernel.pdf`)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from ecowatt_kernel.excel import Column, Sheet, write_workbook
from ecowatt_kernel.pdf import PdfDocument

from ecowatt_ops.desk.exports import safe_text
from ecowatt_ops.reports.models import SLA_ZH, AbnormalReport, ReportEvent

__all__ = ["report_pdf", "report_xlsx"]

EVENT_COLUMNS = (
    Column("number", "编号", width=20),
    Column("opened_at", "发生时间", width=18),
    Column("level_name", "级别", width=9),
    Column("affected_function", "受影响功能", width=14),
    Column("title", "事件", width=36),
    Column("impact", "影响", width=30),
    Column("source_name", "来源", width=10),
    Column("status_name", "状态", width=10),
    Column("responded_at", "响应时间", width=18),
    Column("resolved_at", "解决时间", width=18),
    Column("duration_min", "持续（分钟）", width=12),
    Column("handling", "处理情况", width=50),
    Column("response_sla", "响应时限", width=10),
    Column("resolution_sla", "解决时限", width=10),
    Column("review", "复盘", width=40),
)
LEVEL_COLUMNS = (
    Column("level_name", "级别", width=10),
    Column("events", "事件数", width=8),
    Column("response_met", "响应达标", width=10),
    Column("response_missed", "响应超时", width=10),
    Column("resolution_met", "解决达标", width=10),
    Column("resolution_missed", "解决超时", width=10),
    Column("duration_min", "累计时长（分钟）", width=16),
)
REQUEST_COLUMNS = (
    Column("kind_name", "请求类型", width=14),
    Column("received", "受理数", width=8),
    Column("met", "按时", width=8),
    Column("missed", "超时", width=8),
    Column("running", "计时中", width=8),
    Column("open_at_end", "期末未结", width=10),
)
SUMMARY_COLUMNS = (Column("item", "项目", width=24), Column("value", "数值", width=40))


def _local(value: datetime | None, zone: ZoneInfo) -> datetime | None:
    return value.astimezone(zone) if value is not None else None


def _rate(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _event_rows(events: list[ReportEvent], zone: ZoneInfo) -> list[dict[str, Any]]:
    rows = []
    for event in events:
        data = {k: safe_text(v) for k, v in event.model_dump().items()}
        for key in ("opened_at", "responded_at", "resolved_at", "verified_at"):
            data[key] = _local(getattr(event, key), zone)
        data["response_sla"] = SLA_ZH[event.response_sla]
        data["resolution_sla"] = SLA_ZH[event.resolution_sla]
        rows.append(data)
    return rows


def _summary(report: AbnormalReport, zone: ZoneInfo) -> list[tuple[str, str]]:
    f = report.figures
    last = report.period_end.astimezone(zone)
    return [
        (
            "统计周期",
            f"{report.period_start.astimezone(zone):%Y-%m-%d %H:%M} 至 {last:%Y-%m-%d %H:%M}",
        ),
        ("异常事件", f"{f.events} 起"),
        ("已解决", f"{f.resolved} 起"),
        (
            "响应达标率",
            f"{_rate(f.response_rate)}（达标 {f.response_met}，超时 {f.response_missed}）",
        ),
        (
            "解决达标率",
            f"{_rate(f.resolution_rate)}（达标 {f.resolution_met}，超时 {f.resolution_missed}）",
        ),
        ("累计故障时长", f"{f.duration_min} 分钟"),
        ("平均故障时长", "—" if f.mean_duration_min is None else f"{f.mean_duration_min} 分钟"),
        ("期末未结事件", f"{f.open_at_end} 起"),
        ("撤销（误报）", f"{f.cancelled} 起"),
        ("生成时间", f"{report.generated_at.astimezone(zone):%Y-%m-%d %H:%M}"),
    ]


def report_xlsx(report: AbnormalReport, zone: ZoneInfo) -> bytes:
    """The workbook: 汇总, 分级统计, 异常事件, 跟踪列表, 服务请求 (blocking)."""
    return write_workbook(
        [
            Sheet(
                "汇总",
                SUMMARY_COLUMNS,
                [{"item": k, "value": v} for k, v in _summary(report, zone)],
            ),
            Sheet("分级统计", LEVEL_COLUMNS, [f.model_dump() for f in report.figures.by_level]),
            Sheet("异常事件", EVENT_COLUMNS, _event_rows(report.events, zone)),
            Sheet("跟踪列表", EVENT_COLUMNS, _event_rows(report.tracking, zone)),
            Sheet("服务请求", REQUEST_COLUMNS, [r.model_dump() for r in report.requests]),
        ]
    )


def _when(value: datetime | None, zone: ZoneInfo) -> str:
    return value.astimezone(zone).strftime("%m-%d %H:%M") if value else "—"


def report_pdf(report: AbnormalReport, zone: ZoneInfo, font: Path | None = None) -> PdfDocument:
    """The printable report (render with `pdf_response` or `.render()`)."""
    document = PdfDocument(
        title=report.title,
        subtitle="系统运行异常信息事件报送",
        footer="EcoWatt 涉气排污单位治理设施用电监管平台",
        font=font,
        generated_at=report.generated_at.astimezone(zone),
    )
    f = report.figures
    document.heading("一、总体情况")
    document.paragraph(
        f"本期共发生系统运行异常事件 {f.events} 起，已解决 {f.resolved} 起，期末未结 "
        f"{f.open_at_end} 起；响应达标率 {_rate(f.response_rate)}，解决达标率 "
        f"{_rate(f.resolution_rate)}，累计故障时长 {f.duration_min} 分钟。"
    )
    document.figures(_summary(report, zone)[1:9])
    document.heading("二、分级统计")
    document.table(
        [c.header for c in LEVEL_COLUMNS],
        [
            [
                x.level_name,
                x.events,
                x.response_met,
                x.response_missed,
                x.resolution_met,
                x.resolution_missed,
                x.duration_min,
            ]
            for x in f.by_level
        ],
    )
    header = ["编号", "发生时间", "级别", "事件与影响", "处理情况", "持续（分钟）", "响应", "解决"]
    widths = [2.2, 1.3, 0.9, 4, 4, 1.1, 0.9, 0.9]

    def rows(events: list[ReportEvent]) -> list[list[Any]]:
        return [
            [
                e.number,
                _when(e.opened_at, zone),
                e.level_name,
                e.title + (f"\n影响：{e.impact}" if e.impact else ""),
                e.handling or e.status_name,
                "—" if e.duration_min is None else e.duration_min,
                SLA_ZH[e.response_sla],
                SLA_ZH[e.resolution_sla],
            ]
            for e in events
        ]

    document.heading("三、异常事件明细")
    document.table(header, rows(report.events), widths=widths, empty="本期无异常事件。")
    document.heading("四、未结事件跟踪")
    document.table(header, rows(report.tracking), widths=widths, empty="期末无未结事件。")
    document.heading("五、服务请求")
    document.table(
        [c.header for c in REQUEST_COLUMNS],
        [
            [r.kind_name, r.received, r.met, r.missed, r.running, r.open_at_end]
            for r in report.requests
        ],
    )
    reviews = [e for e in report.events if e.review]
    if reviews:
        document.heading("六、复盘")
        for e in reviews:
            document.paragraph(f"{e.number} {e.title}：{e.review}")
    return document
