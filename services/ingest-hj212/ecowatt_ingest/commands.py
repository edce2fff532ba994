"""Reverse commands: `device.commands` in, HJ 212 requests out, `device.command-results` back.

Several ingest instances may run; each consumes `device.commands` in a consumer group of
its own (`ingest-hj212.commands.<instance id>`), so every instance sees every command:

* the instance that holds the device's session (and that Redis names as the owner) claims
  the command in Redis (`SET NX`) and runs it;
* an instance without the session checks Redis: when a live instance holds it, it leaves
  the command to that one; when none does, it tries the same claim, and the one instance
  that wins publishes `offline`.

The claim also makes redelivery and replays harmless: a claimed command is never run twice.
Commands older than `command_max_age_s` are not run at all.

One command runs at a time per device (HJ 212 loggers handle one request at a time); the
rest wait in the session's queue. A request is re-sent with the same QN after `OverTime`
seconds, up to `ReCount` times (HJ 212-2017 §6.2); after the 9011 (`QnRtn=1`) the command
waits for its 9012 (or 9013 for notifications), and history requests count the data
uploads they bring in. Results: `sent`, `accepted` (9011 QnRtn=1), `rejected` (QnRtn≠1),
`executed` (9012 ExeRtn=1, or 9013), `failed` (ExeRtn≠1, disconnect, unsupported),
`timeout`, `offline`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import ecowatt_hj212 as hj212
from ecowatt_hj212 import commands as hj212_commands
from ecowatt_kernel.bus import Record
from ecowatt_kernel.contracts import ContractError, DeviceCommand, DeviceCommandResult, decode
from ecowatt_kernel.contracts import encode as encode_event

from ecowatt_ingest import metrics
from ecowatt_ingest.command_model import HISTORY_CNS, ActiveCommand, PlannedCommand
from ecowatt_ingest.connection import Session
from ecowatt_ingest.devices import DeviceDirectory
from ecowatt_ingest.publisher import BatchPublisher
from ecowatt_ingest.settings import IngestSettings
from ecowatt_ingest.state import SessionStore
from ecowatt_ingest.timebase import TimeBase
from ecowatt_ingest.wire import new_id

__all__ = [
    "HISTORY_CNS",
    "SUPPORTED_CNS",
    "ActiveCommand",
    "CommandManager",
    "PlannedCommand",
    "SessionLink",
]

_logger = logging.getLogger(__name__)
STATE_WRITERS = 8
"""Command states written to Redis at once (one Redis connection each)."""

NOTIFICATION_CNS = frozenset({"2012", "2022"})
SUPPORTED_CNS = frozenset(
    {"1011", "1012", "1061", "1062", "2011", "2012", "2021", "2022", *HISTORY_CNS}
)


class SessionLink(Protocol):
    """What the command manager needs of sessions (the session table provides it)."""

    def owns(self, mn: str) -> Session | None:
        """The live session of `mn` on this instance, if any."""
        ...

    def send_to(self, session: Session, data: bytes) -> bool:
        """Write to the session's device; False when its connection is gone."""
        ...

    def live_sessions(self) -> Iterator[Session]: ...


def parse_time_param(value: str, time_base: TimeBase) -> datetime:
    """An HJ 212 time (local, 14 or 17 digits) or ISO 8601 text → local naive time."""
    parsed = hj212.parse_hj212_time(value)
    if parsed is not None:
        return parsed
    moment = datetime.fromisoformat(value)
    return time_base.to_local(moment)


class CommandManager:
    """See the module docstring."""

    def __init__(
        self,
        settings: IngestSettings,
        *,
        instance: str,
        store: SessionStore,
        publisher: BatchPublisher,
        sessions: SessionLink,
        directory: DeviceDirectory,
        time_base: TimeBase,
    ) -> None:
        self.settings = settings
        self.instance = instance
        self.store = store
        self.publisher = publisher
        self.sessions = sessions
        self.directory = directory
        self.time = time_base
        self._writes: dict[str, asyncio.Task[None]] = {}
        # Redis connections for command states: a burst (every device's 1012 or backfill
        # after a broker or ingest restart) must not open one connection per command
        self._write_slots = asyncio.Semaphore(STATE_WRITERS)

    # ------------------------------------------------------------------ consuming
    async def handle(self, records: Sequence[Record]) -> None:
        """Bus handler for `device.commands` (one partition's batch)."""
        for record in records:
            try:
                command = decode(record).data
            except ContractError as exc:
                _logger.error("device.commands record skipped", extra={"error": str(exc)})
                continue
            if isinstance(command, DeviceCommand):
                await self.consider(command)

    async def consider(self, command: DeviceCommand) -> None:
        store = self.store
        age = time.time() - command.requested_at.timestamp()
        if age > self.settings.command_max_age_s:
            _logger.info(
                "command too old: not run",
                extra={"command_id": command.command_id, "age_s": round(age)},
            )
            return
        planned = PlannedCommand(
            command_id=command.command_id,
            cn=command.cn,
            params=dict(command.params),
            requested_by=command.requested_by,
            overtime_s=command.overtime_s,
            recount=command.recount,
        )
        session = self.sessions.owns(command.mn)
        if session is not None:
            owner = await store.owner(command.mn)
            if owner not in (None, self.instance):
                return  # the device moved to another instance, which runs it
            if await store.claim(command.command_id):
                self.enqueue(session, planned)
            return
        if await store.owner(command.mn) is not None:
            return  # another live instance holds the session and runs the command
        if await store.claim(command.command_id):
            self._publish(command.mn, planned, "offline", data={"reason": "device not connected"})

    # ------------------------------------------------------------------ running
    def internal(self, session: Session, cn: str, params: dict[str, str]) -> None:
        """A command the server decides on itself (time correction, backfill)."""
        planned = PlannedCommand(
            command_id=f"auto-{new_id()}",
            cn=cn,
            params=params,
            requested_by=f"{self.settings.service_name}/{self.instance}",
            overtime_s=self.settings.command_overtime_s,
            recount=self.settings.command_recount,
            internal=True,
        )
        self.enqueue(session, planned)

    def enqueue(self, session: Session, planned: PlannedCommand) -> None:
        if session.queue is None:
            session.queue = deque()
        session.queue.append(planned)
        if session.active is None:
            self._next(session)

    def _next(self, session: Session) -> None:
        while session.queue and session.active is None:
            planned = session.queue.popleft()
            try:
                message = self.build(session, planned)
                data = hj212.encode(message)
            except (ValueError, KeyError, hj212.HJ212Error) as exc:
                self._publish(session.mn, planned, "failed", data={"reason": str(exc)})
                continue
            assert message.qn is not None
            active = ActiveCommand(planned=planned, qn=message.qn, data=data)
            if planned.cn in HISTORY_CNS:  # which uploads answer it (history, not live)
                active.window = (
                    parse_time_param(planned.params["BeginTime"], self.time),
                    parse_time_param(planned.params["EndTime"], self.time),
                )
            session.active = active
            self._send(session, active)

    def build(self, session: Session, planned: PlannedCommand) -> hj212.Message:
        """The HJ 212 request for `planned`, addressed to the session's device."""
        time_base = self.time
        device = hj212_commands.Device(
            mn=session.mn,
            pw=session.pw or "",
            st=session.st or "31",
            version=self._version(session),
        )
        cn, params = planned.cn, planned.params
        clock = time_base.local_now
        pol = params.get("PolId") or None
        if cn == "1012":
            text = params.get("SystemTime")
            moment = parse_time_param(text, time_base) if text else time_base.local_now()
            return hj212_commands.set_time(device, moment, pol_id=pol, clock=clock)
        if cn == "1011":
            return hj212_commands.get_time(device, pol_id=pol, clock=clock)
        if cn == "1061":
            return hj212_commands.get_realtime_interval(device, clock=clock)
        if cn == "1062":
            seconds = int(params["RtdInterval"])
            return hj212_commands.set_realtime_interval(device, seconds, clock=clock)
        if cn == "2011":
            return hj212_commands.start_realtime_data(device, clock=clock)
        if cn == "2012":
            return hj212_commands.stop_realtime_data(device, clock=clock)
        if cn == "2021":
            return hj212_commands.start_facility_state(device, clock=clock)
        if cn == "2022":
            return hj212_commands.stop_facility_state(device, clock=clock)
        if cn in HISTORY_CNS:
            begin = parse_time_param(params["BeginTime"], time_base)
            end = parse_time_param(params["EndTime"], time_base)
            if end < begin:
                raise ValueError("EndTime is before BeginTime")
            builder = {
                "2051": hj212_commands.get_minute_data,
                "2061": hj212_commands.get_hour_data,
                "2031": hj212_commands.get_day_data,
                "2041": hj212_commands.get_runtime_data,
            }[cn]
            return builder(device, begin, end, clock=clock)
        raise ValueError(f"CN {cn} is not a command this server sends")

    def _version(self, session: Session) -> hj212.ProtocolVersion:
        if session.version is not None and session.version is not hj212.ProtocolVersion.UNKNOWN:
            return session.version
        device = self.directory.device(session.mn)
        if device is not None:
            return hj212.ProtocolVersion(device.protocol_version)
        return hj212.ProtocolVersion.V2017

    def _send(self, session: Session, active: ActiveCommand) -> None:
        active.attempts += 1
        if not self.sessions.send_to(session, active.data):
            self._finish(session, active, "failed", {"reason": "device disconnected"})
            return
        if active.attempts == 1:
            self._publish(session.mn, active.planned, "sent", qn=active.qn)
        active.timer = asyncio.get_running_loop().call_later(
            active.planned.overtime_s, self._timeout, session, active
        )

    def _restart_timer(self, session: Session, active: ActiveCommand, seconds: float) -> None:
        if active.timer is not None:
            active.timer.cancel()
        active.timer = asyncio.get_running_loop().call_later(
            seconds, self._timeout, session, active
        )

    def _timeout(self, session: Session, active: ActiveCommand) -> None:
        if session.active is not active:
            return
        active.timer = None
        if active.phase == "request":
            if active.attempts <= active.planned.recount:
                # logged once, when the command times out: a retry is routine
                _logger.debug(
                    "command unanswered: re-sending",
                    extra={"mn": session.mn, "cn": active.planned.cn, "qn": active.qn},
                )
                self._send(session, active)
                return
            reason = f"no answer after {active.attempts} tries of {active.planned.overtime_s} s"
        else:
            reason = "the device accepted the request but sent no result in time"
        _logger.info(
            "command timed out",
            extra={
                "mn": session.mn,
                "cn": active.planned.cn,
                "qn": active.qn,
                "attempts": active.attempts,
                "reason": reason,
            },
        )
        self._finish(session, active, "timeout", {"reason": reason})

    # ------------------------------------------------------------------ answers
    def on_answer(self, session: Session, frame: hj212.Frame) -> None:
        """A 9011/9012/9013/9014 from the device."""
        active = session.active
        if active is None:
            return
        qn = frame.qn or frame.params.get("QN")  # 2005 answers carry the QN in CP
        if qn != active.qn:
            return
        cn = frame.cn
        if cn == "9011":
            rtn = _int(frame.params.get("QnRtn"))
            active.qn_rtn = rtn
            if rtn == 1:
                active.phase = "executing"
                self._restart_timer(session, active, self.settings.command_execution_timeout_s)
                self._publish(session.mn, active.planned, "accepted", qn=active.qn, qn_rtn=rtn)
            else:
                self._finish(session, active, "rejected", {})
        elif cn == "9012":
            exe = _int(frame.params.get("ExeRtn"))
            if exe == 1:
                self._finish(session, active, "executed", {}, exe_rtn=exe)
            else:
                data = {"reason": "no data" if exe == 100 else f"ExeRtn={exe}"}
                self._finish(session, active, "failed", data, exe_rtn=exe)
        elif cn == "9013" and active.planned.cn in NOTIFICATION_CNS:
            self._finish(session, active, "executed", {})

    def on_upload(self, session: Session, frame: hj212.Frame) -> None:
        """A data or response upload: part of the active command's answer?"""
        active = session.active
        if active is None or frame.cn != active.planned.cn:
            return
        if active.planned.cn in HISTORY_CNS:  # each upload has a QN of its own
            active.uploads += 1
            active.phase = "executing"
            self._restart_timer(session, active, self.settings.command_execution_timeout_s)
        elif frame.qn == active.qn:  # a response upload (1011 time, 1061 interval …)
            active.result.update({k: v for k, v in frame.params.items() if k != "QN"})
            active.phase = "executing"

    def on_disconnect(self, session: Session) -> None:
        active = session.active
        if active is not None:
            self._finish(session, active, "failed", {"reason": "device disconnected"}, next_=False)
        while session.queue:
            planned = session.queue.popleft()
            self._publish(session.mn, planned, "offline", data={"reason": "device disconnected"})

    def _finish(
        self,
        session: Session,
        active: ActiveCommand,
        status: str,
        data: dict[str, Any],
        *,
        exe_rtn: int | None = None,
        next_: bool = True,
    ) -> None:
        if active.timer is not None:
            active.timer.cancel()
            active.timer = None
        if session.active is active:
            session.active = None
        result = {**active.result, **data}
        if active.planned.cn in HISTORY_CNS:
            result["uploads"] = active.uploads
        result["attempts"] = active.attempts
        self._publish(
            session.mn,
            active.planned,
            status,
            qn=active.qn,
            qn_rtn=active.qn_rtn,
            exe_rtn=exe_rtn,
            data=result,
            final=True,
        )
        if next_:
            self._next(session)

    # ------------------------------------------------------------------ results
    def _publish(
        self,
        mn: str,
        planned: PlannedCommand,
        status: str,
        *,
        qn: str | None = None,
        qn_rtn: int | None = None,
        exe_rtn: int | None = None,
        data: dict[str, Any] | None = None,
        final: bool | None = None,
    ) -> None:
        if final is None:
            final = status not in ("sent", "accepted")
        finished = datetime.now(UTC) if final else None
        result = DeviceCommandResult(
            command_id=planned.command_id,
            mn=mn,
            cn=planned.cn,
            status=status,  # type: ignore[arg-type]
            qn=qn,
            qn_rtn=qn_rtn,
            exe_rtn=exe_rtn,
            data={**(data or {}), "requested_by": planned.requested_by},
            finished_at=finished,
        )
        metrics.COMMANDS.labels(metrics.cn_label(planned.cn), status).inc()
        self.publisher.submit(
            [encode_event(result, topic=self.settings.topic_command_results)], key=mn
        )
        fields: dict[str, Any] = {
            "command_id": planned.command_id,
            "mn": mn,
            "cn": planned.cn,
            "status": status,
            "instance": self.instance,
            "updated_at": datetime.now(UTC).isoformat(),
            "result": result.model_dump(mode="json"),
        }
        if planned.internal:
            fields |= {"requested_by": planned.requested_by, "params": planned.params}
        # one command's states are written in order (a later status never lands first)
        previous = self._writes.get(planned.command_id)
        task = asyncio.get_running_loop().create_task(
            self._store(planned.command_id, fields, previous)
        )
        self._writes[planned.command_id] = task
        task.add_done_callback(lambda done: self._written(planned.command_id, done))

    def _written(self, command_id: str, task: asyncio.Task[None]) -> None:
        if self._writes.get(command_id) is task:
            del self._writes[command_id]

    async def _store(
        self, command_id: str, fields: dict[str, Any], previous: asyncio.Task[None] | None
    ) -> None:
        if previous is not None:
            with contextlib.suppress(Exception):
                await previous
        try:
            async with self._write_slots:
                await self.store.command_update(command_id, fields)
        except Exception as exc:
            _logger.warning(
                "command state not written to Redis",
                extra={"command_id": command_id, "error": repr(exc)},
            )

    async def flush(self) -> None:
        """Wait for the command states still being written to Redis."""
        if self._writes:
            await asyncio.wait(set(self._writes.values()), timeout=5)

    def stop(self) -> None:
        for session in self.sessions.live_sessions():
            active = session.active
            if active is not None and active.timer is not None:
                active.timer.cancel()
                active.timer = None


def _int(value: str | None) -> int | None:
    with contextlib.suppress(TypeError, ValueError):
        return int(value)  # type: ignore[arg-type]
    return None
