"""Abnormal-event report endpoints: live (JSON, Excel, PDF), stored (list, read, files)."""

from __future__ import annotations

import asyncio
from typing import Annotated
from zoneinfo import ZoneInfo

from ecowatt_kernel.app import DbSession
from ecowatt_kernel.excel import XLSX_MEDIA_TYPE, Column, Sheet, xlsx_response
from ecowatt_kernel.pagination import Page, PageParams, fetch_page
from ecowatt_kernel.pdf import PDF_MEDIA_TYPE, pdf_response
from ecowatt_kernel.problems import Problem
from ecowatt_kernel.times import LocalDateTime
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import ValidationError
from sqlalchemy import Select, select

from ecowatt_ops.desk.access import Editors, Readers, publish_audit
from ecowatt_ops.desk.exports import local_time, safe_row
from ecowatt_ops.desk.runtime import DeskRuntime, Runtime
from ecowatt_ops.reports.models import (
    AbnormalReport,
    ReportRequest,
    ReportSummary,
    abnormal_report,
)
from ecowatt_ops.reports.render import report_pdf, report_xlsx
from ecowatt_ops.reports.service import build_report, load_report, period_of, store_report

__all__ = ["router"]

router = APIRouter(tags=["abnormal-event reports"])
_KIND_ZH = {"monthly": "月报", "on_demand": "按需"}


def _period(
    month: Annotated[
        str | None, Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="e.g. 2026-11")
    ] = None,
    since: Annotated[LocalDateTime | None, Query(alias="from")] = None,
    until: Annotated[LocalDateTime | None, Query(alias="to")] = None,
) -> ReportRequest:
    try:
        return ReportRequest.model_validate({"month": month, "from": since, "to": until})
    except ValidationError as exc:
        message = "; ".join(str(e["msg"]) for e in exc.errors())
        raise Problem(message, status=422, type_suffix="invalid-period") from None


Period = Annotated[ReportRequest, Depends(_period)]


async def _live(
    session: DbSession, runtime: DeskRuntime, period: ReportRequest, by: str
) -> AbnormalReport:
    zone = ZoneInfo(runtime.settings.timezone)
    start, end = period_of(period, zone)
    return await build_report(
        session=session,
        start=start,
        end=end,
        kind="on_demand",
        now=runtime.now(),
        generated_by=by,
        zone=zone,
    )


@router.get(
    "/reports/abnormal-events",
    summary="The abnormal-event report of a month or period, computed now",
    response_model=AbnormalReport,
)
async def live_report(
    identity: Readers, session: DbSession, runtime: Runtime, period: Period
) -> AbnormalReport:
    return await _live(session, runtime, period, identity.subject)


@router.get(
    "/reports/abnormal-events.xlsx",
    summary="The abnormal-event report as Excel",
    responses={200: {"content": {XLSX_MEDIA_TYPE: {}}}},
)
async def live_report_xlsx(
    identity: Readers, session: DbSession, runtime: Runtime, period: Period
) -> Response:
    report = await _live(session, runtime, period, identity.subject)
    return await _xlsx(report, runtime)


@router.get(
    "/reports/abnormal-events.pdf",
    summary="The abnormal-event report as PDF",
    responses={200: {"content": {PDF_MEDIA_TYPE: {}}}},
)
async def live_report_pdf(
    identity: Readers, session: DbSession, runtime: Runtime, period: Period
) -> Response:
    report = await _live(session, runtime, period, identity.subject)
    return await _pdf(report, runtime)


async def _xlsx(report: AbnormalReport, runtime: DeskRuntime) -> Response:
    zone = ZoneInfo(runtime.settings.timezone)
    data = await asyncio.to_thread(report_xlsx, report, zone)
    return Response(
        data,
        media_type=XLSX_MEDIA_TYPE,
        headers={"Content-Disposition": 'attachment; filename="abnormal-events.xlsx"'},
    )


async def _pdf(report: AbnormalReport, runtime: DeskRuntime) -> Response:
    zone = ZoneInfo(runtime.settings.timezone)
    return await pdf_response(
        report_pdf(report, zone, runtime.settings.ops_cjk_font), "abnormal-events.pdf"
    )


@router.post(
    "/reports",
    summary="Store the report of a month or period as filed (报送); it will not change",
    status_code=201,
    response_model=ReportSummary,
)
async def file_report(
    body: ReportRequest, request: Request, identity: Editors, session: DbSession, runtime: Runtime
) -> ReportSummary:
    report = await _live(session, runtime, body, identity.subject)
    report_id = await store_report(session=session, report=report)
    assert report_id is not None  # on-demand reports never collide
    await session.commit()
    await publish_audit(
        request,
        identity=identity,
        action="report.file",
        resource=f"report:{report_id}",
        details={"title": report.title},
    )
    return _summary_of(report_id, report)


def _summary_of(report_id: str, report: AbnormalReport) -> ReportSummary:
    return ReportSummary(
        id=report_id,
        kind=report.kind,
        title=report.title,
        period_start=report.period_start,
        period_end=report.period_end,
        generated_at=report.generated_at,
        generated_by=report.generated_by,
        events=report.figures.events,
        open_at_end=report.figures.open_at_end,
    )


def _stored(
    kind: Annotated[str | None, Query(pattern="^(monthly|on_demand)$")] = None,
) -> Select[tuple[object, ...]]:
    c = abnormal_report.c
    query = select(
        c.id,
        c.kind,
        c.title,
        c.period_start,
        c.period_end,
        c.generated_at,
        c.generated_by,
        c.content["figures"]["events"].as_integer().label("events"),
        c.content["figures"]["open_at_end"].as_integer().label("open_at_end"),
    )
    if kind:
        query = query.where(c.kind == kind)
    return query.order_by(c.period_start.desc(), c.generated_at.desc(), c.id)


Stored = Annotated[Select[tuple[object, ...]], Depends(_stored)]


@router.get(
    "/reports", summary="Stored reports, newest period first", response_model=Page[ReportSummary]
)
async def list_reports(
    _: Readers, session: DbSession, page: PageParams, query: Stored
) -> Page[ReportSummary]:
    rows, total = await fetch_page(session, query, page)
    return Page.of([ReportSummary.model_validate(dict(r._mapping)) for r in rows], total, page)


EXPORT_COLUMNS = (
    Column("title", "报告", width=40),
    Column("kind", "类型", width=8),
    Column("period_start", "起", width=18),
    Column("period_end", "止", width=18),
    Column("events", "异常事件", width=10),
    Column("open_at_end", "期末未结", width=10),
    Column("generated_at", "生成时间", width=18),
    Column("generated_by", "生成人", width=20),
)


@router.get(
    "/reports.xlsx",
    summary="Export the list of stored reports as Excel",
    responses={200: {"content": {XLSX_MEDIA_TYPE: {}}}},
)
async def export_reports(
    _: Readers, session: DbSession, query: Stored, runtime: Runtime
) -> Response:
    zone = ZoneInfo(runtime.settings.timezone)
    rows = [
        local_time(safe_row(dict(r) | {"kind": _KIND_ZH[r["kind"]]}), zone)
        for r in (await session.execute(query.limit(10_000))).mappings()
    ]
    return await xlsx_response([Sheet("异常事件报告", EXPORT_COLUMNS, rows)], "reports.xlsx")


@router.get(
    "/reports/{report_id}", summary="A stored report, as filed", response_model=AbnormalReport
)
async def read_report(report_id: str, _: Readers, session: DbSession) -> AbnormalReport:
    return await load_report(session=session, report_id=report_id)


@router.get(
    "/reports/{report_id}/report.xlsx",
    summary="A stored report as Excel",
    responses={200: {"content": {XLSX_MEDIA_TYPE: {}}}},
)
async def stored_xlsx(report_id: str, _: Readers, session: DbSession, runtime: Runtime) -> Response:
    return await _xlsx(await load_report(session=session, report_id=report_id), runtime)


@router.get(
    "/reports/{report_id}/report.pdf",
    summary="A stored report as PDF",
    responses={200: {"content": {PDF_MEDIA_TYPE: {}}}},
)
async def stored_pdf(report_id: str, _: Readers, session: DbSession, runtime: Runtime) -> Response:
    return await _pdf(await load_report(session=session, report_id=report_id), runtime)
