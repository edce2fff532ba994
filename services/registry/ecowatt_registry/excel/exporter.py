"""Exports: any filtered list as one sheet, or the whole archive as an importable workbook."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from ecowatt_kernel.excel import MAX_EXPORT_ROWS, Column, Sheet, check_export_size, write_workbook
from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_registry.archive import KINDS, ArchiveWriter
from ecowatt_registry.excel.columns import SHEET_BY_KIND, SHEETS, SheetSpec, render_row

_CHUNK = 5000
EXPORT_ROW_LIMIT = MAX_EXPORT_ROWS
"""Rows per exported sheet (the kernel's cap); checked on the ids before any row is read."""


async def sheet_rows(
    session: AsyncSession, sheet: SheetSpec, ids: list[str]
) -> list[dict[str, Any]]:
    """The rendered rows of `ids`, in that order."""
    kind = KINDS[sheet.kind]
    reader = ArchiveWriter(session, actor=None)
    rendered: list[dict[str, Any]] = []
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        rows = await reader.load(kind, chunk)
        rendered.extend(render_row(sheet, rows[key]) for key in chunk if key in rows)
    return rendered


def export_columns(sheet: SheetSpec) -> list[Column]:
    return [f.column for f in sheet.fields if not f.import_only]


def exporter(kind: str) -> Callable[[AsyncSession, Select[Any]], Awaitable[bytes]]:
    """An export of one entity list: `query` selects the ids, in order."""
    sheet = SHEET_BY_KIND[kind]

    async def export(session: AsyncSession, query: Select[Any]) -> bytes:
        ids = list((await session.scalars(query.limit(EXPORT_ROW_LIMIT + 1))).all())
        check_export_size(len(ids), limit=EXPORT_ROW_LIMIT)
        rows = await sheet_rows(session, sheet, ids)
        return await asyncio.to_thread(
            write_workbook,
            [Sheet(sheet.title, export_columns(sheet), rows)],
            max_rows=EXPORT_ROW_LIMIT,
        )

    return export


async def export_archive(session: AsyncSession, ids_by_kind: dict[str, list[str]]) -> bytes:
    """A workbook of every sheet, importable as it is (each within the export cap)."""
    for ids in ids_by_kind.values():
        check_export_size(len(ids), limit=EXPORT_ROW_LIMIT)
    sheets = []
    for sheet in SHEETS:
        rows = await sheet_rows(session, sheet, ids_by_kind.get(sheet.kind, []))
        sheets.append(Sheet(sheet.title, [f.column for f in sheet.fields], rows))
    return await asyncio.to_thread(write_workbook, sheets, max_rows=EXPORT_ROW_LIMIT)
