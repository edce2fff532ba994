"""Deadlines: wall-clock for incidents, working time on China's calendar for requests.

A day is a working day when, in this order: the desk set it by hand (`ops.calendar_day`);
the `chinesecalendar` package knows its year (official holidays, make-up working days 调休);
else Monday to Friday. The last case is an estimate — the package does not know a year
before the State Council publishes its schedule (each November; version 1.11.0 knows
2004–2026, not 2027) — and every deadline that crossed such a day says so
(`calendar_estimated`), until the desk enters the year's days or the package is updated.
Changing a day recomputes the deadlines of the open requests.

Working time runs from `ECOWATT_OPS_WORKDAY_START` to `…_END` (09:00–18:00) on working days;
"2 working days" are twice that span. A request that arrives outside working time starts at
the next working moment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from importlib.metadata import version
from typing import Literal
from zoneinfo import ZoneInfo

import chinese_calendar
from ecowatt_kernel.problems import Problem
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_ops.clocks.models import (
    REQUEST_SLAS,
    CalendarDayOut,
    CalendarYear,
    Level,
    RequestKind,
    calendar_day,
    incident_allowances,
)
from ecowatt_ops.desk.settings import DeskSettings

__all__ = [
    "Deadline",
    "WorkCalendar",
    "calendar_year",
    "incident_deadlines",
    "load_calendar",
    "package_knows",
    "request_deadline",
]

DaySource = Literal["override", "package", "weekdays"]
HOLIDAY_ZH = {
    "New Year's Day": "元旦",
    "Spring Festival": "春节",
    "Tomb-sweeping Day": "清明节",
    "Labour Day": "劳动节",
    "Dragon Boat Festival": "端午节",
    "National Day": "国庆节",
    "Mid-autumn Festival": "中秋节",
    "Anti-Fascist 70th Day": "中国人民抗日战争暨世界反法西斯战争胜利70周年纪念日",
}
MAX_SEARCH_DAYS = 400
"""A deadline further than this many days away means the calendar has no working days."""


def package_knows(year: int) -> bool:
    """Whether the chinesecalendar package has the official schedule of `year`."""
    try:
        chinese_calendar.is_workday(date(year, 1, 1))
    except NotImplementedError:
        return False
    return True


@dataclass(frozen=True)
class Deadline:
    due_at: datetime
    warn_at: datetime
    estimated: bool
    """A day of a year the calendar package does not know was counted as Monday–Friday."""


class WorkCalendar:
    """Working days and hours in the deployment's zone."""

    def __init__(
        self,
        *,
        overrides: Mapping[date, bool],
        names: Mapping[date, str] | None = None,
        start: time,
        end: time,
        zone: ZoneInfo,
    ) -> None:
        self.overrides = dict(overrides)
        self.names = dict(names or {})
        self.start, self.end, self.zone = start, end, zone

    def day(self, day: date) -> tuple[bool, DaySource]:
        """Whether `day` is a working day, and what says so."""
        if day in self.overrides:
            return self.overrides[day], "override"
        try:
            return bool(chinese_calendar.is_workday(day)), "package"
        except NotImplementedError:
            return day.weekday() < 5, "weekdays"

    @property
    def day_minutes(self) -> float:
        """Working minutes in one working day."""
        span = datetime.combine(date.min, self.end) - datetime.combine(date.min, self.start)
        return span.total_seconds() / 60

    def add(self, start: datetime, minutes: float) -> tuple[datetime, bool]:
        """The moment `minutes` of working time after `start`, and whether it is estimated."""
        local = start.astimezone(self.zone)
        remaining = timedelta(minutes=minutes)
        estimated = False
        day = local.date()
        moment = local
        for _ in range(MAX_SEARCH_DAYS):
            working, source = self.day(day)
            if working:
                estimated |= source == "weekdays"
                opens = datetime.combine(day, self.start, tzinfo=self.zone)
                closes = datetime.combine(day, self.end, tzinfo=self.zone)
                moment = max(moment, opens)
                if moment < closes:
                    if moment + remaining <= closes:
                        return (moment + remaining).astimezone(UTC), estimated
                    remaining -= closes - moment
            day += timedelta(days=1)
            moment = datetime.combine(day, time(0), tzinfo=self.zone)
        raise Problem(
            f"no working day within {MAX_SEARCH_DAYS} days of {local.date()}: check the "
            "calendar's overrides",
            status=422,
            type_suffix="calendar-has-no-working-days",
        )


async def load_calendar(*, session: AsyncSession, settings: DeskSettings) -> WorkCalendar:
    """The calendar with the desk's overrides."""
    rows = (await session.execute(select(calendar_day))).all()
    return WorkCalendar(
        overrides={r.day: r.workday for r in rows},
        names={r.day: r.name for r in rows},
        start=settings.ops_workday_start,
        end=settings.ops_workday_end,
        zone=ZoneInfo(settings.timezone),
    )


def request_deadline(
    *, calendar: WorkCalendar, kind: RequestKind, received_at: datetime, warning: float
) -> Deadline:
    """When a request of `kind` received at `received_at` is due, and when to warn."""
    sla = REQUEST_SLAS[kind]
    minutes = (
        sla.working_minutes
        if sla.working_minutes is not None
        else sla.working_days * calendar.day_minutes
    )
    due, estimated = calendar.add(received_at, minutes)
    warn, _ = calendar.add(received_at, minutes * warning)
    return Deadline(due_at=due, warn_at=warn, estimated=estimated)


def incident_deadlines(
    *, level: Level, hardware: bool, opened_at: datetime, settings: DeskSettings
) -> dict[str, datetime]:
    """The response and resolution deadlines (and warning moments) of an incident."""
    response, resolution = incident_allowances(
        level, hardware=hardware, critical_response_min=settings.ops_critical_response_min
    )
    warning = settings.ops_escalation_warning
    return {
        "response_due": opened_at + response,
        "response_warn_at": opened_at + response * warning,
        "resolution_due": opened_at + resolution,
        "resolution_warn_at": opened_at + resolution * warning,
    }


def calendar_year(*, calendar: WorkCalendar, year: int) -> CalendarYear:
    """A year's working-day count and its days that differ from Monday–Friday (or were set)."""
    day = date(year, 1, 1)
    special: list[CalendarDayOut] = []
    workdays = 0
    while day.year == year:
        working, source = calendar.day(day)
        workdays += working
        weekday = day.weekday() < 5
        if source == "override" or working != weekday:
            if source == "override":
                name = calendar.names.get(day, "")
            else:
                holiday = HOLIDAY_ZH.get(chinese_calendar.get_holiday_detail(day)[1] or "", "")
                name = f"{holiday}调休上班" if working else holiday or "休息日"
            special.append(CalendarDayOut(day=day, workday=working, name=name, source=source))
        day += timedelta(days=1)
    return CalendarYear(
        year=year,
        known=package_knows(year),
        package_version=version("chinesecalendar"),
        workdays=workdays,
        special_days=special,
    )
