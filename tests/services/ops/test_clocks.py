"""SLA clocks: incidents on wall-clock time per level; support requests on working time of
China's official calendar — across a weekend, a public holiday and its make-up working day
(调休上班), outside working hours, and in a year the calendar package does not know yet."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from ecowatt_ops.clocks.models import Level, RequestKind, clock_state, parse_level
from ecowatt_ops.clocks.service import (
    WorkCalendar,
    calendar_year,
    incident_deadlines,
    package_knows,
    request_deadline,
)
from ecowatt_ops.settings import OpsSettings

ZONE = ZoneInfo("Asia/Shanghai")
SETTINGS = OpsSettings(environment="test")


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=ZONE)


def calendar(**overrides: bool) -> WorkCalendar:
    return WorkCalendar(
        overrides={date.fromisoformat(k[1:].replace("_", "-")): v for k, v in overrides.items()},
        start=time(9),
        end=time(18),
        zone=ZONE,
    )


def due(kind: RequestKind, received: datetime, cal: WorkCalendar | None = None) -> datetime:
    deadline = request_deadline(
        calendar=cal or calendar(), kind=kind, received_at=received, warning=0.75
    )
    return deadline.due_at.astimezone(ZONE)


def test_the_official_calendar_knows_2026_with_its_make_up_days() -> None:
    cal = calendar()
    assert package_knows(2026)
    # National Day 2026: 1–7 October off, Saturday 10 October worked (调休)
    assert cal.day(date(2026, 10, 1)) == (False, "package")
    assert cal.day(date(2026, 10, 10)) == (True, "package")
    # Spring Festival: Saturday 14 and 28 February worked, Monday 16 February off
    assert cal.day(date(2026, 2, 14)) == (True, "package")
    assert cal.day(date(2026, 2, 16)) == (False, "package")
    year = calendar_year(calendar=cal, year=2026)
    named = {d.day: d.name for d in year.special_days}
    assert named[date(2026, 10, 10)] == "国庆节调休上班"
    assert named[date(2026, 10, 1)] == "国庆节"
    assert year.known and 240 <= year.workdays <= 252


def test_two_working_days_across_a_weekend() -> None:
    # Friday 17:00: one hour on Friday, nine on Monday, eight on Tuesday
    assert due(RequestKind.DATA_CORRECTION, local(2026, 12, 4, 17)) == local(2026, 12, 8, 17)
    # received on Saturday: the clock starts Monday 09:00 and ends with Tuesday's hours
    assert due(RequestKind.DATA_CORRECTION, local(2026, 12, 5, 11)) == local(2026, 12, 8, 18)


def test_two_working_days_across_national_day_and_its_make_up_saturday() -> None:
    # Wednesday 30 September 15:00: 3 h that day, 1–7 October off (Sunday 4th included),
    # Thursday 8th 9 h, Friday 9th the remaining 6 h
    assert due(RequestKind.DATA_CORRECTION, local(2026, 9, 30, 15)) == local(2026, 10, 9, 15)
    # Friday 9 October 15:00: 3 h, the make-up Saturday 10th 9 h, then Monday 12th 6 h —
    # without the make-up day it would be Tuesday the 13th
    assert due(RequestKind.DATA_CORRECTION, local(2026, 10, 9, 15)) == local(2026, 10, 12, 15)
    without = calendar(d2026_10_10=False)
    assert due(RequestKind.DATA_CORRECTION, local(2026, 10, 9, 15), without) == local(
        2026, 10, 13, 15
    )


def test_thirty_working_minutes_for_a_question() -> None:
    assert due(RequestKind.QUESTION, local(2026, 12, 7, 10)) == local(2026, 12, 7, 10, 30)
    # 17:50 on a Friday: 10 minutes then, 20 on Monday
    assert due(RequestKind.QUESTION, local(2026, 12, 4, 17, 50)) == local(2026, 12, 7, 9, 20)
    # asked during the Labour Day holiday (1–5 May 2026): answered by 09:30 on the 6th
    assert due(RequestKind.QUESTION, local(2026, 5, 2, 10)) == local(2026, 5, 6, 9, 30)
    # the warning comes at 75 % of the working allowance
    deadline = request_deadline(
        calendar=calendar(),
        kind=RequestKind.QUESTION,
        received_at=local(2026, 12, 7, 10),
        warning=0.75,
    )
    assert deadline.warn_at.astimezone(ZONE) == local(2026, 12, 7, 10, 22, 30)
    assert not deadline.estimated


def test_a_year_the_package_does_not_know_counts_weekdays_and_says_so() -> None:
    assert not package_knows(2027)
    cal = calendar()
    assert cal.day(date(2027, 1, 1)) == (True, "weekdays")  # New Year's Day, not yet known
    late = request_deadline(
        calendar=cal,
        kind=RequestKind.QUESTION,
        received_at=local(2026, 12, 31, 17, 50),
        warning=0.75,
    )
    assert late.estimated
    assert late.due_at.astimezone(ZONE) == local(2027, 1, 1, 9, 20)
    # the desk enters the holiday: Friday 1 January off, the weekend off → Monday 4th
    known = calendar(d2027_01_01=False)
    assert due(RequestKind.QUESTION, local(2026, 12, 31, 17, 50), known) == local(2027, 1, 4, 9, 20)
    # a deadline inside 2026 only is not an estimate
    assert not request_deadline(
        calendar=cal,
        kind=RequestKind.DATA_CORRECTION,
        received_at=local(2026, 12, 7, 9),
        warning=0.75,
    ).estimated
    year = calendar_year(calendar=known, year=2027)
    assert not year.known
    assert [(d.day, d.source) for d in year.special_days] == [(date(2027, 1, 1), "override")]


@pytest.mark.parametrize(
    ("level", "hardware", "response", "resolution"),
    [
        (Level.CRITICAL, False, timedelta(minutes=5), timedelta(minutes=40)),
        (Level.CRITICAL, True, timedelta(minutes=5), timedelta(hours=24)),
        (Level.MAJOR, False, timedelta(minutes=30), timedelta(hours=24)),
        (Level.MODERATE, False, timedelta(minutes=30), timedelta(hours=12)),
        (Level.MINOR, False, timedelta(minutes=30), timedelta(hours=6)),
    ],
)
def test_incident_clocks_per_level_run_day_and_night(
    level: Level, hardware: bool, response: timedelta, resolution: timedelta
) -> None:
    saturday_night = datetime(2026, 12, 5, 15, 0, tzinfo=UTC)  # 23:00 local, a Saturday
    clocks = incident_deadlines(
        level=level, hardware=hardware, opened_at=saturday_night, settings=SETTINGS
    )
    assert clocks["response_due"] - saturday_night == response
    assert clocks["resolution_due"] - saturday_night == resolution
    assert clocks["resolution_warn_at"] - saturday_night == resolution * 0.75


def test_clock_states() -> None:
    due_at = datetime(2026, 12, 7, 2, tzinfo=UTC)
    before, after = due_at - timedelta(minutes=1), due_at + timedelta(minutes=1)
    assert clock_state(due_at=due_at, warn_at=None, stopped_at=None, now=before).status == "running"
    assert clock_state(due_at=due_at, warn_at=None, stopped_at=None, now=after).status == "overdue"
    assert clock_state(due_at=due_at, warn_at=None, stopped_at=before, now=after).status == "met"
    assert clock_state(due_at=due_at, warn_at=None, stopped_at=after, now=after).status == "missed"


def test_levels_from_labels() -> None:
    assert parse_level("非常严重") is Level.CRITICAL
    assert parse_level("一般") is Level.MINOR
    assert parse_level(None, "high") is Level.MAJOR
    assert parse_level("unknown", None) is Level.MODERATE
