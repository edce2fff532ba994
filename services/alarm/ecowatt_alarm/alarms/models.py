"""Alarm lists, filters, export columns and the summary of one alarm row."""

from __future__ import annotations

from typing import Annotated, Any

from ecowatt_kernel.excel import Column
from ecowatt_kernel.identity import DataScope
from fastapi import Depends, Query
from pydantic import AwareDatetime
from sqlalchemy import ColumnElement

from ecowatt_alarm import tables as T
from ecowatt_alarm.rules import LEVEL_NAMES

__all__ = [
    "EXPORT_COLUMNS",
    "STATUS_ZH",
    "SUMMARY",
    "AlarmFilters",
    "alarm_scope",
    "district_prefix",
    "summary",
]

STATUS_ZH = {
    "open": "待处理",
    "suppressed": "已抑制",
    "dispatched": "已下发",
    "replied": "企业已反馈",
    "verified": "已核查",
    "closed": "已销号",
    "retracted": "已撤回",
}

SUMMARY = [
    T.alarm.c[k]
    for k in (
        "id",
        "rule_code",
        "rule_version",
        "rule_name",
        "enterprise_id",
        "enterprise_name",
        "district_code",
        "zone",
        "industry_code",
        "subject_kind",
        "subject_id",
        "group_id",
        "level",
        "status",
        "active",
        "suppressed_by",
        "first_at",
        "last_at",
        "recovered_at",
        "closed_at",
        "dispatched_to",
        "verification",
        "explanation",
        "discovered_at",
        "late",
        "retracted_at",
        "retraction",
        "detail",
    )
]

EXPORT_COLUMNS = [
    Column("id", "报警编号", width=38),
    Column("enterprise_name", "企业", width=24),
    Column("district_code", "区县"),
    Column("zone", "片区"),
    Column("industry_code", "行业"),
    Column("rule_code", "规则"),
    Column("rule_name", "报警类型", width=20),
    Column("facets_text", "同一事件另见"),
    Column("level_name", "级别"),
    Column("status_name", "状态"),
    Column("first_at", "报警时间", width=20),
    Column("last_at", "最后时间", width=20),
    Column("duration_min", "持续(分钟)"),
    Column("subject_id", "对象", width=20),
    Column("discovered_at", "发现时间", width=20),
    Column("late_name", "迟到数据发现"),
    Column("retraction_reason", "撤回原因", width=40),
    Column("explanation", "说明", width=80),
]


def district_prefix(code: str) -> str:
    """GB/T 2260: 610000 covers the province, 610100 the city, 610113 one county."""
    if len(code) == 6 and code.isdigit():
        if code.endswith("0000"):
            return code[:2]
        if code.endswith("00"):
            return code[:4]
    return code


def alarm_scope(scope: DataScope) -> ColumnElement[bool]:
    """The caller's data scope as a condition on `alarm.alarm`."""
    return scope.where(
        district_column=T.alarm.c.district_code, enterprise_column=T.alarm.c.enterprise_id
    )


def _filters(
    district: str | None = None,
    zone: str | None = None,
    industry: str | None = None,
    enterprise_id: str | None = None,
    rule: Annotated[str | None, Query(description="Rule codes, comma-separated")] = None,
    level: int | None = None,
    status: Annotated[str | None, Query(description="Statuses, comma-separated")] = None,
    active: bool | None = None,
    late: Annotated[
        bool | None, Query(description="true: only alarms found in late or back-filled data")
    ] = None,
    retracted: Annotated[
        bool | None, Query(description="false: leave out alarms withdrawn after late data")
    ] = None,
    since: Annotated[AwareDatetime | None, Query(alias="from")] = None,
    until: Annotated[AwareDatetime | None, Query(alias="to")] = None,
) -> list[ColumnElement[bool]]:
    a = T.alarm.c
    out: list[ColumnElement[bool]] = []
    if district:
        out.append(a.district_code.startswith(district_prefix(district), autoescape=True))
    if zone:
        out.append(a.zone == zone)
    if industry:
        out.append(a.industry_code.startswith(industry))
    if enterprise_id:
        out.append(a.enterprise_id == enterprise_id)
    if rule:
        out.append(a.rule_code.in_(rule.split(",")))
    if level is not None:
        out.append(a.level == level)
    if status:
        out.append(a.status.in_(status.split(",")))
    if active is not None:
        out.append(a.active.is_(active))
    if late is not None:
        out.append(a.late.is_(late))
    if retracted is not None:
        out.append(a.retracted_at.is_not(None) if retracted else a.retracted_at.is_(None))
    if since is not None:
        out.append(a.last_at >= since)
    if until is not None:
        out.append(a.first_at < until)
    return out


AlarmFilters = Annotated[list[ColumnElement[bool]], Depends(_filters)]


def summary(row: Any) -> dict[str, Any]:
    """One alarm row as the lists show it: with duration, level and status names."""
    d = dict(row)
    end = d["recovered_at"] or d["last_at"]
    d["duration_min"] = round((end - d["first_at"]).total_seconds() / 60, 1)
    d["level_name"] = LEVEL_NAMES.get(d["level"])
    d["status_name"] = STATUS_ZH.get(d["status"], d["status"])
    d["late_name"] = "是" if d.get("late") else ""
    d["retraction_reason"] = (d.get("retraction") or {}).get("reason")
    # Lists show the episode's facets by rule (one event, one alarm); the detail itself is
    # for the single alarm.
    d["facets"] = [f["rule_code"] for f in (d.pop("detail", None) or {}).get("facets", [])]
    d["facets_text"] = "、".join(d["facets"])
    return d
