"""Excel (.xlsx) helpers every service uses for exports, templates and imports (openpyxl).

Headers are Chinese first (the user interface speaks zh-CN first); each column also has an
English key, and a workbook may use either as its header, so that people and programs can
both fill one in. Writing streams rows (openpyxl write-only mode), reading streams them too
(read-only mode), so tens of thousands of rows stay cheap.

    columns = [Column("name", "企业名称", required=True), Column("district_code", "区县代码")]
    data = rows_to_xlsx(columns, rows, title="企业")
    parsed = read_sheet(load_workbook_bytes(data), "企业", columns)

Bounds, because workbooks come from outside and exports go to people:

- Reading: openpyxl parses with defusedxml (a dependency of this package; the import below
  fails closed without it), so a workbook declaring XML entities — an entity-expansion bomb
  or an external entity reaching for local files — is refused as a `WorkbookError`; the
  .xlsx (a zip) may unpack to at most `MAX_UNPACKED_BYTES` (a zip bomb is refused before
  any XML is read); a sheet may hold at most `MAX_IMPORT_ROWS` rows.
- Writing: an export holds at most `MAX_EXPORT_ROWS` rows per sheet (`ExportTooLarge`, a
  422 problem stating the cap, suggests narrowing the filters), and `xlsx_response` builds
  the workbook in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import io
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import IO, Any

import openpyxl
from defusedxml import DefusedXmlException
from fastapi.responses import Response
from openpyxl import Workbook, load_workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.datavalidation import DataValidation

from ecowatt_kernel.errors import EcoWattError
from ecowatt_kernel.problems import Problem

if not openpyxl.DEFUSEDXML:  # pragma: no cover - only when OPENPYXL_DEFUSEDXML=False is set
    raise ImportError("openpyxl must parse with defusedxml: unset OPENPYXL_DEFUSEDXML")

__all__ = [
    "MAX_EXPORT_ROWS",
    "MAX_IMPORT_ROWS",
    "MAX_UNPACKED_BYTES",
    "XLSX_MEDIA_TYPE",
    "CellError",
    "Column",
    "ExportTooLarge",
    "ParsedRow",
    "ParsedSheet",
    "Sheet",
    "WorkbookError",
    "check_export_size",
    "errors_to_xlsx",
    "load_workbook_bytes",
    "read_sheet",
    "rows_to_xlsx",
    "write_workbook",
    "xlsx_response",
]

XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_HEADER_FONT = Font(bold=True)
_REQUIRED_FILL = PatternFill("solid", fgColor="FFF2CC")
_MAX_VALIDATION_ROWS = 5000
MAX_EXPORT_ROWS = 100_000
"""Rows per exported sheet: every list the bureau exports today (200 enterprises, ~1,900
points, a year of a district's findings) fits many times; a city-wide dump of raw data
does not belong in a spreadsheet (Excel itself stops at 1,048,576 rows)."""
MAX_IMPORT_ROWS = 100_000
"""Rows per imported sheet (a province's archive is a few ten thousand points)."""
MAX_UNPACKED_BYTES = 256 * 1024 * 1024
"""What an uploaded .xlsx may unpack to: 25 times the largest upload, for zip bombs."""


@dataclass(frozen=True)
class Column:
    """One column: its English key, Chinese header, and how people should fill it."""

    key: str
    header: str
    required: bool = False
    width: int = 14
    note: str = ""
    choices: tuple[str, ...] = ()
    """Allowed values; a template offers them as a drop-down list."""


@dataclass(frozen=True)
class Sheet:
    """A sheet to write: title, columns and rows (mappings from column key to value)."""

    title: str
    columns: Sequence[Column]
    rows: Iterable[Mapping[str, Any]] = ()
    dropdowns: bool = False
    """Add drop-down lists for columns with `choices` (templates)."""


@dataclass(frozen=True)
class CellError:
    """A problem found in one cell (or row, when `column` is empty) of an uploaded workbook."""

    sheet: str
    row: int
    column: str
    message: str


@dataclass(frozen=True)
class ParsedRow:
    """A non-empty data row: its 1-based row number in the sheet and its values by key."""

    row: int
    values: dict[str, Any]


@dataclass
class ParsedSheet:
    """The rows of a sheet, and problems with its header."""

    title: str
    rows: list[ParsedRow] = field(default_factory=list)
    errors: list[CellError] = field(default_factory=list)
    present: bool = True


class WorkbookError(EcoWattError, ValueError):
    """The upload is not a readable .xlsx workbook."""


class ExportTooLarge(Problem):
    """An export would hold more rows than `MAX_EXPORT_ROWS` (422, stating the cap)."""

    status, type_suffix = 422, "export-too-large"

    def __init__(self, rows: int | None, limit: int) -> None:
        counted = f"（本次至少 {rows} 行）" if rows is not None else ""
        super().__init__(
            f"导出最多 {limit} 行{counted}，请缩小筛选范围后再导出 "
            f"(an export holds at most {limit} rows per sheet; narrow the filters)",
            max_rows=limit,
            rows=rows,
        )


def check_export_size(rows: int, *, limit: int = MAX_EXPORT_ROWS) -> None:
    """ExportTooLarge when `rows` exceed `limit`: check a count before loading the rows."""
    if rows > limit:
        raise ExportTooLarge(rows, limit)


def _capped(rows: Iterable[Mapping[str, Any]], limit: int) -> Iterable[Mapping[str, Any]]:
    for count, row in enumerate(rows, start=1):
        if count > limit:
            raise ExportTooLarge(count, limit)
        yield row


def _cell_value(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is not None:
        # Excel has no time zones: write the wall-clock time the value carries.
        return value.replace(tzinfo=None)
    if isinstance(value, list | tuple | set | frozenset):
        return "、".join(str(v) for v in value)
    return value


def write_workbook(sheets: Sequence[Sheet], *, max_rows: int = MAX_EXPORT_ROWS) -> bytes:
    """An .xlsx with one sheet per `Sheet`: bold Chinese headers, then the rows (at most
    `max_rows` per sheet, else ExportTooLarge). Blocking: see `xlsx_response`."""
    workbook = Workbook(write_only=True)
    for spec in sheets:
        sheet = workbook.create_sheet(title=spec.title[:31])
        for index, column in enumerate(spec.columns, start=1):
            sheet.column_dimensions[get_column_letter(index)].width = column.width
        sheet.freeze_panes = "A2"
        if spec.dropdowns:
            for index, column in enumerate(spec.columns, start=1):
                if column.choices:
                    letter = get_column_letter(index)
                    validation = DataValidation(
                        type="list",
                        formula1='"' + ",".join(column.choices) + '"',
                        allow_blank=not column.required,
                    )
                    validation.add(f"{letter}2:{letter}{_MAX_VALIDATION_ROWS}")
                    sheet.data_validations.append(validation)
        header = []
        for column in spec.columns:
            cell = WriteOnlyCell(sheet, value=column.header + ("*" if column.required else ""))
            cell.font = _HEADER_FONT
            cell.alignment = Alignment(horizontal="center")
            if column.required:
                cell.fill = _REQUIRED_FILL
            header.append(cell)
        sheet.append(header)
        keys = [column.key for column in spec.columns]
        for row in _capped(spec.rows, max_rows):
            sheet.append([_cell_value(row.get(key)) for key in keys])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def rows_to_xlsx(
    columns: Sequence[Column], rows: Iterable[Mapping[str, Any]], *, title: str = "数据"
) -> bytes:
    """A one-sheet .xlsx of `rows` under Chinese headers."""
    return write_workbook([Sheet(title=title, columns=columns, rows=rows)])


ERROR_COLUMNS = (
    Column("sheet", "工作表", width=16),
    Column("row", "行号", width=8),
    Column("column", "列", width=20),
    Column("message", "错误信息", width=80),
)


def errors_to_xlsx(errors: Iterable[CellError], *, title: str = "导入错误") -> bytes:
    """A row-by-row error report (工作表, 行号, 列, 错误信息) as .xlsx."""
    return rows_to_xlsx(
        ERROR_COLUMNS,
        (
            {"sheet": e.sheet, "row": e.row, "column": e.column, "message": e.message}
            for e in errors
        ),
        title=title,
    )


async def xlsx_response(
    sheets: Sequence[Sheet], filename: str, *, max_rows: int = MAX_EXPORT_ROWS
) -> Response:
    """An .xlsx download of `sheets`, built in a worker thread (at most `max_rows` per sheet).

    Rows should be a list already read from the database: the thread must not touch the
    session."""
    data = await asyncio.to_thread(write_workbook, sheets, max_rows=max_rows)
    return Response(
        data,
        media_type=XLSX_MEDIA_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


_ENTITIES_REFUSED = (
    "工作簿含有 XML 实体声明（可能是 XML 炸弹或外部实体引用），已拒绝 "
    "(the workbook declares XML entities and was refused)"
)


def _declares_entities(error: BaseException) -> bool:
    """True when defusedxml refused `error`'s XML (openpyxl re-raises it as its own error)."""
    current: BaseException | None = error
    for _ in range(10):
        if current is None:
            return False
        if isinstance(current, DefusedXmlException):
            return True
        current = current.__cause__ or current.__context__
    return False


def _unreadable(error: BaseException, what: str) -> WorkbookError:
    if _declares_entities(error):
        return WorkbookError(_ENTITIES_REFUSED)
    return WorkbookError(f"{what}：{str(error).splitlines()[0] if str(error) else error!r}")


def _check_unpacked_size(source: IO[bytes], limit: int) -> None:
    with zipfile.ZipFile(source) as archive:
        unpacked = sum(info.file_size for info in archive.infolist())
    source.seek(0)
    if unpacked > limit:
        raise WorkbookError(
            f"工作簿解压后 {unpacked} 字节，超过上限 {limit} 字节，已拒绝 "
            f"(the workbook unpacks to more than {limit} bytes)"
        )


def load_workbook_bytes(
    data: bytes | IO[bytes], *, max_unpacked_bytes: int = MAX_UNPACKED_BYTES
) -> Workbook:
    """Open an uploaded .xlsx (bytes or a binary file) for streaming reads; WorkbookError
    when it is not one, unpacks too large, or declares XML entities. Blocking."""
    source: IO[bytes] = io.BytesIO(data) if isinstance(data, bytes) else data
    try:
        source.seek(0)
        _check_unpacked_size(source, max_unpacked_bytes)
        return load_workbook(source, read_only=True, data_only=True)
    except WorkbookError:
        raise
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError) as exc:
        raise _unreadable(exc, "不是有效的 Excel (.xlsx) 文件") from exc


def _normalise_header(value: Any) -> str:
    text = str(value or "").strip().replace("（", "(").replace("）", ")")
    return text.rstrip("*").strip()


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        stripped = value.strip()
        return stripped or None
    if isinstance(value, datetime | date):
        return value
    return value


def read_sheet(
    workbook: Workbook,
    title: str,
    columns: Sequence[Column],
    *,
    max_rows: int = MAX_IMPORT_ROWS,
) -> ParsedSheet:
    """The non-empty rows of sheet `title`, with values keyed by column key. Blocking.

    A header cell matches a column by its Chinese header or its English key (a trailing `*`
    and surrounding spaces are ignored). Unknown columns are ignored; a missing required
    column is an error on row 1. Strings are stripped and empty strings become None. More
    than `max_rows` rows is an error (the sheet is not read further); a sheet whose XML
    declares entities raises WorkbookError.
    """
    try:
        return _read_sheet(workbook, title, columns, max_rows)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError) as exc:
        raise _unreadable(exc, f"工作表“{title}”无法读取") from exc


def _read_sheet(
    workbook: Workbook, title: str, columns: Sequence[Column], max_rows: int
) -> ParsedSheet:
    parsed = ParsedSheet(title=title)
    if title not in workbook.sheetnames:
        parsed.present = False
        return parsed
    by_name: dict[str, Column] = {}
    for column in columns:
        by_name[column.header] = column
        by_name[column.key] = column
    rows = workbook[title].iter_rows(values_only=True)
    header = next(rows, None)
    positions: dict[int, str] = {}
    for index, value in enumerate(header or ()):
        match = by_name.get(_normalise_header(value))
        if match is not None and match.key not in positions.values():
            positions[index] = match.key
    found = set(positions.values())
    for column in columns:
        if column.required and column.key not in found:
            parsed.errors.append(CellError(title, 1, column.header, f"缺少必填列“{column.header}”"))
    for number, values in enumerate(rows, start=2):
        if number - 1 > max_rows:
            parsed.errors.append(
                CellError(title, number, "", f"工作表超过 {max_rows} 行上限，请分批导入")
            )
            break
        row = {key: _clean(values[i]) if i < len(values) else None for i, key in positions.items()}
        if all(v is None for v in row.values()):
            continue
        parsed.rows.append(ParsedRow(row=number, values=row))
    return parsed
