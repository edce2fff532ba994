"""The reduction list as an Excel workbook: one sheet per alert level, as bureaus keep it.

Sheets 黄色预警, 橙色预警, 红色预警 (a 说明 sheet explains the columns). A row is one measure:
措施编号 (blank: new, or the existing measure with the same enterprise, level and targets),
企业编号, 对象类型 (企业/生产线/设施/点位), 对象编号 (、-separated), 措施 (停产/限产/错峰生产/
豁免), 减排比例(%) or 允许负荷(%额定功率) for 限产, 错峰时段 (`22:00-06:00、12:00-13:00`),
退出时间(分钟), 豁免理由, 告知文本, 备注. Names and district are export-only.

Import is all or nothing: every problem is reported as (工作表, 行号, 列, 错误信息) in Chinese
and nothing is written if there is one. `mode=replace` makes the workbook the whole list of
the levels it has (within the caller's scope): measures missing from it are deleted.
Importing the same workbook twice changes nothing the second time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ecowatt_kernel.excel import (
    CellError,
    Column,
    Sheet,
    load_workbook_bytes,
    read_sheet,
    write_workbook,
)
from ecowatt_kernel.identity import DataScope
from ecowatt_kernel.registry_view import RegistryView
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_control_plan.measures import service
from ecowatt_control_plan.measures.models import (
    ACTION_ZH,
    DEFAULT_RAMP_MIN,
    LEVEL_ZH,
    LEVELS,
    TARGET_ZH,
    action_problems,
)

Mode = Literal["merge", "replace"]

COLUMNS: tuple[Column, ...] = (
    Column(
        "measure_id",
        "措施编号",
        width=16,
        note="留空：新增（或匹配同一企业、级别、对象的已有措施）",
    ),
    Column("enterprise_id", "企业编号", required=True, width=20),
    Column("enterprise_name", "企业名称", width=28, note="仅导出"),
    Column("district_code", "区县代码", width=10, note="仅导出"),
    Column("target_kind", "对象类型", required=True, width=10, choices=tuple(TARGET_ZH.values())),
    Column("target_ids", "对象编号", width=24, note="多个用“、”分隔；对象类型为企业时留空"),
    Column("target_names", "对象名称", width=28, note="仅导出"),
    Column("action", "措施", required=True, width=10, choices=tuple(ACTION_ZH.values())),
    Column("reduction_pct", "减排比例(%)", width=12, note="限产：相对基线的减排比例"),
    Column("allowed_load_pct", "允许负荷(%额定功率)", width=14, note="限产：允许的平均负荷"),
    Column("windows", "错峰时段", width=22, note="错峰生产：如 22:00-06:00、12:00-13:00"),
    Column("ramp_min", "退出时间(分钟)", width=12, note=f"留空为 {DEFAULT_RAMP_MIN} 分钟"),
    Column("exempt_reason", "豁免理由", width=20, note="豁免：A级、引领性、民生保障类等"),
    Column("legal_text", "告知文本", width=40, note="向企业展示的执行要求"),
    Column("note", "备注", width=20),
)
EXPORT_ONLY = frozenset({"enterprise_name", "district_code", "target_names"})
_HEADER = {c.key: c.header for c in COLUMNS}
_ACTION_BY_LABEL = {v: k for k, v in ACTION_ZH.items()} | {k: k for k in ACTION_ZH}
_KIND_BY_LABEL = {v: k for k, v in TARGET_ZH.items()} | {k: k for k in TARGET_ZH}
SHEET_LEVEL = {v: k for k, v in LEVEL_ZH.items()}


class CellProblem(ValueError):
    """A cell that cannot be read (Chinese message)."""


@dataclass
class SheetCounts:
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0


@dataclass
class ImportReport:
    applied: bool
    dry_run: bool
    mode: Mode
    version: int | None = None
    sheets: dict[str, SheetCounts] = field(default_factory=dict)
    errors: list[CellError] = field(default_factory=list)


# ---------------------------------------------------------------------------- cells


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip() or None


def _number(value: Any, *, low: float, high: float, high_inclusive: bool) -> float | None:
    if value is None:
        return None
    try:
        number = float(str(value).strip().rstrip("%"))
    except ValueError:
        raise CellProblem(f"“{value}”不是数字") from None
    if not (low < number and (number <= high if high_inclusive else number < high)):
        bound = f"{high:g}" + ("（含）" if high_inclusive else "（不含）")
        raise CellProblem(f"应大于 {low:g} 且不超过 {bound}")
    return number


def _ramp(value: Any) -> int:
    if value is None:
        return DEFAULT_RAMP_MIN
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise CellProblem(f"“{value}”不是整数") from None
    if not number.is_integer() or not 0 <= number <= 1440:
        raise CellProblem("应为 0 到 1440 之间的整数（分钟）")
    return int(number)


def _windows(value: Any) -> list[dict[str, str]]:
    text = _text(value)
    if not text:
        return []
    out = []
    for part in text.replace(",", "、").replace("，", "、").replace(";", "、").split("、"):
        part = part.strip()
        if not part:
            continue
        start, sep, end = (
            part.replace("～", "-").replace("~", "-").replace("至", "-").partition("-")
        )
        start, end = start.strip(), end.strip()
        if not sep or not _hhmm(start) or not _hhmm(end) or start == end:
            raise CellProblem(f"时段“{part}”格式不正确，应为 HH:MM-HH:MM")
        out.append({"start": _pad(start), "end": _pad(end)})
    return out


def _pad(hhmm: str) -> str:
    hour, minute = hhmm.split(":")
    return f"{int(hour):02d}:{minute}"


def _hhmm(value: str) -> bool:
    hour, sep, minute = value.partition(":")
    return (
        bool(sep)
        and hour.isdigit()
        and minute.isdigit()
        and len(minute) == 2
        and 0 <= int(hour) <= 23
        and 0 <= int(minute) <= 59
    )


def _ids(value: Any) -> list[str]:
    text = _text(value)
    if not text:
        return []
    return [p.strip() for p in text.replace(",", "、").replace("，", "、").split("、") if p.strip()]


def _choice(value: Any, mapping: dict[str, str], what: str) -> str:
    text = _text(value)
    if text is None:
        raise CellProblem("不能为空")
    if text not in mapping:
        raise CellProblem(f"“{text}”不是有效的{what}")
    return mapping[text]


# ---------------------------------------------------------------------------- export


def _row(view: RegistryView, m: dict[str, Any]) -> dict[str, Any]:
    kind = m["target_kind"]
    ids = [] if kind == "enterprise" else list(m["target_ids"])
    return {
        "measure_id": m["measure_id"],
        "enterprise_id": m["enterprise_id"],
        "enterprise_name": m.get("enterprise_name"),
        "district_code": m.get("district_code"),
        "target_kind": TARGET_ZH[kind],
        "target_ids": "、".join(ids) or None,
        "target_names": service.describe_target(view=view, kind=kind, ids=ids) or None,
        "action": ACTION_ZH[m["action"]],
        "reduction_pct": m.get("reduction_pct"),
        "allowed_load_pct": m.get("allowed_load_pct"),
        "windows": "、".join(f"{w['start']}-{w['end']}" for w in m.get("windows") or []) or None,
        "ramp_min": m.get("ramp_min"),
        "exempt_reason": m.get("exempt_reason"),
        "legal_text": m.get("legal_text"),
        "note": m.get("note"),
    }


_NOTE_COLUMNS = (
    Column("header", "列名", width=20),
    Column("key", "字段", width=20),
    Column("required", "必填", width=8),
    Column("note", "说明", width=70),
)


def workbook(view: RegistryView, measures: Sequence[dict[str, Any]]) -> bytes:
    """The list as a workbook: one sheet per level, then 说明 (importable as is)."""
    by_level: dict[str, list[dict[str, Any]]] = {level: [] for level in LEVELS}
    for m in sorted(measures, key=lambda m: (m["enterprise_id"], m["measure_id"])):
        by_level[m["level"]].append(_row(view, m))
    notes = [
        {
            "header": c.header,
            "key": c.key,
            "required": "是" if c.required else "",
            "note": "；".join(
                p for p in (c.note, "可选：" + "、".join(c.choices) if c.choices else "") if p
            ),
        }
        for c in COLUMNS
    ]
    sheets = [Sheet(LEVEL_ZH[level], COLUMNS, by_level[level], dropdowns=True) for level in LEVELS]
    return write_workbook([*sheets, Sheet("说明", _NOTE_COLUMNS, notes)])


# ---------------------------------------------------------------------------- import


@dataclass
class _Row:
    sheet: str
    number: int
    measure_id: str
    values: dict[str, Any]
    existing: bool


async def import_workbook(
    session: AsyncSession,
    *,
    data: bytes,
    view: RegistryView,
    scope: DataScope,
    actor: str | None,
    reason: str | None,
    mode: Mode = "merge",
    dry_run: bool = False,
) -> ImportReport:
    """Validate the workbook; unless it has a problem (or `dry_run`), write it as a version."""
    report = ImportReport(applied=False, dry_run=dry_run, mode=mode)
    book = await asyncio.to_thread(load_workbook_bytes, data)
    titles = [t for t in LEVEL_ZH.values() if t in book.sheetnames]
    if not titles:
        report.errors.append(
            CellError("", 1, "", "工作簿中没有“黄色预警”“橙色预警”“红色预警”工作表")
        )
        return report
    parsed = await asyncio.to_thread(lambda: [read_sheet(book, t, COLUMNS) for t in titles])
    stored = await service.load_current(session)
    stored_by_key = {service.natural_key(m): mid for mid, m in stored.items()}
    errors = report.errors
    rows: dict[str, _Row] = {}
    keys: dict[tuple[str, str, str, tuple[str, ...]], _Row] = {}

    def fail(sheet: str, number: int, key: str, message: str) -> None:
        errors.append(CellError(sheet, number, _HEADER.get(key, key), message))

    for sheet in parsed:
        level = SHEET_LEVEL[sheet.title]
        report.sheets[sheet.title] = SheetCounts(rows=len(sheet.rows))
        errors.extend(sheet.errors)
        if sheet.errors:
            continue
        for parsed_row in sheet.rows:
            cells = parsed_row.values
            number = parsed_row.row
            values: dict[str, Any] = {"level": level}
            bad = False
            readers = {
                "enterprise_id": lambda v: _text(v) or _raise("不能为空"),
                "target_kind": lambda v: _choice(v, _KIND_BY_LABEL, "对象类型"),
                "target_ids": _ids,
                "action": lambda v: _choice(v, _ACTION_BY_LABEL, "措施"),
                "reduction_pct": lambda v: _number(v, low=0, high=100, high_inclusive=True),
                "allowed_load_pct": lambda v: _number(v, low=0, high=100, high_inclusive=False),
                "windows": _windows,
                "ramp_min": _ramp,
                "exempt_reason": _text,
                "legal_text": _text,
                "note": _text,
            }
            for key, read in readers.items():
                try:
                    values[key] = read(cells.get(key))
                except CellProblem as exc:
                    fail(sheet.title, number, key, str(exc))
                    bad = True
            if bad:
                continue
            if values["target_kind"] == "enterprise":
                values["target_ids"] = [values["enterprise_id"]]
            problems = [(f, zh) for f, _, zh in action_problems(values)]
            for length_key, limit in (("exempt_reason", 200), ("legal_text", 2000), ("note", 500)):
                if values.get(length_key) and len(values[length_key]) > limit:
                    problems.append((length_key, f"过长（最多 {limit} 字）"))
            problems += [(p.field, p.zh) for p in service.target_problems(view=view, values=values)]
            enterprise = view.enterprise(values["enterprise_id"])
            if enterprise is not None and not scope.allows(
                district=enterprise.district_code, enterprise_id=enterprise.id
            ):
                problems.append(("enterprise_id", "企业不在您的数据范围内"))
            for key, message in problems:
                fail(sheet.title, number, key, message)
            if problems:
                continue
            given = _text(cells.get("measure_id"))
            if given is not None and not all(c.isalnum() or c in "_.:-" for c in given):
                fail(sheet.title, number, "measure_id", "编号只能包含字母、数字和 _ . : -")
                continue
            natural = service.natural_key(values)
            measure_id = given or stored_by_key.get(natural) or service.new_measure_id()
            if natural in keys:
                twin = keys[natural]
                fail(
                    sheet.title,
                    number,
                    "target_ids",
                    f"与工作表“{twin.sheet}”第 {twin.number} 行是同一企业、级别和对象的措施",
                )
                continue
            if measure_id in rows:
                fail(
                    sheet.title,
                    number,
                    "measure_id",
                    f"措施编号“{measure_id}”与工作表“{rows[measure_id].sheet}”第 "
                    f"{rows[measure_id].number} 行重复",
                )
                continue
            if given is not None and given in stored and stored[given]["level"] != level:
                fail(sheet.title, number, "measure_id", "措施编号属于另一预警级别的措施")
                continue
            row = _Row(sheet.title, number, measure_id, values, measure_id in stored)
            rows[measure_id] = row
            keys[natural] = row

    deletions: list[str] = []
    if mode == "replace":
        levels = {SHEET_LEVEL[t] for t in titles}
        deletions = [
            mid
            for mid, m in stored.items()
            if m["level"] in levels
            and mid not in rows
            and scope.allows(district=m["district_code"], enterprise_id=m["enterprise_id"])
        ]
    # Conflicts in the list as it would be (stored, minus deleted, overlaid by the workbook).
    resulting = {mid: m for mid, m in stored.items() if mid not in deletions}
    resulting.update({mid: {**r.values, "measure_id": mid} for mid, r in rows.items()})
    for mid, conflicts in service.conflict_problems(resulting.values()).items():
        conflicting = rows.get(mid)
        if conflicting is None:
            continue  # the stored side of a conflict: reported on the workbook's row
        for c in conflicts:
            fail(conflicting.sheet, conflicting.number, c.field, c.zh)
    if errors:
        return report

    for row in rows.values():
        counts = report.sheets[row.sheet]
        before = stored.get(row.measure_id)
        if before is None:
            counts.created += 1
        elif service.normalised(before) == service.normalised(row.values):
            counts.unchanged += 1
        else:
            counts.updated += 1
    for mid in deletions:
        title = LEVEL_ZH[stored[mid]["level"]]
        report.sheets.setdefault(title, SheetCounts()).deleted += 1
    if dry_run:
        return report
    changes = [service.Change("upsert", mid, r.values) for mid, r in rows.items()]
    changes += [service.Change("delete", mid, {}) for mid in deletions]
    report.version = await service.apply_changes(
        session,
        changes=changes,
        view=view,
        actor=actor,
        reason=reason or "Excel 导入",
        source="excel",
    )
    report.applied = True
    return report


def _raise(message: str) -> Any:
    raise CellProblem(message)
