"""Levels and kinds with the tender's response and resolution times; calendar overrides.

Incidents (故障) run on wall-clock time, day and night (7×24 operation):

| Level | 响应 (respond) | 恢复/解决 (resolve) |
|---|---|---|
| 非常严重 critical | at once (`ECOWATT_OPS_CRITICAL_RESPONSE_MIN`: 5 min) | 40 min; hardware 24 h |
| 严重 major | 30 min | 24 h |
| 中等 moderate | 30 min | 12 h |
| 一般 minor | 30 min | 6 h |

The tender exempts hardware faults from the 40 minutes and names no other figure; they are
held to the next level's 24 h so that their clock still runs.

Support requests (服务请求) run on working time (working days of China's official calendar,
`ECOWATT_OPS_WORKDAY_START`–`END`): 操作问题解答 answered within 30 minutes, 数据修改 done within
2 working days of reaching the supplier; the tender names no time for account requests and
others: 1 and 2 working days, so that every request has a clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy import Boolean, Column, Date, DateTime, Table, Text, func

from ecowatt_ops.desk.database import metadata

__all__ = [
    "LEVEL_ZH",
    "REQUEST_KIND_ZH",
    "CalendarDayIn",
    "CalendarDayOut",
    "CalendarYear",
    "ClockState",
    "Level",
    "RequestKind",
    "RequestSla",
    "calendar_day",
    "clock_state",
    "parse_level",
]


class Level(StrEnum):
    CRITICAL = "critical"
    MAJOR = "major"
    MODERATE = "moderate"
    MINOR = "minor"


LEVEL_ZH = {
    Level.CRITICAL: "非常严重",
    Level.MAJOR: "严重",
    Level.MODERATE: "中等",
    Level.MINOR: "一般",
}
LEVEL_RANK = {Level.CRITICAL: 4, Level.MAJOR: 3, Level.MODERATE: 2, Level.MINOR: 1}
_SEVERITY = {"critical": Level.CRITICAL, "high": Level.MAJOR, "medium": Level.MODERATE}
_SEVERITY |= {"low": Level.MINOR, "warning": Level.MODERATE, "info": Level.MINOR}


def parse_level(fault_level: str | None, severity: str | None = None) -> Level:
    """The level a label names (非常严重 / critical …), else the Alertmanager severity's, else
    中等 (a fault nobody classified still gets a clock)."""
    for value in (fault_level, severity):
        if not value:
            continue
        text = value.strip()
        for level, zh in LEVEL_ZH.items():
            if text in (zh, level.value):
                return level
        if text.lower() in _SEVERITY:
            return _SEVERITY[text.lower()]
    return Level.MODERATE


class RequestKind(StrEnum):
    QUESTION = "question"
    DATA_CORRECTION = "data_correction"
    ACCOUNT = "account"
    OTHER = "other"


REQUEST_KIND_ZH = {
    RequestKind.QUESTION: "操作问题解答",
    RequestKind.DATA_CORRECTION: "数据修改",
    RequestKind.ACCOUNT: "账号申请",
    RequestKind.OTHER: "其他",
}


@dataclass(frozen=True)
class RequestSla:
    """A request kind's clock: working minutes allowed, and what stops the clock."""

    working_minutes: float | None
    """None: whole working days (`working_days`)."""
    working_days: int
    stops_on: Literal["answer", "resolution"]
    text: str


REQUEST_SLAS = {
    RequestKind.QUESTION: RequestSla(30, 0, "answer", "30 分钟内答复"),
    RequestKind.DATA_CORRECTION: RequestSla(None, 2, "resolution", "2 个工作日内完成"),
    RequestKind.ACCOUNT: RequestSla(None, 1, "resolution", "1 个工作日内完成"),
    RequestKind.OTHER: RequestSla(None, 2, "resolution", "2 个工作日内完成"),
}


def incident_allowances(
    level: Level, *, hardware: bool, critical_response_min: float
) -> tuple[timedelta, timedelta]:
    """(response, resolution) allowed for an incident of `level`."""
    response = (
        timedelta(minutes=critical_response_min)
        if level is Level.CRITICAL
        else timedelta(minutes=30)
    )
    resolution = {
        Level.CRITICAL: timedelta(hours=24) if hardware else timedelta(minutes=40),
        Level.MAJOR: timedelta(hours=24),
        Level.MODERATE: timedelta(hours=12),
        Level.MINOR: timedelta(hours=6),
    }[level]
    return response, resolution


ClockStatus = Literal["running", "overdue", "met", "missed", "stopped"]


class ClockState(BaseModel):
    """One SLA clock as of `now`."""

    due_at: datetime
    warn_at: datetime | None = None
    stopped_at: datetime | None = Field(None, description="When the clock stopped (met or not).")
    status: ClockStatus = Field(
        description="running (before the deadline), overdue (running past it), met, missed; "
        "stopped: the case was cancelled or withdrawn before the clock ran out."
    )
    remaining_s: float | None = Field(None, description="Seconds left while running.")


def clock_state(
    *,
    due_at: datetime,
    warn_at: datetime | None,
    stopped_at: datetime | None,
    now: datetime,
    cancelled: bool = False,
) -> ClockState:
    """The state of a clock with deadline `due_at` stopped at `stopped_at` (if it is)."""
    if stopped_at is not None:
        status: ClockStatus = "met" if stopped_at <= due_at else "missed"
        if cancelled:
            status = "stopped" if stopped_at <= due_at else "missed"
        return ClockState(due_at=due_at, warn_at=warn_at, stopped_at=stopped_at, status=status)
    if now > due_at:
        return ClockState(due_at=due_at, warn_at=warn_at, status="overdue")
    return ClockState(
        due_at=due_at,
        warn_at=warn_at,
        status="running",
        remaining_s=(due_at - now).total_seconds(),
    )


calendar_day = Table(
    "calendar_day",
    metadata,
    Column("day", Date, primary_key=True),
    Column("workday", Boolean, nullable=False),
    Column("name", Text, nullable=False),
    Column("set_by", Text, nullable=False),
    Column("set_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
"""Days the desk's staff set by hand: a year the calendar package does not know yet (the State
Council publishes next year's schedule each November), or a local adjustment."""


class CalendarDayIn(BaseModel):
    workday: bool = Field(description="true: a working day (e.g. a make-up day, 调休上班).")
    name: str = Field(min_length=1, max_length=40, description="e.g. 春节, 国庆节调休")


class CalendarDayOut(BaseModel):
    day: date
    workday: bool
    name: str
    source: Literal["override", "package", "weekdays"] = Field(
        description="override: set on the desk; package: China's official calendar "
        "(chinesecalendar); weekdays: the package does not know the year, Monday–Friday assumed."
    )


class CalendarYear(BaseModel):
    year: int
    known: bool = Field(
        description="Whether the official calendar package knows the year; when not, every "
        "clock crossing it counts Monday–Friday (plus overrides) and is marked estimated."
    )
    package_version: str
    workdays: int = Field(description="Working days in the year.")
    special_days: list[CalendarDayOut] = Field(
        description="Holidays on weekdays, working weekend days, and every override."
    )
