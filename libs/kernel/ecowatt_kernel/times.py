"""Date-times as people and devices write them: without an offset, local time of the deployment.

The bureau's staff and its workbooks write 2026-12-07 08:30, not 2026-12-07T00:30Z, and HJ 212
devices send local DataTime. So every API parameter and body field that takes a date-time
uses `LocalDateTime`: ISO 8601 with an offset (`…+08:00`, `…Z`) means that instant; without
one, it is wall-clock time in the deployment's time zone (`ECOWATT_TIMEZONE`, default
Asia/Shanghai), exactly as the Excel import reads a cell. Values come out aware, so storage
(UTC `timestamptz`) and comparisons never guess. Years outside 1900–2199 are refused with a
422: nothing the platform supervises lies there, and far values overflow date arithmetic.

    since: Annotated[LocalDateTime | None, Query(alias="from")] = None

The app factory calls `use_timezone(settings.timezone)`; one process serves one deployment,
so every service of a standalone process shares the zone.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import AfterValidator

__all__ = [
    "EARLIEST_YEAR",
    "LATEST_YEAR",
    "LocalDateTime",
    "deployment_zone",
    "localise",
    "use_timezone",
]

EARLIEST_YEAR = 1900
LATEST_YEAR = 2199
_zone = ZoneInfo(os.environ.get("ECOWATT_TIMEZONE", "Asia/Shanghai"))


def use_timezone(name: str) -> None:
    """Make `name` (an IANA zone) the deployment's zone for values without an offset."""
    global _zone  # one deployment per process: see the module docstring
    _zone = ZoneInfo(name)


def deployment_zone() -> ZoneInfo:
    """The zone that a date-time without an offset is read in."""
    return _zone


def localise(value: datetime) -> datetime:
    """`value` made aware: a naive value is local time of the deployment; range-checked."""
    if not EARLIEST_YEAR <= value.year <= LATEST_YEAR:
        raise ValueError(f"year {value.year} is outside {EARLIEST_YEAR}–{LATEST_YEAR}")
    if value.tzinfo is None or value.utcoffset() is None:
        return value.replace(tzinfo=_zone)
    return value


LocalDateTime = Annotated[datetime, AfterValidator(localise)]
"""A date-time; without an offset, local time of the deployment (see the module docstring)."""
