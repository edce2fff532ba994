"""Excel (.xlsx) helpers every service uses for exports, templates and imports (openpyxl).

Headers are Chinese first (the user interface speaks zh-CN first); each column also has an
English key, and a workbook may use either as its header, so that people and programs can
both fill one in. Writing streams rows (openpyxl write-only mode), reading streams them too
(read-only mode), so tens of thousands of rows stay cheap.

    columns = [Column("name", "企业名称", required=True), Column("district_code", "区县代码")]
    data = rows_to_xlsx(columns, rows, title="企业")
    parsed = read_sheet(load_workbook_bytes(data), "企业", columns)
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from openpyxl import Workbook, load_workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.datavalidation import DataValidation

__all__ = [
    "XLSX_MEDIA_TYPE",
    "CellError",
    "Column",
    "ParsedRow",
    "ParsedSheet",
    "Sheet",
    "WorkbookError",
    "errors_to_xlsx",
    "load_workbook_bytes",
    "read_sheet",
    "rows_to_xlsx",
    "write_workbook",
]

XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_HEADER_FONT = Font(bold=True)
_REQUIRED_FILL = PatternFill("solid", fgColor="FFF2CC")
_MAX_VALIDATION_ROWS = 5000


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


class WorkbookError(ValueError):
    """The upload is not a readable .xlsx workbook."""


def _cell_value(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is not None:
        # Excel has no time zones: write the wall-clock time the value carries.
        return value.replace(tzinfo=None)
    if isinstance(value, list | tuple | set | frozenset):
        return "、".join(str(v) for v in value)
    return value


def write_workbook(sheets: Sequence[Sheet]) -> bytes:
    """An .xlsx with one sheet per `Sheet`: bold Chinese headers, then the rows."""
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
        for row in spec.rows:
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


def load_workbook_bytes(data: bytes) -> Workbook:
    """Open an uploaded .xlsx for streaming reads; WorkbookError when it is not one."""
    try:
        return load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise WorkbookError(f"不是有效的 Excel (.xlsx) 文件：{exc}") from exc


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


def read_sheet(workbook: Workbook, title: str, columns: Sequence[Column]) -> ParsedSheet:
    """The non-empty rows of sheet `title`, with values keyed by column key.

    A header cell matches a column by its Chinese header or its English key (a trailing `*`
    and surrounding spaces are ignored). Unknown columns are ignored; a missing required
    column is an error on row 1. Strings are stripped and empty strings become None.
    """
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
        row = {key: _clean(values[i]) if i < len(values) else None for i, key in positions.items()}
        if all(v is None for v in row.values()):
            continue
        parsed.rows.append(ParsedRow(row=number, values=row))
    return parsed
