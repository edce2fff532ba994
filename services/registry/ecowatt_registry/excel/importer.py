"""Importing the archive workbook: validate everything, then write all of it or none of it.

Rows are matched by their id column (MN for devices): a row whose values equal the stored
entity changes nothing, so importing the same workbook twice changes nothing the second
time. By default the workbook is all-or-nothing: one bad cell and nothing is written. In
`partial` mode the bad rows, and the rows that depend on them, are skipped and the rest is
written. Every problem is reported as (工作表, 行号, 列, 错误信息) in Chinese. The import
adds and updates; it never deletes (set 状态 to 拆除 to retire a facility or point).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from typing import IO, Any, Literal

from ecowatt_kernel.excel import CellError, ParsedSheet, load_workbook_bytes, read_sheet
from ecowatt_kernel.identity import DataScope
from ecowatt_kernel.passwords import hash_password, verify_password
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_registry import validation
from ecowatt_registry.archive import DEVICE, KINDS, ArchiveWriter
from ecowatt_registry.checks import ReferenceChecker
from ecowatt_registry.control_groups.models import ControlGroupFields
from ecowatt_registry.devices.models import DeviceFields
from ecowatt_registry.enterprises.models import EnterpriseFields
from ecowatt_registry.excel.columns import SHEETS, CellValueError, SheetSpec
from ecowatt_registry.facilities.models import FacilityFields
from ecowatt_registry.points.models import PointFields, threshold_problems
from ecowatt_registry.production_lines.models import ProductionLineFields

Mode = Literal["all", "partial"]

FIELD_MODELS: dict[str, type[BaseModel]] = {
    "enterprise": EnterpriseFields,
    "production_line": ProductionLineFields,
    "facility": FacilityFields,
    "device": DeviceFields,
    "point": PointFields,
    "control_group": ControlGroupFields,
}
THRESHOLD_ZH = {
    "a total-line point (总电) has no facility": "总电点位不应填写设施编号",
    "the start/stop threshold exceeds the maximum load": "启停阈值不能大于最大负荷",
    "the low-load threshold must exceed the start/stop threshold": "低负荷阈值应大于启停阈值",
    "the low-load threshold exceeds the maximum load": "低负荷阈值不能大于最大负荷",
}

GROUP_ZH = {
    "valid_to must not be before valid_from": ("valid_to", "失效日期不能早于生效日期"),
    "a facility cannot be on both sides": (
        "control_facility_ids",
        "同一设施不能既是产污设施又是治污设施",
    ),
    "a facility is listed twice": ("production_facility_ids", "设施编号重复"),
}


@dataclass
class SheetCounts:
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0


@dataclass
class ImportReport:
    """What an import found and did."""

    applied: bool
    mode: Mode
    dry_run: bool
    sheets: dict[str, SheetCounts] = field(default_factory=dict)
    errors: list[CellError] = field(default_factory=list)


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, int | float) else str(value)


def _zh(error: ErrorDetails) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    messages = {
        "missing": "不能为空",
        "string_too_short": "不能为空",
        "too_short": "至少填写一项",
        "literal_error": "取值无效",
        "bool_type": "应为“是”或“否”",
        "string_pattern_mismatch": "格式不正确",
    }
    if kind in messages:
        return messages[kind]
    if kind == "greater_than":
        return f"必须大于 {_number(ctx.get('gt'))}"
    if kind == "greater_than_equal":
        return f"不能小于 {_number(ctx.get('ge'))}"
    if kind == "less_than_equal":
        return f"不能大于 {_number(ctx.get('le'))}"
    if kind == "less_than":
        return f"必须小于 {_number(ctx.get('lt'))}"
    if kind in ("string_too_long", "too_long"):
        return f"过长（最多 {ctx.get('max_length')}）"
    return f"取值无效：{error.get('msg', '')}"


def _special_zh(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if name == "credit_code":
        return validation.credit_code_problem_zh(str(value))
    if name == "district_code" and validation.district_problem(str(value)):
        return f"“{value}”不是陕西省区县级行政区划代码（GB/T 2260）"
    if name == "zone" and validation.zone_problem(str(value)):
        return f"“{value}”不是已知的管理片区"
    if name == "industry_code" and validation.industry_problem(str(value)):
        return f"“{value}”不是 GB/T 4754-2017 行业代码"
    return None


@dataclass
class _Row:
    sheet: SheetSpec
    number: int
    key: str
    present: dict[str, Any]
    full: dict[str, Any] = field(default_factory=dict)
    password: str | None = None


async def import_workbook(
    session: AsyncSession,
    data: bytes | IO[bytes],
    *,
    scope: DataScope,
    actor: str | None,
    reason: str | None = None,
    mode: Mode = "all",
    dry_run: bool = False,
) -> ImportReport:
    """Validate and (unless rejected) write the workbook in the session's transaction.

    `data` is the .xlsx (bytes or a binary file, e.g. an upload's temporary file); it is
    parsed in a worker thread. WorkbookError when it is no readable workbook."""
    report = ImportReport(applied=False, mode=mode, dry_run=dry_run)

    def parse() -> list[tuple[SheetSpec, ParsedSheet]]:
        workbook = load_workbook_bytes(data)
        try:
            return [(s, read_sheet(workbook, s.title, s.columns)) for s in SHEETS]
        finally:
            workbook.close()

    parsed = await asyncio.to_thread(parse)
    rows: dict[tuple[str, str], _Row] = {}
    rejected: set[tuple[str, str]] = set()
    errors = report.errors

    def fail(row: _Row | None, sheet: SheetSpec, number: int, key: str, message: str) -> None:
        header = sheet.field(key).column.header if key in {f.key for f in sheet.fields} else key
        errors.append(CellError(sheet.title, number, header, message))
        if row is not None:
            rejected.add((sheet.kind, row.key))

    if not any(p.present for _, p in parsed):
        errors.append(
            CellError(
                "",
                1,
                "",
                "工作簿中没有可识别的工作表（企业、生产线、设施、数采仪、监测点位、产治关系）",
            )
        )
        return report
    for sheet, sheet_rows in parsed:
        report.sheets[sheet.title] = SheetCounts(rows=len(sheet_rows.rows))
        errors.extend(sheet_rows.errors)
        if sheet_rows.errors:
            continue
        for parsed_row in sheet_rows.rows:
            present: dict[str, Any] = {}
            unreadable: set[str] = set()
            for f in sheet.fields:
                if f.export_only or f.key not in parsed_row.values:
                    continue
                try:
                    present[f.key] = f.parse(parsed_row.values[f.key])
                except CellValueError as exc:
                    fail(None, sheet, parsed_row.row, f.key, str(exc))
                    unreadable.add(f.key)
            key = present.get(sheet.pk)
            if key is None:
                fail(None, sheet, parsed_row.row, sheet.pk, "不能为空")
                continue
            key = str(key)
            problem = validation.mn_problem(key) if sheet.pk == "mn" else validation.id_problem(key)
            if problem:
                fail(
                    None,
                    sheet,
                    parsed_row.row,
                    sheet.pk,
                    "编号只能包含字母、数字和 _ . : -"
                    if sheet.pk != "mn"
                    else "MN 应为 1-24 位字母、数字、_ 或 -",
                )
                continue
            if (sheet.kind, key) in rows:
                fail(
                    None,
                    sheet,
                    parsed_row.row,
                    sheet.pk,
                    f"编号“{key}”与第 {rows[(sheet.kind, key)].number} 行重复",
                )
                rejected.add((sheet.kind, key))
                continue
            row = _Row(sheet, parsed_row.row, key, present, password=present.pop("password", None))
            rows[(sheet.kind, key)] = row
            if unreadable:
                rejected.add((sheet.kind, key))
            # Field rules run on the readable cells too, so that one pass reports them all.
            _validate_fields(row, fail, skip=unreadable)
    if errors and mode == "all":
        _count_rejected(report, rows, rejected)
        return report

    # Cross-entity rules, on each entity as it will be: the stored row overlaid with the
    # columns the workbook has. In partial mode failing rows are dropped (and, next round,
    # the rows that depend on them).
    reader = ArchiveWriter(session, actor=None)
    stored: dict[str, dict[str, dict[str, Any]]] = {}
    for sheet in SHEETS:
        keys = [key for (sheet_kind, key) in rows if sheet_kind == sheet.kind]
        stored[sheet.kind] = await reader.load(KINDS[sheet.kind], keys) if keys else {}
    for _ in range(8):
        proposed: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        for (sheet_kind, key), row in rows.items():
            if (sheet_kind, key) in rejected:
                continue
            before = stored[sheet_kind].get(key)
            proposed[sheet_kind][key] = (
                row.full
                if before is None
                else before | {k: v for k, v in row.full.items() if k in row.present}
            )
        issues = await ReferenceChecker(session, proposed, scope=scope).check()
        for issue in issues:
            row = rows[(issue.kind, issue.key)]
            fail(row, row.sheet, row.number, issue.field, issue.zh)
        if not issues or mode == "all":
            break
    if errors and mode == "all":
        _count_rejected(report, rows, rejected)
        return report

    await _hash_passwords(session, [r for k, r in rows.items() if k not in rejected and r.password])
    writer = ArchiveWriter(session, actor=actor, reason=reason or "Excel 导入")
    for sheet in SHEETS:
        kind = KINDS[sheet.kind]
        states = [
            row.full
            for (name, key), row in rows.items()
            if name == sheet.kind and (name, key) not in rejected
        ]
        existing = stored[sheet.kind]
        writes = [
            {
                k: v
                for k, v in state.items()
                if k in rows[(sheet.kind, state[kind.pk])].present
                or k == "password_hash"
                or state[kind.pk] not in existing
            }
            for state in states
        ]
        result = await writer.upsert(kind, writes)
        counts = report.sheets[sheet.title]
        counts.created, counts.updated, counts.unchanged = (
            len(result.created),
            len(result.updated),
            len(result.unchanged),
        )
    _count_rejected(report, rows, rejected)
    report.applied = not dry_run
    return report


def _count_rejected(
    report: ImportReport, rows: dict[tuple[str, str], _Row], rejected: set[tuple[str, str]]
) -> None:
    for sheet in SHEETS:
        report.sheets.setdefault(sheet.title, SheetCounts()).rejected = sum(
            1 for kind, _ in rejected if kind == sheet.kind
        )


def _validate_fields(row: _Row, fail: Any, *, skip: set[str] | None = None) -> None:
    """Field rules of one row; fills `row.full` with the validated values.

    Cells in `skip` could not be read (already reported): they are left out, and problems
    on them are not reported twice.
    """
    sheet = row.sheet
    skip = skip or set()
    values = {k: v for k, v in row.present.items() if k != sheet.pk and k not in skip}
    model = FIELD_MODELS[sheet.kind]
    # An empty cell of a field with a default means "the default", not "nothing".
    for name, info in model.model_fields.items():
        if (
            name in values
            and values[name] is None
            and info.default is not None
            and not info.is_required()
        ):
            values.pop(name)
    try:
        validated = model.model_validate(values)
    except ValidationError as exc:
        for error in exc.errors():
            loc = [str(p) for p in error["loc"]]
            name = loc[0] if loc else ""
            if not name and sheet.kind == "point":
                for field_name, message in threshold_problems(
                    point_type=values.get("point_type", ""),
                    facility_id=values.get("facility_id"),
                    max_load_kw=values.get("max_load_kw"),
                    start_stop_kw=values.get("start_stop_kw"),
                    low_load_kw=values.get("low_load_kw"),
                ):
                    fail(
                        row,
                        sheet,
                        row.number,
                        field_name,
                        THRESHOLD_ZH.get(message, "点位类型需要填写设施编号"),
                    )
                continue
            if not name:
                message = str(error.get("msg", "")).removeprefix("Value error, ")
                column, text = next(
                    ((c, zh) for en, (c, zh) in GROUP_ZH.items() if message.startswith(en)),
                    ("", _zh(error)),
                )
                fail(row, sheet, row.number, column, text)
                continue
            if name in skip:
                continue
            message = _special_zh(name, values.get(name)) or _zh(error)
            fail(row, sheet, row.number, name, message)
        return
    row.full = {sheet.pk: row.key, **validated.model_dump()}


async def _hash_passwords(session: AsyncSession, rows: list[_Row]) -> None:
    """Set `password_hash` where a row's password differs from the stored one."""
    if not rows:
        return
    stored = await ArchiveWriter(session, actor=None).load(DEVICE, [r.key for r in rows])

    def digest(row: _Row) -> str | None:
        current = stored.get(row.key, {}).get("password_hash")
        assert row.password is not None
        if current and verify_password(row.password, current):
            return None  # unchanged: keep the stored hash (a re-import changes nothing)
        return hash_password(row.password)

    # hashlib.scrypt releases the GIL: threads use every core.
    digests = await asyncio.gather(*(asyncio.to_thread(digest, row) for row in rows))
    for row, value in zip(rows, digests, strict=True):
        if value is not None:
            row.full["password_hash"] = value
            row.present["password_hash"] = value
