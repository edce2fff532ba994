"""Simulated time: a clock with a speed factor, local time and HJ 212 time stamps.

Simulated times are POSIX seconds (UTC). HJ 212 `DataTime`, `QN` and `SystemTime` are the
deployment's local time (Asia/Shanghai by default, DESIGN §8), so devices format them through
a `LocalTime`.

`SimClock(start, speed)` maps wall time to simulated time: with `speed=60` an hour of data
takes a wall minute. `SimClock(start, speed=math.inf)` (or `SimClock.fast(start)`) is the
"as fast as possible" mode: no device ever sleeps; each device runs its own timeline as fast
as the server acknowledges its frames (see `Simulator`). `ManualClock(start)` is moved by the
caller (`Simulator.advance(t)`): devices wait for it, so a pipeline under test gets the data
of every device up to `t` before any device goes further — devices of one enterprise stay
within a step of each other however fast the run goes.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import re
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from ecowatt_hj212 import parse_hj212_time

__all__ = ["LocalTime", "ManualClock", "SimClock", "parse_duration", "to_epoch"]

DEFAULT_TIMEZONE = "Asia/Shanghai"


def to_epoch(moment: datetime | float | int) -> float:
    """POSIX seconds of `moment` (a naive datetime is taken as UTC)."""
    if isinstance(moment, datetime):
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    return float(moment)


class SimClock:
    """Simulated time = `start` + (wall time since `attach`) × `speed`."""

    def __init__(self, start: datetime | float | None = None, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive (math.inf for as fast as possible)")
        self.start = to_epoch(start) if start is not None else float(int(time.time()))
        self.speed = speed
        self._wall0: float | None = None

    @classmethod
    def fast(cls, start: datetime | float | None = None) -> SimClock:
        """As fast as possible: devices never wait for the clock."""
        return cls(start, speed=math.inf)

    @property
    def is_fast(self) -> bool:
        return math.isinf(self.speed)

    def attach(self) -> None:
        """Start counting: simulated time is `start` now."""
        if self._wall0 is None:
            self._wall0 = time.monotonic()

    def now(self) -> float:
        """Current simulated time (paced mode); `start` before `attach` or in fast mode."""
        if self._wall0 is None or self.is_fast:
            return self.start
        return self.start + (time.monotonic() - self._wall0) * self.speed

    def wall_delay(self, sim_t: float) -> float:
        """Wall seconds until simulated time `sim_t` (0 when it has passed, or in fast mode)."""
        if self.is_fast:
            return 0.0
        return max(0.0, (sim_t - self.now()) / self.speed)

    async def sleep_until(self, sim_t: float) -> None:
        delay = self.wall_delay(sim_t)
        if delay > 0:
            await asyncio.sleep(delay)

    def __repr__(self) -> str:
        start = datetime.fromtimestamp(self.start, UTC).isoformat()
        return f"SimClock(start={start}, speed={self.speed})"


class ManualClock(SimClock):
    """Simulated time that moves only when the caller says so (`advance(t)`).

    Devices sleep until the clock reaches their next tick, exactly as in paced mode; the
    caller decides when that is. `Simulator.advance(t)` moves the clock and waits until every
    device has sent what it made up to `t` and had it answered, which keeps a whole fleet in
    step (to within the caller's step) while running as fast as the platform answers.
    """

    def __init__(self, start: datetime | float | None = None) -> None:
        super().__init__(start, speed=1.0)
        self._now = self.start
        self._waiters: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def attach(self) -> None:
        return

    def now(self) -> float:
        return self._now

    def wall_delay(self, sim_t: float) -> float:
        return 0.0 if sim_t <= self._now else math.inf

    async def sleep_until(self, sim_t: float) -> None:
        if sim_t <= self._now:
            return
        waiter = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (sim_t, next(self._order), waiter))
        await waiter

    def advance(self, sim_t: float) -> None:
        """Move simulated time forward to `sim_t` and wake whoever waited for it."""
        if sim_t < self._now:
            raise ValueError("a manual clock only moves forward")
        self._now = sim_t
        waiters = self._waiters
        while waiters and waiters[0][0] <= sim_t:
            _, _, waiter = heapq.heappop(waiters)
            if not waiter.done():
                waiter.set_result(None)

    @property
    def waiting(self) -> int:
        """Sleepers waiting for a time still ahead (cancelled ones are not counted)."""
        return sum(1 for _, _, waiter in self._waiters if not waiter.done())

    def __repr__(self) -> str:
        now = datetime.fromtimestamp(self._now, UTC).isoformat()
        return f"ManualClock(now={now})"


class LocalTime:
    """UTC offsets of one time zone, cached per UTC hour; fast HJ 212 formatting."""

    def __init__(self, tz: str = DEFAULT_TIMEZONE) -> None:
        self.zone = ZoneInfo(tz)
        self._offsets: dict[int, int] = {}
        self._last_hour = -(1 << 62)
        self._last_offset = 0

    def offset(self, t: float) -> int:
        """Seconds to add to UTC time `t` to get local wall-clock seconds."""
        hour = int(t // 3600)
        if hour == self._last_hour:
            return self._last_offset
        cached = self._offsets.get(hour)
        if cached is None:
            delta = datetime.fromtimestamp(hour * 3600, self.zone).utcoffset()
            cached = int(delta.total_seconds()) if delta is not None else 0
            if len(self._offsets) > 100_000:
                self._offsets.clear()
            self._offsets[hour] = cached
        self._last_hour, self._last_offset = hour, cached
        return cached

    def local(self, t: float) -> float:
        """Local wall-clock seconds (as if the local time were UTC) of UTC time `t`."""
        return t + self.offset(t)

    def from_local(self, local_s: float) -> float:
        """UTC time of local wall-clock seconds (ambiguous times take the first offset)."""
        return local_s - self.offset(local_s - self.offset(local_s))

    def day_start(self, t: float) -> float:
        """UTC time of the local midnight that starts the local day of `t`."""
        local = self.local(t)
        return self.from_local(local - local % 86400)

    def day_index(self, t: float) -> int:
        """Local day number (days since 1970-01-01 in local time)."""
        return int(self.local(t) // 86400)

    def day_bounds(self, day: int) -> tuple[float, float]:
        """UTC start and end of local day number `day`."""
        return self.from_local(day * 86400.0), self.from_local((day + 1) * 86400.0)

    def fmt14(self, t: float) -> str:
        """`YYYYMMDDhhmmss` local time of UTC time `t`."""
        return _fmt(self.local(t))

    def fmt17(self, t_ms: int) -> str:
        """`YYYYMMDDhhmmsszzz` local time of UTC milliseconds `t_ms` (a QN)."""
        seconds, millis = divmod(t_ms, 1000)
        return _fmt(self.local(seconds)) + f"{millis:03d}"

    def parse(self, text: str) -> float | None:
        """UTC time of a 14- or 17-digit local HJ 212 time; None when it is not one."""
        moment = parse_hj212_time(text)
        if moment is None:
            return None
        return self.from_local(moment.replace(tzinfo=UTC).timestamp())

    def weekday(self, day: int) -> int:
        """Monday = 0 … Sunday = 6 of local day number `day` (1970-01-01 was a Thursday)."""
        return (day + 3) % 7


def _fmt(local_s: float) -> str:
    tm = time.gmtime(local_s)
    return "%04d%02d%02d%02d%02d%02d" % (  # noqa: UP031 - the fastest formatting here
        tm.tm_year,
        tm.tm_mon,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
    )


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d|w)?\s*$")
_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_UNITS["w"] = 7 * 86400.0


def parse_duration(text: str | float | timedelta) -> float:
    """Seconds of `90`, `90s`, `30m`, `2h`, `1d`, `1w`, `1.5h` or a timedelta."""
    if isinstance(text, timedelta):
        return text.total_seconds()
    if isinstance(text, int | float):
        return float(text)
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 30m, 2h, 1d)")
    return float(match.group(1)) * _UNITS[match.group(2)]
