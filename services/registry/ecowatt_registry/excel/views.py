"""Excel endpoints: template, import (with a Chinese error report) and whole-archive export."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Annotated, Any, Literal

from ecowatt_kernel.app import DbSession
from ecowatt_kernel.excel import (
    XLSX_MEDIA_TYPE,
    Column,
    Sheet,
    WorkbookError,
    errors_to_xlsx,
    write_workbook,
)
from ecowatt_kernel.identity import CurrentIdentity
from ecowatt_kernel.problems import Problem
from ecowatt_kernel.uploads import MIB, UploadLimits, accept_upload
from fastapi import APIRouter, File, Query, Request, Response, UploadFile
from fastapi.responses import JSONResponse
from sqlalchemy import select

from ecowatt_registry import access
from ecowatt_registry.archive import KINDS
from ecowatt_registry.crud import EnterpriseFilters
from ecowatt_registry.enterprises.models import Enterprise
from ecowatt_registry.events.relay import commit
from ecowatt_registry.excel.columns import SHEETS
from ecowatt_registry.excel.exporter import export_archive
from ecowatt_registry.excel.importer import import_workbook

router = APIRouter(tags=["excel"])
EXCEL_UPLOAD = UploadLimits(max_file_bytes=20 * MIB, suffixes=(".xlsx",))
"""One archive workbook: the synthetic 200-enterprise city is under 1 MiB, so 20 MiB holds a
province with room to spare."""
_XLSX: dict[int | str, dict[str, Any]] = {200: {"content": {XLSX_MEDIA_TYPE: {}}}}


def _attachment(data: bytes, filename: str) -> Response:
    return Response(
        data,
        media_type=XLSX_MEDIA_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


_NOTE_COLUMNS = [
    Column("sheet", "工作表", width=12),
    Column("header", "列名", width=18),
    Column("key", "字段", width=24),
    Column("required", "必填", width=8),
    Column("note", "说明", width=60),
]


def template_bytes() -> bytes:
    """An empty archive workbook with a 说明 (instructions) sheet."""
    notes = [
        {
            "sheet": sheet.title,
            "header": f.column.header,
            "key": f.key,
            "required": "是" if f.column.required else "",
            "note": "；".join(
                part
                for part in (
                    f.column.note,
                    "可选：" + "、".join(f.column.choices) if f.column.choices else "",
                )
                if part
            ),
        }
        for sheet in SHEETS
        for f in sheet.fields
        if not f.export_only
    ]
    sheets = [
        Sheet(s.title, [f.column for f in s.fields if not f.export_only], dropdowns=True)
        for s in SHEETS
    ]
    return write_workbook([*sheets, Sheet("说明", _NOTE_COLUMNS, notes)])


@router.get(
    "/import/template",
    summary="Download the empty archive workbook (with instructions)",
    response_class=Response,
    responses=_XLSX,
)
async def download_template(_: CurrentIdentity) -> Response:
    return _attachment(await asyncio.to_thread(template_bytes), "registry-template.xlsx")


@router.post(
    "/import",
    summary="Import an archive workbook (idempotent; all-or-nothing by default)",
    dependencies=[access.CanEdit],
    responses={200: {"content": {"application/json": {}, XLSX_MEDIA_TYPE: {}}}},
    **EXCEL_UPLOAD.route_options(),
)
async def import_archive(
    request: Request,
    db_session: DbSession,
    identity: CurrentIdentity,
    file: Annotated[UploadFile, File(description="The .xlsx workbook")],
    mode: Literal["all", "partial"] = Query(
        "all", description="all: any error rejects the workbook; partial: skip bad rows"
    ),
    dry_run: bool = Query(False, description="Validate and count, write nothing"),
    reason: str | None = Query(None, max_length=500, description="Kept in the history"),
    report: Literal["json", "xlsx"] = Query("json", description="xlsx: the error report workbook"),
) -> Response:
    """Rows are matched by id; unchanged rows change nothing. Errors name sheet, row, column."""
    upload = accept_upload(file, EXCEL_UPLOAD)
    try:
        with access.conflicts_as_409():
            result = await import_workbook(
                db_session,
                upload.file,
                scope=identity.scope,
                actor=access.actor_of(identity),
                reason=reason,
                mode=mode,
                dry_run=dry_run,
            )
    except WorkbookError as exc:
        raise Problem(str(exc), status=422, type_suffix="invalid-workbook") from None
    if result.applied:
        await commit(request, db_session)
    else:
        await db_session.rollback()
    if report == "xlsx":
        return _attachment(
            await asyncio.to_thread(errors_to_xlsx, result.errors), "import-report.xlsx"
        )
    body: dict[str, Any] = {
        "applied": result.applied,
        "mode": result.mode,
        "dry_run": result.dry_run,
        "sheets": {title: asdict(counts) for title, counts in result.sheets.items()},
        "errors": [asdict(e) for e in result.errors],
    }
    return JSONResponse(
        body, status_code=200 if result.applied or (dry_run and not result.errors) else 422
    )


@router.get(
    "/export/archive.xlsx",
    summary="Export the archive (every sheet, importable) for the filtered enterprises",
    response_class=Response,
    responses=_XLSX,
)
async def export_whole_archive(
    db_session: DbSession, identity: CurrentIdentity, filters: EnterpriseFilters
) -> Response:
    enterprise_ids = list(
        (
            await db_session.scalars(
                select(Enterprise.id)
                .where(access.visible(identity.scope), *filters)
                .order_by(Enterprise.id)
            )
        ).all()
    )
    ids: dict[str, list[str]] = {"enterprise": enterprise_ids}
    for name in ("production_line", "facility", "device", "point", "control_group"):
        table = KINDS[name].table
        pk = table.c[KINDS[name].pk]
        found: list[str] = []
        for start in range(0, len(enterprise_ids), 5000):
            chunk = enterprise_ids[start : start + 5000]
            found.extend(
                (
                    await db_session.scalars(
                        select(pk).where(table.c.enterprise_id.in_(chunk)).order_by(pk)
                    )
                ).all()
            )
        ids[name] = found
    return _attachment(await export_archive(db_session, ids), "registry-archive.xlsx")
