"""Time duties of a verified session: is a frame history, is the device's clock right, does
the device owe us data after a gap.

**History.** A data frame is history (`TelemetryReading.history`) when

1. it answers a history request running for the device: the session's active command is a
   2031/2041/2051/2061 of the frame's CN and the frame's DataTime lies within the request's
   BeginTime..EndTime; or
2. the device delivers data from before its current connection: DataTime plus the CN's
   period (`PERIOD`: an hour value covers the hour after its DataTime, a day value the
   day) lies more than `history_grace_s` before the session started. Data produced while
   the device was connected are live however late they come: that lateness is the device's
   and is judged.

**Clock.** HJ 212 devices put their own clock in every QN. A device re-sending what it could
not deliver (HJ 212-2017 §6.3) re-sends old QNs, and a device answering a history request
sends old DataTimes, so a single frame says nothing reliable about the clock. The clock is
judged per window of `clock_check_interval_s`: the offset of the window's newest QN (QN
time minus its receive time: live frames have the newest) is compared with the previous
window's; only
when the two agree within `STEADY_S` (a live device's offset moves by its drift only, a
back-filling device's jumps as its backlog advances) is the offset taken as the clock's,
and beyond `max_clock_drift_s` the device is sent one 1012 set-time (at most one per
`clock_correction_interval_s`). So a device catching up after an outage is never "corrected"
for the age of its backlog.

**Backfill.** A verified device that comes back more than `backfill_min_gap_s` after it was
last seen is asked for the minute (2051) and hour (2061) data of the gap.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import ecowatt_hj212 as hj212

from ecowatt_ingest.commands import CommandManager
from ecowatt_ingest.connection import Session
from ecowatt_ingest.settings import IngestSettings
from ecowatt_ingest.timebase import TimeBase

__all__ = ["PERIOD", "STEADY_S", "Timekeeper"]

_logger = logging.getLogger(__name__)

PERIOD = {"2061": timedelta(hours=1), "2031": timedelta(days=1), "2041": timedelta(days=1)}
"""How long after its DataTime a value of the CN is complete (others: at once; 2051's
interval is the device's own, up to an hour, and is covered by `history_grace_s`)."""

STEADY_S = 30.0
"""Two windows' clock offsets within this are the device's clock (drift is seconds/hour)."""


class Timekeeper:
    """See the module docstring."""

    def __init__(
        self, settings: IngestSettings, *, time_base: TimeBase, commands: CommandManager
    ) -> None:
        self.settings = settings
        self.time = time_base
        self.commands = commands

    def is_history(self, session: Session | None, cn: str, data_time: datetime) -> bool:
        """Whether data of `cn` for `data_time` (naive local) are history for this session.

        Compared as naive local times (the device's own terms; a comparison per frame).
        """
        if session is None:  # a split set given up after its session ended
            live_from = self.time.local(self.time.now() - self.settings.history_grace_s)
        else:
            active = session.active
            if active is not None and active.window is not None and active.planned.cn == cn:
                begin, end = active.window
                if begin <= data_time <= end:
                    return True
            cached = session.live_from
            if cached is None:
                cached = session.live_from = self.time.local(
                    session.connected_at - self.settings.history_grace_s
                )
            live_from = cached
        period = PERIOD.get(cn)
        return (data_time + period if period else data_time) < live_from

    def observe_clock(self, session: Session, frame: hj212.Frame, wall: float) -> None:
        """Keep the window's newest QN; judge the clock when the window closes.

        Per frame a string comparison (QNs are fixed-width digits); the parsing and the
        judgement happen once per window.
        """
        qn = frame.qn
        if qn is not None and (session.clock_best is None or qn > session.clock_best[0]):
            session.clock_best = (qn, wall)
        settings = self.settings
        if wall - session.clock_window_at < settings.clock_check_interval_s:
            return
        best, session.clock_best = session.clock_best, None
        previous = session.clock_previous
        session.clock_window_at = wall
        device_time = hj212.parse_hj212_time(best[0]) if best is not None else None
        if best is None or device_time is None:
            session.clock_previous = None
            return
        current = session.clock_previous = self.time.timestamp(device_time) - best[1]
        if previous is None or abs(current - previous) > STEADY_S:
            return  # not steady yet: just connected, or catching up on old frames
        if abs(current) <= settings.max_clock_drift_s:
            return
        if wall - session.last_clock_fix < settings.clock_correction_interval_s:
            return
        session.last_clock_fix = wall
        _logger.info(
            "device clock off: sending 1012", extra={"mn": session.mn, "drift_s": round(current)}
        )
        self.commands.internal(session, "1012", {})

    def maybe_backfill(self, session: Session) -> None:
        """Request the gap's minute and hour data from a device back after a gap (once)."""
        settings = self.settings
        if session.backfill_checked or not settings.backfill_enabled:
            return
        if session.previous_seen is None:
            return
        session.backfill_checked = True
        now = self.time.now()
        gap_start = session.previous_seen
        if now - gap_start < settings.backfill_min_gap_s:
            return
        gap_start = max(gap_start, now - settings.backfill_max_window_s)
        begin = self.time.local(gap_start)
        end = self.time.local(now)
        hour = begin.replace(minute=0, second=0)
        fmt = hj212.format_hj212_time
        _logger.info(
            "device back after a gap: requesting backfill",
            extra={"mn": session.mn, "since": begin.isoformat()},
        )
        self.commands.internal(session, "2051", {"BeginTime": fmt(begin), "EndTime": fmt(end)})
        self.commands.internal(session, "2061", {"BeginTime": fmt(hour), "EndTime": fmt(end)})
