"""Shapes of the statistics: filters, periods and every section a report is built from."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

from pydantic import BaseModel, Field

PeriodKind = Literal["day", "week", "month", "custom"]


@dataclass(frozen=True)
class Period:
    """Local dates [start, end): a day, an ISO week, a calendar month or any range."""

    start: date
    end: date
    kind: PeriodKind = "custom"

    @classmethod
    def of(cls, kind: PeriodKind, day: date) -> Period:
        """The day, week (Monday–Sunday) or month holding `day`."""
        if kind == "day":
            return cls(day, day + timedelta(days=1), "day")
        if kind == "week":
            monday = day - timedelta(days=day.weekday())
            return cls(monday, monday + timedelta(days=7), "week")
        if kind == "month":
            first = day.replace(day=1)
            days = calendar.monthrange(first.year, first.month)[1]
            return cls(first, first + timedelta(days=days), "month")
        raise ValueError(f"no period of kind {kind!r} around a day")

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    def previous(self) -> Period:
        """The period before, for period-on-period change (环比): the previous calendar
        month for a month, otherwise the same number of days just before."""
        if self.kind == "month":
            return Period.of("month", self.start - timedelta(days=1))
        return Period(self.start - timedelta(days=self.days), self.start, self.kind)

    def label(self) -> str:
        if self.kind == "day":
            return f"{self.start:%Y年%m月%d日}"
        if self.kind == "month":
            return f"{self.start:%Y年%m月}"
        last = self.end - timedelta(days=1)
        return f"{self.start:%Y年%m月%d日}—{last:%m月%d日}"


class Filters(BaseModel):
    """Which enterprises the statistics cover (within the caller's scope)."""

    district: list[str] | None = Field(
        None, description="GB/T 2260 codes; a code ending in 00 covers its children"
    )
    zone: str | None = None
    industry: str | None = Field(None, description="GB/T 4754 code or prefix (门类 not used)")
    grade: str | None = Field(None, description="A, B, C, D, leading, none")
    enterprise_id: str | None = None


class Count(BaseModel):
    """A count in this period and the one before."""

    key: str
    name: str
    count: int
    previous: int
    change_pct: float | None = Field(description="(count − previous) ÷ previous × 100")


class Energy(BaseModel):
    key: str
    name: str
    enterprises: int
    energy_kwh: float
    previous_kwh: float
    change_pct: float | None
    production_kwh: float
    control_kwh: float


class Availability(BaseModel):
    """Online rate and completeness of a group of points."""

    key: str
    name: str
    points: int
    point_days: int
    online_point_days: int
    online_rate: float | None = Field(description="online point-days ÷ point-days")
    enterprise_days: int
    online_enterprise_days: int
    enterprise_online_rate: float | None
    expected_samples: float
    valid_samples: float
    completeness: float | None = Field(description="valid samples ÷ expected samples")


class Timeliness(BaseModel):
    alarms: int = Field(description="Alarms raised in the period (not suppressed)")
    with_feedback: int
    feedback_within_deadline: int
    mean_feedback_h: float | None
    closed: int
    closed_within_deadline: int
    mean_close_h: float | None
    still_open: int
    feedback_deadline_h: float
    close_deadline_h: float
    feedback_rate: float | None = Field(description="with feedback ÷ alarms")
    on_time_feedback_rate: float | None = Field(description="feedback within deadline ÷ alarms")
    close_rate: float | None


class Offender(BaseModel):
    enterprise_id: str
    enterprise_name: str
    district_name: str | None
    industry_name: str | None
    alarms: int
    max_level: int
    rules: dict[str, int]


class FindingCount(BaseModel):
    rule_code: str
    name: str
    opened: int
    previous: int
    change_pct: float | None
    open_at_end: int


class ComplianceCount(BaseModel):
    verdict: str
    name: str
    hours: int
    enterprises: int


class DayPoint(BaseModel):
    day: date
    energy_kwh: float
    alarms: int
    online_rate: float | None
    completeness: float | None


class EnterpriseRow(BaseModel):
    enterprise_id: str
    name: str
    district_name: str | None
    industry_name: str | None
    grade: str | None
    points: int
    online_rate: float | None
    completeness: float | None
    energy_kwh: float
    production_kwh: float
    control_kwh: float
    alarms: int


class Statistics(BaseModel):
    """Everything measured for one period and one set of enterprises."""

    period_start: date
    period_end: date
    previous_start: date
    previous_end: date
    filters: Filters
    enterprises: int
    points: int
    availability: Availability
    availability_by_district: list[Availability]
    availability_by_industry: list[Availability]
    alarms_total: Count
    alarms_suppressed: int
    alarms_by_rule: list[Count]
    alarms_by_district: list[Count]
    alarms_by_industry: list[Count]
    alarms_by_level: list[Count]
    timeliness: Timeliness
    repeat_offenders: list[Offender]
    repeat_offender_min: int
    findings_by_kind: list[FindingCount]
    energy_total: Energy
    energy_by_district: list[Energy]
    energy_by_industry: list[Energy]
    compliance: list[ComplianceCount]
    daily: list[DayPoint]
    by_enterprise: list[EnterpriseRow]
