"""The deployment's time: wall clock and local time zone, in one place.

HJ 212 devices speak local time without an offset (`ECOWATT_TIMEZONE`, Asia/Shanghai by
default); the bus speaks UTC. `now` is injectable so a replay (the pipeline tests) can run
ingest on a simulated clock; everything that judges time (receive stamps, sessions, clock
drift, history, backfill windows) reads it from here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

__all__ = ["TimeBase"]


class TimeBase:
    """Wall clock (POSIX seconds) and the deployment's time zone."""

    __slots__ = ("now", "tz")

    def __init__(self, timezone: str, now: Callable[[], float] = time.time) -> None:
        self.tz = ZoneInfo(timezone)
        self.now = now

    def local_now(self) -> datetime:
        """The deployment's local time, naive (what HJ 212 devices speak)."""
        return datetime.fromtimestamp(self.now(), self.tz).replace(tzinfo=None)

    def local(self, timestamp: float) -> datetime:
        """A POSIX time as naive local time, to the second."""
        return datetime.fromtimestamp(timestamp, self.tz).replace(tzinfo=None, microsecond=0)

    def to_local(self, moment: datetime) -> datetime:
        """An aware time as naive local time; a naive one is taken as local already."""
        if moment.tzinfo is None:
            return moment
        return moment.astimezone(self.tz).replace(tzinfo=None)

    def timestamp(self, local: datetime) -> float:
        """A naive local time as POSIX seconds."""
        return local.replace(tzinfo=self.tz).timestamp()
