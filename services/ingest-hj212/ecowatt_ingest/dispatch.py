"""Frames to verdicts to the bus to answers: the hot path of every connection.

For each framer event of a connection the dispatcher decides a verdict, builds the
`hj212.frames` record (and, for data, the `telemetry.readings` message), submits them to the
batched publisher and writes the device's answer from the publish's completion, i.e. only
once the frame is durable. It also keeps the per-connection frame rate, the duplicate
cache, split-set reassembly and the device duties a frame triggers (clock correction,
automatic backfill). It is the `ConnectionHost` of every connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Coroutine
from datetime import UTC
from typing import Any

import ecowatt_hj212 as hj212
from ecowatt_hj212 import commands as hj212_commands
from ecowatt_kernel.bus import Message

from ecowatt_ingest import metrics
from ecowatt_ingest.commands import CommandManager
from ecowatt_ingest.connection import AUTH, HOLD, RATE, UNACKED, DeviceConnection, Session
from ecowatt_ingest.devices import BAD_PASSWORD, EXPLANATIONS, OK, DeviceDirectory
from ecowatt_ingest.publisher import BatchPublisher, Entry
from ecowatt_ingest.sessions import SessionTable
from ecowatt_ingest.settings import IngestSettings
from ecowatt_ingest.timebase import TimeBase
from ecowatt_ingest.wire import (
    data_answer,
    frame_message,
    new_id,
    new_trace_id,
    reading_message,
    utc_iso,
)

__all__ = ["ANSWER_CNS", "DATA_CNS", "Dispatcher"]

_logger = logging.getLogger(__name__)

DATA_CNS = frozenset({"2011", "2021", "2031", "2041", "2051", "2061"})
ANSWER_CNS = frozenset({"9011", "9012", "9013", "9014"})
ACCEPTED, UNREGISTERED, DUPLICATE, REJECTED = "accepted", "unregistered", "duplicate", "rejected"
_QN_RTN = {BAD_PASSWORD: 3}  # anything else not OK: 4 (MN error)


def _encode(message: hj212.Message) -> bytes:
    """Encode an answer; b"" when the device's own fields cannot be echoed legally."""
    try:
        return hj212.encode(message)
    except hj212.EncodeError as exc:
        _logger.info("answer not sent", extra={"mn": message.mn, "error": str(exc)})
        return b""


class Dispatcher:
    """See the module docstring."""

    def __init__(
        self,
        settings: IngestSettings,
        *,
        instance: str,
        directory: DeviceDirectory,
        publisher: BatchPublisher,
        sessions: SessionTable,
        commands: CommandManager,
        time_base: TimeBase,
        spawn: Callable[[Coroutine[Any, Any, None], str], None],
    ) -> None:
        self.settings = settings
        self.instance = instance
        self.directory = directory
        self.publisher = publisher
        self.sessions = sessions
        self.commands = commands
        self.time = time_base
        self.spawn = spawn
        self.strict = settings.device_policy == "strict"
        self.holding: set[DeviceConnection] = set()
        self.reassembler = hj212.Reassembler(timeout=settings.split_timeout_s)
        self.stats = {"frames": 0, "acks": 0, "rejected": 0}
        self._recent: dict[tuple[str, str, int], Entry] = {}
        self._frame_counters: dict[tuple[str | None, str], Any] = {}

    # ------------------------------------------------------------------ connection hooks
    def on_connection_made(self, conn: DeviceConnection) -> None:
        self.sessions.on_connection_made(conn)

    def on_connection_lost(self, conn: DeviceConnection, exc: Exception | None) -> None:
        self.holding.discard(conn)
        self.sessions.on_connection_lost(conn, exc)

    def received_bytes(self, conn: DeviceConnection, size: int) -> None:
        metrics.BYTES.inc(size)
        session = conn.session
        if session is not None:
            session.bytes += size

    # ------------------------------------------------------------------ frames
    def on_events(
        self,
        conn: DeviceConnection,
        events: list[hj212.FramerEvent],
        now: float,
        *,
        hold: bool = True,
    ) -> None:
        """Handle framer events in order; stop (keeping the rest in `conn.backlog`) when the
        connection must wait: bus backpressure, too many frames unacknowledged, a PW being
        verified, or the frame rate spent. Frames already read stay bounded by one read."""
        settings = self.settings
        rate = settings.max_frames_per_s
        tokens = min(settings.frame_burst, conn.tokens + (now - conn.tokens_at) * rate)
        conn.tokens_at = now
        last = len(events) - 1
        for index, event in enumerate(events):
            tokens -= 1
            if isinstance(event, hj212.RawFrame):
                self.on_frame(conn, event.data)
            else:
                self.on_span(conn, event)
            if conn.closed:
                return
            if hold and index < last and (tokens < 0 or conn.paused & HOLD):
                conn.backlog = events[index + 1 :]
                break
        conn.tokens = tokens
        if tokens < 0 and not conn.paused & RATE:
            conn.pause(RATE)
            metrics.THROTTLED.labels("rate").inc()
            asyncio.get_running_loop().call_later(-tokens / rate, conn.resume, RATE)

    def on_span(self, conn: DeviceConnection, span: hj212.RejectedSpan) -> None:
        session = conn.session
        self.record_rejected(
            conn,
            span.data,
            span.reason.value,
            span.explanation,
            mn=session.mn if session else None,
        )
        conn.garbage += len(span.data)
        if not conn.valid_seen and conn.garbage > self.settings.max_garbage_bytes:
            self.sessions.close_connection(conn, "garbage")

    def on_frame(self, conn: DeviceConnection, raw: bytes) -> None:
        try:
            frame = hj212.decode(raw, crc_policy=self.directory.crc_policy)
        except hj212.DecodeError as exc:
            partial = exc.frame
            self.record_rejected(
                conn,
                raw,
                exc.reason.value,
                str(exc),
                mn=partial.mn if partial is not None else None,
                cn=partial.cn if partial is not None else None,
                qn=partial.qn if partial is not None else None,
            )
            conn.garbage += len(raw)
            return
        verification = frame.verification
        if not verification.ok:
            verdict = verification.length if not verification.length.ok else verification.crc
            self.record_rejected(
                conn,
                raw,
                verdict.reason.value,
                verdict.explanation,
                mn=frame.mn,
                cn=frame.cn,
                qn=frame.qn,
            )
            conn.garbage += len(raw)
            return
        mn = frame.mn
        session = conn.session
        if session is None:
            if not mn:
                self.record_rejected(
                    conn, raw, "mn_missing", "frame has no MN", cn=frame.cn, qn=frame.qn
                )
                return
            session = self.sessions.bind(conn, mn)
        elif mn != session.mn:
            self.record_rejected(
                conn,
                raw,
                "session_mn_mismatch",
                f"this connection is bound to MN {session.mn}; the frame says MN {mn}",
                mn=mn,
                cn=frame.cn,
                qn=frame.qn,
            )
            return
        conn.valid_seen = True
        if session.waiting is not None:
            session.waiting.append((frame, conn.rx_wall, conn.rx_perf))
            return
        identity = self.directory.cached(mn, frame.pw)
        if identity is None:
            session.waiting = [(frame, conn.rx_wall, conn.rx_perf)]
            conn.pause(AUTH)
            self.spawn(self._verify(conn, session), "ingest:verify")
            return
        self.dispatch(conn, session, frame, identity, conn.rx_wall, conn.rx_perf)

    async def _verify(self, conn: DeviceConnection, session: Session) -> None:
        try:
            while session.waiting:
                frame, wall, perf = session.waiting[0]
                identity = self.directory.cached(session.mn, frame.pw)
                if identity is None:
                    await self.directory.verify(session.mn, frame.pw)
                    continue
                session.waiting.pop(0)
                if not conn.closed:
                    self.dispatch(conn, session, frame, identity, wall, perf)
        except Exception:
            _logger.exception("PW verification failed", extra={"mn": session.mn})
        finally:
            session.waiting = None
            conn.resume(AUTH)

    def dispatch(
        self,
        conn: DeviceConnection,
        session: Session,
        frame: hj212.Frame,
        identity: str,
        wall: float,
        perf: float,
    ) -> None:
        """Handle a verified frame of a bound session."""
        mn = session.mn
        registered = identity == OK
        if session.identity != identity:
            session.identity = identity
            session.registered = registered
            session.dirty = True
        session.pw = frame.pw
        if frame.st is not None and frame.st != "91":
            session.st = frame.st
        if session.version is not frame.version and frame.version_source == "flag":
            session.version = frame.version
            session.dirty = True
        elif session.version is None:
            session.version = frame.version
        session.last_seen = wall
        cn = frame.cn
        if not registered:
            explanation = EXPLANATIONS[identity].format(mn=mn)
            reason_code: str | None = identity
            reason: str | None = explanation
            if self.strict:
                self.record_rejected(
                    conn, frame.raw, identity, explanation, mn=mn, cn=cn, qn=frame.qn, wall=wall
                )
                if frame.qn and cn not in ANSWER_CNS:
                    answer = hj212_commands.request_answer(frame, _QN_RTN.get(identity, 4))
                    conn.write(_encode(answer))
                return
            verdict = UNREGISTERED
        else:
            reason_code = reason = None
            verdict = ACCEPTED
        session.frames += 1
        if cn in ANSWER_CNS:
            self.commands.on_answer(session, frame)
            self.record(conn, frame, verdict, reason_code, reason, wall, perf)
            return
        if cn == "1013":  # time calibration: 9013 now, then a 1012 set-time
            conn.write(_encode(hj212_commands.notification_answer(frame)))
            self.record(conn, frame, verdict, reason_code, reason, wall, perf)
            if registered or not self.strict:
                pol = frame.params.get("PolId")
                self.commands.internal(session, "1012", {"PolId": pol} if pol else {})
            return
        if cn == "9015":  # heartbeat (2025)
            if frame.ack_requested and self.settings.answer_heartbeats:
                conn.write(_encode(hj212_commands.notification_answer(frame)))
            self.record(conn, frame, verdict, reason_code, reason, wall, perf)
            return
        original: Entry | None = None
        dedupe_key = None
        if frame.qn is not None:
            dedupe_key = (mn, frame.qn, hash(frame.segment))
            original = self._recent.get(dedupe_key)
        if original is not None:
            session.duplicates += 1
            self.record(
                conn,
                frame,
                DUPLICATE,
                "duplicate_qn",
                f"QN {frame.qn} of MN {mn} was received before with the same content",
                wall,
                perf,
                wait_for=original,
            )
            return
        extra: list[Message] = []
        frame_id = new_id()
        trace = new_trace_id()
        if cn in DATA_CNS:
            self.commands.on_upload(session, frame)
            if registered:
                self.check_clock(session, frame, wall)
            extra = self._readings(frame, registered, frame_id, trace, wall)
        elif cn is not None:
            self.commands.on_upload(session, frame)
        if registered:
            session.accepted += 1
        entry = self.record(
            conn,
            frame,
            verdict,
            reason_code,
            reason,
            wall,
            perf,
            extra=extra,
            frame_id=frame_id,
            trace=trace,
        )
        if dedupe_key is not None:
            recent = self._recent
            recent[dedupe_key] = entry
            if len(recent) > self.settings.duplicate_cache_size:
                del recent[next(iter(recent))]
        if not session.backfill_checked and registered:
            self.maybe_backfill(session)

    def _readings(
        self, frame: hj212.Frame, registered: bool, frame_id: str, trace: str, wall: float
    ) -> list[Message]:
        if frame.is_split:
            try:
                completed = self.reassembler.add(frame)
            except hj212.ReassemblyError as exc:
                _logger.info("split part not usable", extra={"mn": frame.mn, "error": str(exc)})
                return []
            if completed is None:
                return []
            first = completed.parts[0]
            return self._reading(first, completed.codes, registered, frame_id, trace, wall)
        return self._reading(frame, frame.codes, registered, frame_id, trace, wall)

    def _reading(
        self,
        frame: hj212.Frame,
        items: dict[str, dict[str, str]],
        registered: bool,
        frame_id: str | None,
        trace: str,
        wall: float,
        key_suffix: str = "",
    ) -> list[Message]:
        moment = frame.data_time
        text = frame.params.get("DataTime")
        if moment is None or text is None or frame.mn is None or frame.cn is None:
            return []
        stamp = utc_iso(wall)
        return [
            reading_message(
                self.settings.topic_readings,
                mn=frame.mn,
                cn=frame.cn,
                st=frame.st,
                qn=frame.qn,
                data_time=text.strip(),
                data_time_utc=moment.replace(tzinfo=self.time.tz).astimezone(UTC).isoformat(),
                received_at=stamp,
                protocol_version=frame.version.value,
                registered=registered,
                items=items,
                frame_id=frame_id,
                trace_id=trace,
                produced_at=stamp,
                key_suffix=key_suffix,
            )
        ]

    def record(
        self,
        conn: DeviceConnection,
        frame: hj212.Frame,
        verdict: str,
        reason_code: str | None,
        reason: str | None,
        wall: float,
        perf: float,
        *,
        extra: list[Message] | None = None,
        frame_id: str | None = None,
        trace: str | None = None,
        wait_for: Entry | None = None,
    ) -> Entry:
        """Publish the frame's record (and `extra`); answer 9014 once durable if asked."""
        cn = frame.cn
        self._count(cn, verdict)
        self.stats["frames"] += 1
        stamp = utc_iso(wall)
        session = conn.session
        trace = trace or new_trace_id()
        message = frame_message(
            self.settings.topic_frames,
            raw=frame.raw,
            peer=conn.peer,
            received_at=stamp,
            verdict=verdict,
            trace_id=trace,
            produced_at=stamp,
            frame_id=frame_id,
            mn=frame.mn,
            cn=cn,
            qn=frame.qn,
            reason_code=reason_code,
            reason=reason,
            session_id=session.session_id if session else None,
            instance=self.instance,
        )
        answer = None
        if frame.ack_requested and cn not in ANSWER_CNS and cn not in ("1013", "9015"):
            answer = data_answer(frame, self._version_flag(frame))
        messages = [message, *extra] if extra else [message]
        return self._submit(conn, messages, answer, perf, wait_for)

    def record_rejected(
        self,
        conn: DeviceConnection,
        raw: bytes,
        reason_code: str,
        reason: str,
        *,
        mn: str | None = None,
        cn: str | None = None,
        qn: str | None = None,
        wall: float | None = None,
    ) -> None:
        """Publish a rejected frame or span; no answer (HJ 212: a bad frame ends there)."""
        self._count(cn, REJECTED)
        self.stats["rejected"] += 1
        stamp = utc_iso(wall or conn.rx_wall or time.time())
        session = conn.session
        if session is not None and (mn is None or mn == session.mn):
            session.rejected += 1
            session.dirty = True
            if session.rejects is None:
                session.rejects = []
            if len(session.rejects) < self.settings.recent_rejects:
                session.rejects.append(
                    json.dumps(
                        {
                            "received_at": stamp,
                            "reason_code": reason_code,
                            "reason": reason,
                            "cn": cn,
                            "qn": qn,
                            "raw": raw[:2048].decode("utf-8", "replace"),
                        },
                        ensure_ascii=False,
                    )
                )
        trace = new_trace_id()
        message = frame_message(
            self.settings.topic_frames,
            raw=raw,
            peer=conn.peer,
            received_at=stamp,
            verdict=REJECTED,
            trace_id=trace,
            produced_at=stamp,
            mn=mn,
            cn=cn,
            qn=qn,
            reason_code=reason_code,
            reason=reason,
            session_id=session.session_id if session else None,
            instance=self.instance,
        )
        self._submit(conn, [message], None, 0.0, None)

    def _count(self, cn: str | None, verdict: str) -> None:
        """`ecowatt_ingest_frames_total{cn,verdict}`, its children cached (a dict lookup)."""
        key = (cn, verdict)
        counter = self._frame_counters.get(key)
        if counter is None:
            counter = metrics.FRAMES.labels(metrics.cn_label(cn), verdict)
            self._frame_counters[key] = counter
        counter.inc()

    def _submit(
        self,
        conn: DeviceConnection,
        messages: list[Message],
        answer: bytes | None,
        perf: float,
        wait_for: Entry | None,
    ) -> Entry:
        conn.unacked += 1
        limit = self.settings.max_unacked_per_connection
        if conn.unacked >= limit and not conn.paused & UNACKED:
            conn.pause(UNACKED)
            metrics.THROTTLED.labels("unacked").inc()
        stats = self.stats

        def done() -> None:
            conn.unacked -= 1
            if answer is not None and not conn.closed:
                conn.transport.write(answer)  # type: ignore[union-attr]
                metrics.ACK_SECONDS.observe(time.perf_counter() - perf)
                stats["acks"] += 1
            if conn.paused & UNACKED and conn.unacked <= limit // 2:
                conn.resume(UNACKED)

        session = conn.session
        key: object = session.mn if session is not None else conn
        if wait_for is not None and not wait_for.done:
            original = wait_for
            return self.publisher.submit(messages, lambda: original.then(done), key=key)
        return self.publisher.submit(messages, done, key=key)

    def _version_flag(self, frame: hj212.Frame) -> int | None:
        """Version bits for answering a frame without Flag: the registry's version."""
        if frame.flag is not None or frame.mn is None:
            return None
        device = self.directory.device(frame.mn)
        if device is None:
            return None
        return hj212_commands.flag_for(hj212.ProtocolVersion(device.protocol_version))

    # ------------------------------------------------------------------ duties
    def check_clock(self, session: Session, frame: hj212.Frame, wall: float) -> None:
        if wall - session.drift_checked < 60.0 or frame.qn is None:
            return
        session.drift_checked = wall
        device_time = hj212.parse_hj212_time(frame.qn)
        if device_time is None:
            return
        drift = self.time.timestamp(device_time) - wall
        if abs(drift) <= self.settings.max_clock_drift_s:
            return
        if wall - session.last_clock_fix < self.settings.clock_correction_interval_s:
            return
        session.last_clock_fix = wall
        _logger.info(
            "device clock off: sending 1012", extra={"mn": session.mn, "drift_s": round(drift)}
        )
        self.commands.internal(session, "1012", {})

    def maybe_backfill(self, session: Session) -> None:
        settings = self.settings
        if session.backfill_checked or not settings.backfill_enabled:
            return
        if session.registered is not True or session.previous_seen is None:
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

    def expire_splits(self) -> None:
        for given_up in self.reassembler.expire():
            if not given_up.parts:
                continue
            first = given_up.parts[0]
            session = self.sessions.sessions.get(first.mn or "")
            registered = session.registered is True if session else False
            received = ",".join(str(p.pno) for p in given_up.parts)
            _logger.info(
                "split set incomplete: publishing what came",
                extra={"mn": first.mn, "why": given_up.reason, "missing": list(given_up.missing)},
            )
            messages = self._reading(
                first,
                given_up.codes,
                registered,
                None,
                new_trace_id(),
                self.time.now(),
                key_suffix=f"|partial:{received}/{given_up.pnum}",
            )
            if messages:
                self.publisher.submit(messages, key=first.mn)
