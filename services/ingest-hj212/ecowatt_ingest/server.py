"""The HJ 212 TCP server: frames in, durable records out, answers after the bus's ack.

For every byte span a connection delivers, the server records a `FrameReceived` on
`hj212.frames` (accepted, unregistered, duplicate or rejected, with the reason) and, for data
frames, a `TelemetryReading` on `telemetry.readings`; both go into one batched publish and the
9014 answer is written only from the publish's completion callback. See the README for the
protocol behaviour and the policies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import resource
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import ecowatt_hj212 as hj212
from ecowatt_hj212 import commands as hj212_commands
from ecowatt_kernel.bus import Bus, Message
from ecowatt_kernel.redis_client import Redis
from ecowatt_kernel.registry_view import RegistryView

from ecowatt_ingest import metrics
from ecowatt_ingest.commands import CommandManager
from ecowatt_ingest.connection import (
    AUTH,
    BACKPRESSURE,
    HOLD,
    RATE,
    UNACKED,
    DeviceConnection,
    Session,
)
from ecowatt_ingest.devices import BAD_PASSWORD, EXPLANATIONS, OK, DeviceDirectory
from ecowatt_ingest.publisher import BatchPublisher, Entry
from ecowatt_ingest.settings import IngestSettings
from ecowatt_ingest.state import SessionStore
from ecowatt_ingest.wire import (
    data_answer,
    frame_message,
    new_id,
    new_trace_id,
    reading_message,
    utc_iso,
)

__all__ = ["DATA_CNS", "IngestServer"]

_logger = logging.getLogger(__name__)

DATA_CNS = frozenset({"2011", "2021", "2031", "2041", "2051", "2061"})
ANSWER_CNS = frozenset({"9011", "9012", "9013", "9014"})
ACCEPTED, UNREGISTERED, DUPLICATE, REJECTED = "accepted", "unregistered", "duplicate", "rejected"
_QN_RTN = {BAD_PASSWORD: 3}
_COUNTERS = (
    "frames",
    "accepted",
    "rejected",
    "duplicates",
    "bytes",
)  # anything else not OK: 4 (MN error)


def _encode(message: hj212.Message) -> bytes:
    """Encode an answer; b"" when the device's own fields cannot be echoed legally."""
    try:
        return hj212.encode(message)
    except hj212.EncodeError as exc:
        _logger.info("answer to %s not sent: %s", message.mn, exc)
        return b""


def _frame_in_progress(framer: hj212.StreamFramer, max_segment: int) -> bool:
    """True when the framer holds the start of a plausible frame whose bytes are still coming.

    Anything else it holds (a whole frame waiting only for its trailer, garbage, a span with
    an impossible length) is released after a short idle (`flush_idle_s`); a frame still
    arriving is left alone until `partial_frame_timeout_s`, so a slow link is not cut.
    """
    buffer = getattr(framer, "_buffer", None)
    if not isinstance(buffer, bytearray):
        return False
    start = buffer.rfind(b"##")
    if start < 0:
        return False
    head = bytes(buffer[start + 2 : start + 6])
    if len(head) < 4:
        return head.isdigit() or not head
    if not head.isdigit():
        return False
    declared = int(head)
    return declared <= max_segment and len(buffer) < start + 10 + declared


class IngestServer:
    """Owns the listening socket, every connection and session, and the publisher."""

    def __init__(
        self,
        settings: IngestSettings,
        *,
        bus: Bus,
        redis: Redis,
        registry: RegistryView,
        instance: str | None = None,
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.instance = instance or settings.instance_id
        self.tz = ZoneInfo(settings.timezone)
        self.directory = DeviceDirectory(registry)
        self.registry = registry
        self.store = SessionStore(redis, prefix=settings.redis_prefix, instance=self.instance)
        self.publisher = BatchPublisher(
            bus,
            batch_max=settings.publish_batch_max,
            linger_s=settings.publish_linger_s,
            concurrency=settings.publish_concurrency,
            high_watermark=settings.publish_high_watermark,
            low_watermark=settings.publish_low_watermark,
            retry_max_s=settings.publish_retry_max_s,
            on_pressure=self._on_pressure,
        )
        self.commands = CommandManager(self)
        self.strict = settings.device_policy == "strict"
        self.connections: set[DeviceConnection] = set()
        self.sessions: dict[str, Session] = {}
        self.holding: set[DeviceConnection] = set()
        self.reassembler = hj212.Reassembler(timeout=settings.split_timeout_s)
        self._recent: dict[tuple[str, str, int], Entry] = {}
        self._offline: list[tuple[str, str, float]] = []
        self._unflushed: list[Session] = []
        self._new_sessions: list[Session] = []
        self._bind_wakeup = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._pressure = False
        self._frame_counters: dict[tuple[str, str], Any] = {}
        self._connections_seen = 0
        self.port: int | None = None
        self.serving = asyncio.Event()
        self.stats = {"frames": 0, "acks": 0, "rejected": 0}

    # ================================================================= lifecycle
    async def start(self, *, wait_for_registry: bool = True) -> None:
        """Bind the port, start the background loops; serve once the registry is ready."""
        if self.settings.raise_nofile:
            self._raise_nofile()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: DeviceConnection(self),
            host=self.settings.hj212_host,
            port=self.settings.hj212_port,
            backlog=self.settings.hj212_backlog,
            reuse_address=True,
            start_serving=False,
        )
        sockets = self._server.sockets
        self.port = sockets[0].getsockname()[1] if sockets else None
        self._tasks = [
            loop.create_task(self._sweep_loop(), name="ingest:sweep"),
            loop.create_task(self._flush_loop(), name="ingest:state"),
            loop.create_task(self._bind_loop(), name="ingest:bind"),
            loop.create_task(self._serve_when_ready(wait_for_registry), name="ingest:serve"),
        ]
        _logger.info("HJ 212 server bound to %s:%s", self.settings.hj212_host, self.port)

    async def _serve_when_ready(self, wait_for_registry: bool) -> None:
        if wait_for_registry:
            try:
                await self.registry.wait_ready(self.settings.wait_for_registry_s)
            except TimeoutError:
                _logger.warning(
                    "registry view not caught up after %.0f s; serving devices anyway",
                    self.settings.wait_for_registry_s,
                )
        assert self._server is not None
        await self._server.start_serving()
        self.serving.set()
        _logger.info("HJ 212 server accepting devices on port %s", self.port)

    async def stop(self) -> None:
        """Stop accepting, answer what is durable, close connections, retire sessions."""
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.pause(BACKPRESSURE)
        # Frames still waiting for their PW check were neither recorded nor answered: give
        # them up now (their devices send them again) rather than hash every queued PW
        # first — after a reconnect storm that can be minutes of scrypt.
        self.directory.close()
        for task in self._background:
            if task.get_name() == "ingest:verify":
                task.cancel()
        await self.publisher.close(timeout_s=10.0)
        self.commands.stop()
        await self.commands.flush()
        for task in self._tasks:
            task.cancel()
        for task in [*self._tasks, *self._background]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        now = time.time()
        for conn in list(self.connections):
            conn.closed = True
            conn.abort()
        for session in list(self.sessions.values()):
            self._offline.append((session.mn, session.session_id, now))
        with contextlib.suppress(Exception):
            await self._write_state()
            await self.store.retire()
        self.directory.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    def _raise_nofile(self) -> None:
        want = self.settings.max_connections + 1024
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft >= want:
            return
        for limits in ((want, max(hard, want)), (min(want, hard), hard)):
            if limits[0] <= soft:
                continue
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, limits)
            except (ValueError, OSError):
                continue
            _logger.info("RLIMIT_NOFILE raised from %d to %d", soft, limits[0])
            return
        if soft < want:
            _logger.warning(
                "RLIMIT_NOFILE is %d (hard limit %d): fewer than max_connections=%d fit",
                soft,
                hard,
                self.settings.max_connections,
            )

    def spawn(self, coro: Any, name: str | None = None) -> None:
        """Run a coroutine in the background, keeping a reference until it ends."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ================================================================= connections
    def on_connection_made(self, conn: DeviceConnection) -> None:
        if len(self.connections) >= self.settings.max_connections:
            metrics.CONNECTIONS_OPENED.labels("refused_limit").inc()
            conn.closed = True
            conn.abort()
            return
        self._connections_seen += 1
        conn.conn_id = self._connections_seen
        self.connections.add(conn)
        metrics.CONNECTIONS_OPENED.labels("accepted").inc()
        metrics.CONNECTIONS.set(len(self.connections))
        assert conn.transport is not None
        conn.transport.set_write_buffer_limits(high=self.settings.write_buffer_high)
        if self._pressure:
            conn.pause(BACKPRESSURE)

    def on_connection_lost(self, conn: DeviceConnection, exc: Exception | None) -> None:
        if conn not in self.connections:
            return
        self.connections.discard(conn)
        self.holding.discard(conn)
        metrics.CONNECTIONS.set(len(self.connections))
        reason = conn.reason or ("peer" if exc is None else "error")
        metrics.CONNECTIONS_CLOSED.labels(reason).inc()
        session = conn.session
        if session is not None:
            session.conn = None
            if self.sessions.get(session.mn) is session:
                del self.sessions[session.mn]
                metrics.SESSIONS.set(len(self.sessions))
                self._offline.append((session.mn, session.session_id, time.time()))
                session.dirty = True
                self._unflushed.append(session)
            self.commands.on_disconnect(session)

    def close_connection(self, conn: DeviceConnection, reason: str) -> None:
        if conn.closed:
            return
        conn.reason = reason
        conn.close()

    def _on_pressure(self, on: bool) -> None:
        self._pressure = on
        for conn in list(self.connections):
            if on:
                conn.pause(BACKPRESSURE)
            elif self._pressure:
                break  # a resumed connection's backlog brought the pressure back
            else:
                conn.resume(BACKPRESSURE)
        if on:
            metrics.THROTTLED.labels("backpressure").inc()
            _logger.warning(
                "bus backpressure: %d messages pending, reading paused", self.publisher.pending
            )

    def received_bytes(self, conn: DeviceConnection, size: int) -> None:
        metrics.BYTES.inc(size)
        session = conn.session
        if session is not None:
            session.bytes += size

    # ================================================================= frames
    def on_events(
        self,
        conn: DeviceConnection,
        events: list[hj212.RawFrame | hj212.RejectedSpan],
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
            self.close_connection(conn, "garbage")

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
            session = self.bind(conn, mn)
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
            self.spawn(self._verify(conn, session), name="ingest:verify")
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
            _logger.exception("PW verification of %s failed", session.mn)
        finally:
            session.waiting = None
            conn.resume(AUTH)

    def bind(self, conn: DeviceConnection, mn: str) -> Session:
        """Bind the connection to `mn` (its first valid frame); a reconnect replaces."""
        now = time.time()
        old = self.sessions.get(mn)
        session = Session(mn, conn, new_id(), now)
        self.sessions[mn] = session
        conn.session = session
        metrics.SESSIONS.set(len(self.sessions))
        if old is not None and old.conn is not None and old.conn is not conn:
            # the device reconnected while its old connection looked alive: the new one wins
            self.close_connection(old.conn, "replaced")
        self._new_sessions.append(session)
        self._bind_wakeup.set()
        return session

    async def _bind_loop(self) -> None:
        """Write new sessions to Redis in batches (a reconnect storm is one pipeline per tick)
        and learn each device's previous last-seen time (for the automatic backfill)."""
        while True:
            await self._bind_wakeup.wait()
            await asyncio.sleep(0.05)
            self._bind_wakeup.clear()
            sessions, self._new_sessions = self._new_sessions, []
            if not sessions:
                continue
            try:
                previous = await self.store.bind(
                    [(s.mn, self._session_fields(s)) for s in sessions]
                )
            except Exception as exc:
                _logger.warning("%d new sessions not written to Redis: %s", len(sessions), exc)
                continue
            for session, seen in zip(sessions, previous, strict=True):
                session.previous_seen = seen
                if session.conn is not None:
                    self._maybe_backfill(session)

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
                self._check_clock(session, frame, wall)
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
            self._maybe_backfill(session)

    def _readings(
        self, frame: hj212.Frame, registered: bool, frame_id: str, trace: str, wall: float
    ) -> list[Message]:
        if frame.is_split:
            try:
                completed = self.reassembler.add(frame)
            except hj212.ReassemblyError as exc:
                _logger.info("split part of %s not usable: %s", frame.mn, exc)
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
                data_time_utc=moment.replace(tzinfo=self.tz).astimezone(UTC).isoformat(),
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
        key = (cn or "", verdict)
        counter = self._frame_counters.get(key)
        if counter is None:
            counter = self._frame_counters[key] = metrics.FRAMES.labels(cn_label(cn), verdict)
        counter.inc()
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
        key = ("span" if cn is None else cn, REJECTED)
        counter = self._frame_counters.get(key)
        if counter is None:
            counter = self._frame_counters[key] = metrics.FRAMES.labels(cn_label(cn), REJECTED)
        counter.inc()
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

    # ================================================================= duties
    def _check_clock(self, session: Session, frame: hj212.Frame, wall: float) -> None:
        if wall - session.drift_checked < 60.0 or frame.qn is None:
            return
        session.drift_checked = wall
        device_time = hj212.parse_hj212_time(frame.qn)
        if device_time is None:
            return
        drift = device_time.replace(tzinfo=self.tz).timestamp() - wall
        if abs(drift) <= self.settings.max_clock_drift_s:
            return
        if wall - session.last_clock_fix < self.settings.clock_correction_interval_s:
            return
        session.last_clock_fix = wall
        _logger.info("clock of %s is off by %.0f s: sending 1012", session.mn, drift)
        self.commands.internal(session, "1012", {})

    def _maybe_backfill(self, session: Session) -> None:
        settings = self.settings
        if session.backfill_checked or not settings.backfill_enabled:
            return
        if session.registered is not True or session.previous_seen is None:
            return
        session.backfill_checked = True
        now = time.time()
        gap_start = session.previous_seen
        if now - gap_start < settings.backfill_min_gap_s:
            return
        gap_start = max(gap_start, now - settings.backfill_max_window_s)
        begin = datetime.fromtimestamp(gap_start, self.tz).replace(tzinfo=None, microsecond=0)
        end = datetime.fromtimestamp(now, self.tz).replace(tzinfo=None, microsecond=0)
        hour = begin.replace(minute=0, second=0)
        fmt = hj212.format_hj212_time
        _logger.info("device %s back after a gap since %s: requesting backfill", session.mn, begin)
        self.commands.internal(session, "2051", {"BeginTime": fmt(begin), "EndTime": fmt(end)})
        self.commands.internal(session, "2061", {"BeginTime": fmt(hour), "EndTime": fmt(end)})

    def local_now(self) -> datetime:
        """The deployment's local time, naive (what HJ 212 devices speak)."""
        return datetime.now(self.tz).replace(tzinfo=None)

    def to_local(self, moment: datetime) -> datetime:
        if moment.tzinfo is None:
            return moment
        return moment.astimezone(self.tz).replace(tzinfo=None)

    # ================================================================= loops
    async def _sweep_loop(self) -> None:
        """Flush idle framers, time out partial frames and idle connections, expire splits."""
        settings = self.settings
        tick = min(0.1, settings.flush_idle_s / 2)
        last_idle_check = 0.0
        while True:
            await asyncio.sleep(tick)
            try:
                now = time.monotonic()
                for conn in list(self.holding):
                    framer = conn.framer
                    if framer is None or conn.closed:
                        self.holding.discard(conn)
                        continue
                    idle = now - conn.last_rx
                    if (
                        idle >= settings.flush_idle_s
                        and not _frame_in_progress(framer, settings.max_segment_size)
                    ) or (now - conn.partial_since >= settings.partial_frame_timeout_s):
                        conn.flush_framer()
                if now - last_idle_check >= 1.0:
                    last_idle_check = now
                    limit = settings.idle_timeout_s
                    for conn in [c for c in self.connections if now - c.last_rx > limit]:
                        self.close_connection(conn, "idle")
                    self._expire_splits()
            except Exception:
                _logger.exception("sweep failed")

    def _expire_splits(self) -> None:
        for given_up in self.reassembler.expire():
            if not given_up.parts:
                continue
            first = given_up.parts[0]
            session = self.sessions.get(first.mn or "")
            registered = session.registered is True if session else False
            received = ",".join(str(p.pno) for p in given_up.parts)
            _logger.info(
                "split set of %s incomplete (%s), missing parts %s: publishing what came",
                first.mn,
                given_up.reason,
                given_up.missing,
            )
            messages = self._reading(
                first,
                given_up.codes,
                registered,
                None,
                new_trace_id(),
                time.time(),
                key_suffix=f"|partial:{received}/{given_up.pnum}",
            )
            if messages:
                self.publisher.submit(messages, key=first.mn)

    async def _flush_loop(self) -> None:
        """Write session state to Redis every `session_flush_s`; keep the heartbeat alive."""
        heartbeat_every = max(1.0, self.settings.instance_ttl_s / 3)
        last_heartbeat = 0.0
        while True:
            try:
                now = time.monotonic()
                if now - last_heartbeat >= heartbeat_every:
                    await self.store.heartbeat(self.settings.instance_ttl_s)
                    last_heartbeat = now
                await self._write_state()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _logger.warning("session state not written to Redis: %s", exc)
            await asyncio.sleep(self.settings.session_flush_s)

    def _session_fields(self, session: Session) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "mn": session.mn,
            "last_seen": round(session.last_seen, 3),
            "peer": session.peer,
            "session_id": session.session_id,
            "instance": self.instance,
            "connected_at": round(session.connected_at, 3),
            "online": 1 if session.conn is not None else 0,
        }
        if session.version is not None:
            fields["version"] = session.version.value
        if session.registered is not None:
            fields["registered"] = session.registered
            fields["identity"] = session.identity
        device = self.directory.device(session.mn)
        if device is not None:
            fields["crc_variant"] = device.crc_variant
        return fields

    async def _write_state(self) -> None:
        updates: list[tuple[str, dict[str, Any], bool | None]] = []
        rejects: dict[str, list[str]] = {}
        sessions: Iterable[Session] = [*self.sessions.values(), *self._unflushed]
        self._unflushed.clear()
        for session in sessions:
            counters = (
                session.frames,
                session.accepted,
                session.rejected,
                session.duplicates,
                session.bytes,
            )
            if counters == session.flushed and not session.dirty:
                continue
            session.flushed = counters
            session.dirty = False
            fields = self._session_fields(session)
            if session.conn is None:
                fields.pop("online")
            fields.update(zip(_COUNTERS, counters, strict=True))
            updates.append((session.mn, fields, session.registered))
            if session.rejects:
                rejects[session.mn] = session.rejects[::-1]
                session.rejects = None
        offline, self._offline = self._offline, []
        if updates or rejects or offline:
            await self.store.write(updates, rejects, offline, self.settings.recent_rejects)

    # ================================================================= helpers for commands
    def send_to(self, session: Session, data: bytes) -> bool:
        conn = session.conn
        if conn is None or conn.closed:
            return False
        conn.write(data)
        return True

    def owns(self, mn: str) -> Session | None:
        session = self.sessions.get(mn)
        if session is None or session.conn is None or session.conn.closed:
            return None
        return session


def cn_label(cn: str | None) -> str:
    return metrics.cn_label(cn)
