"""Builders for answers and platform commands; each returns a :class:`Message` to encode.

Answers copy QN, PW and MN from the frame they answer and use ``ST=91`` with the Flag
version bits the device itself uses (``Flag=4`` for 2017, ``8`` for 2025, ``0`` for 2005).
HJ/T 212-2005 answers carry the answered QN inside CP instead of the header.

Platform commands address a :class:`Device` and set the A bit (``Flag=5`` for 2017), so the
device runs its 9011/9012 (or 9013) answer flow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from ._errors import EncodeError
from ._model import FLAG_ACK, VERSION_FLAG_BITS, Frame, Message, ProtocolVersion
from ._reasons import Reason
from ._timefmt import format_hj212_time

__all__ = [
    "Device",
    "data_answer",
    "execution_answer",
    "flag_for",
    "get_day_data",
    "get_field_info",
    "get_hour_data",
    "get_minute_data",
    "get_realtime_interval",
    "get_runtime_data",
    "get_time",
    "new_qn",
    "notification_answer",
    "request_answer",
    "set_realtime_interval",
    "set_time",
    "start_facility_state",
    "start_realtime_data",
    "stop_facility_state",
    "stop_realtime_data",
    "time_calibration_reply",
]

SYSTEM_INTERACTION_ST = "91"


def new_qn(now: datetime | None = None) -> str:
    """A 17-digit QN (``YYYYMMDDhhmmsszzz``) for ``now`` (default: local time now)."""
    return format_hj212_time(now or datetime.now(), milliseconds=True)


def flag_for(version: ProtocolVersion, *, ack: bool = False, split: bool = False) -> int:
    """Flag value for ``version`` with the A (answer) and D (split) bits."""
    bits = VERSION_FLAG_BITS.get(version, VERSION_FLAG_BITS[ProtocolVersion.V2017])
    return bits | (FLAG_ACK if ack else 0) | (2 if split else 0)


def _answer_flag(frame: Frame) -> int:
    if frame.flag is not None:
        return frame.flag & 0xFC  # exactly the version bits the device sends
    return flag_for(frame.version)


def _answer(frame: Frame, cn: str, cp: tuple[tuple[str, str], ...]) -> Message:
    if frame.version is ProtocolVersion.V2005:
        answered = (("QN", frame.qn),) if frame.qn else ()
        return Message(
            cn=cn,
            st=SYSTEM_INTERACTION_ST,
            pw=frame.pw,
            mn=frame.mn,
            flag=_answer_flag(frame),
            cp=answered + cp,
        )
    return Message(
        cn=cn,
        qn=frame.qn,
        st=SYSTEM_INTERACTION_ST,
        pw=frame.pw,
        mn=frame.mn,
        flag=_answer_flag(frame),
        cp=cp,
    )


def data_answer(frame: Frame) -> Message:
    """9014 data answer for an upload (send it when ``frame.ack_requested``)."""
    return _answer(frame, "9014", ())


def notification_answer(frame: Frame) -> Message:
    """9013 notification answer (for 1013 time calibration, 9015 heartbeat, 2012/2022)."""
    return _answer(frame, "9013", ())


def request_answer(frame: Frame, qn_rtn: int = 1) -> Message:
    """9011 request answer (device side; ``QnRtn`` 1 = ready, 2 refused, 3 PW error …)."""
    return _answer(frame, "9011", (("QnRtn", str(qn_rtn)),))


def execution_answer(frame: Frame, exe_rtn: int = 1) -> Message:
    """9012 execution result (device side; ``ExeRtn`` 1 = success, 100 = no data …)."""
    return _answer(frame, "9012", (("ExeRtn", str(exe_rtn)),))


@dataclass(frozen=True, slots=True)
class Device:
    """The addressee of a platform command."""

    mn: str
    pw: str
    st: str = "31"
    version: ProtocolVersion = ProtocolVersion.V2017


def _command(
    device: Device,
    cn: str,
    cp: tuple[tuple[str, str], ...],
    qn: str | None,
    clock: Callable[[], datetime] | None,
) -> Message:
    return Message(
        cn=cn,
        qn=qn or new_qn(clock() if clock else None),
        st=device.st,
        pw=device.pw,
        mn=device.mn,
        flag=flag_for(device.version, ack=True),
        cp=cp,
    )


def _pol(pol_id: str | None) -> tuple[tuple[str, str], ...]:
    return (("PolId", pol_id),) if pol_id else ()


def time_calibration_reply(
    frame: Frame, system_time: datetime, *, qn: str | None = None
) -> tuple[Message, Message]:
    """Answer a 1013 time-calibration request: the 9013 answer, then a 1012 set-time.

    The set-time command reuses the request's PolId (instrument vs data logger).
    """
    device = Device(
        mn=frame.mn or "",
        pw=frame.pw or "",
        st=frame.st or "31",
        version=frame.version,
    )
    return notification_answer(frame), set_time(
        device, system_time, qn=qn, pol_id=frame.params.get("PolId")
    )


def get_time(
    device: Device,
    *,
    pol_id: str | None = None,
    qn: str | None = None,
    clock: Callable[[], datetime] | None = None,
) -> Message:
    """1011: ask for the field machine's time (``PolId`` selects an instrument)."""
    return _command(device, "1011", _pol(pol_id), qn, clock)


def set_time(
    device: Device,
    system_time: datetime,
    *,
    pol_id: str | None = None,
    qn: str | None = None,
    clock: Callable[[], datetime] | None = None,
) -> Message:
    """1012: set the field machine's time to ``system_time`` (local time)."""
    cp = (*_pol(pol_id), ("SystemTime", format_hj212_time(system_time)))
    return _command(device, "1012", cp, qn, clock)


def get_realtime_interval(
    device: Device, *, qn: str | None = None, clock: Callable[[], datetime] | None = None
) -> Message:
    """1061: ask for the real-time upload interval."""
    return _command(device, "1061", (), qn, clock)


def set_realtime_interval(
    device: Device,
    seconds: int,
    *,
    qn: str | None = None,
    clock: Callable[[], datetime] | None = None,
) -> Message:
    """1062: set the real-time upload interval (30-3600 s per the standard)."""
    if not 30 <= seconds <= 3600:
        raise EncodeError(Reason.VALUE_ILLEGAL, f"RtdInterval {seconds} outside 30..3600 s")
    return _command(device, "1062", (("RtdInterval", str(seconds)),), qn, clock)


def start_realtime_data(
    device: Device, *, qn: str | None = None, clock: Callable[[], datetime] | None = None
) -> Message:
    """2011: start real-time data uploads."""
    return _command(device, "2011", (), qn, clock)


def stop_realtime_data(
    device: Device, *, qn: str | None = None, clock: Callable[[], datetime] | None = None
) -> Message:
    """2012: stop real-time data uploads (the device answers 9013)."""
    return _command(device, "2012", (), qn, clock)


def start_facility_state(
    device: Device, *, qn: str | None = None, clock: Callable[[], datetime] | None = None
) -> Message:
    """2021: start facility run-state (``SBn-RS``) uploads."""
    return _command(device, "2021", (), qn, clock)


def stop_facility_state(
    device: Device, *, qn: str | None = None, clock: Callable[[], datetime] | None = None
) -> Message:
    """2022: stop facility run-state uploads (the device answers 9013)."""
    return _command(device, "2022", (), qn, clock)


def _history(
    device: Device,
    cn: str,
    begin: datetime,
    end: datetime,
    qn: str | None,
    clock: Callable[[], datetime] | None,
) -> Message:
    cp = (("BeginTime", format_hj212_time(begin)), ("EndTime", format_hj212_time(end)))
    return _command(device, cn, cp, qn, clock)


def get_minute_data(
    device: Device,
    begin: datetime,
    end: datetime,
    *,
    qn: str | None = None,
    clock: Callable[[], datetime] | None = None,
) -> Message:
    """2051: request minute data between ``begin`` and ``end`` (backfill)."""
    return _history(device, "2051", begin, end, qn, clock)


def get_hour_data(
    device: Device,
    begin: datetime,
    end: datetime,
    *,
    qn: str | None = None,
    clock: Callable[[], datetime] | None = None,
) -> Message:
    """2061: request hour data between ``begin`` and ``end`` (backfill)."""
    return _history(device, "2061", begin, end, qn, clock)


def get_day_data(
    device: Device,
    begin: datetime,
    end: datetime,
    *,
    qn: str | None = None,
    clock: Callable[[], datetime] | None = None,
) -> Message:
    """2031: request daily data between ``begin`` and ``end`` (backfill)."""
    return _history(device, "2031", begin, end, qn, clock)


def get_runtime_data(
    device: Device,
    begin: datetime,
    end: datetime,
    *,
    qn: str | None = None,
    clock: Callable[[], datetime] | None = None,
) -> Message:
    """2041: request facility run-time (``SBn-RT``) daily data between ``begin`` and ``end``."""
    return _history(device, "2041", begin, end, qn, clock)


def get_field_info(
    device: Device,
    *,
    info_id: str,
    pol_id: str | None = None,
    begin: datetime | None = None,
    end: datetime | None = None,
    qn: str | None = None,
    clock: Callable[[], datetime] | None = None,
) -> Message:
    """3020: request field-device information/status (``InfoId``; logs take a window)."""
    cp: tuple[tuple[str, str], ...] = (*_pol(pol_id), ("InfoId", info_id))
    if begin is not None:
        cp += (("BeginTime", format_hj212_time(begin)),)
    if end is not None:
        cp += (("EndTime", format_hj212_time(end)),)
    return _command(device, "3020", cp, qn, clock)
