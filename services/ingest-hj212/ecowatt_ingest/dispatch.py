"""Frames to verdicts to the bus to answers: the hot path of every connection.

For each framer event of a connection the dispatcher decodes the frame, checks its length
and CRC, passes it through the door (`door.Door`: identity, binding) and, for a verified
frame, decides what it is (an answer to a command, a time-calibration request, a heartbeat,
a duplicate, data), builds the `hj212.frames` record and, for data, the
`telemetry.readings` message, and has the recorder publish them and answer once durable.
It keeps the per-connection frame rate, the duplicate cache and split-set reassembly, and
triggers the time duties (`timekeeping.Timekeeper`). It is every connection's
`ConnectionHost`.

Duplicates are recognised by (MN, QN, CRC-32 of the data segment). With several workers
(`shared_uploads`) a device may re-send an upload to another worker than the one that took
it: every durable upload is then noted in Redis before it is answered (`share_uploads`, one
call per publish batch), and a connection's first frames wait until its device's recent
uploads are loaded from there (`load_uploads`, called by the door before binding).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC

import ecowatt_hj212 as hj212
from ecowatt_hj212 import commands as hj212_commands
from ecowatt_kernel.bus import Message

from ecowatt_ingest import metrics
from ecowatt_ingest.commands import CommandManager
from ecowatt_ingest.connection import HOLD, RATE, DeviceConnection, Session
from ecowatt_ingest.devices import DeviceDirectory
from ecowatt_ingest.door import Door
from ecowatt_ingest.publisher import Entry
from ecowatt_ingest.recorder import (
    ACCEPTED,
    ANSWER_CNS,
    DUPLICATE,
    FrameRecorder,
    encode_answer,
)
from ecowatt_ingest.sessions import SessionTable
from ecowatt_ingest.settings import IngestSettings
from ecowatt_ingest.state import SessionStore
from ecowatt_ingest.timebase import TimeBase
from ecowatt_ingest.timekeeping import Timekeeper
from ecowatt_ingest.wire import new_id, new_trace_id, reading_message, utc_iso

__all__ = ["DATA_CNS", "ArchivedParts", "Dispatcher"]

_logger = logging.getLogger(__name__)

_DURABLE = Entry((), None, None)
_DURABLE.done = True
"""Stands for an upload another worker made durable (known from Redis)."""

DATA_CNS = frozenset({"2011", "2021", "2031", "2041", "2051", "2061"})

ArchivedParts = Callable[[str, str, str], Awaitable[list[bytes]]]
"""(MN, CN, DataTime) → the bytes of the device's archived frames with that CN and DataTime."""


def _decoded(raws: Iterable[bytes]) -> list[hj212.Frame]:
    """Archived frames decoded again (one that no longer decodes is left out)."""
    frames = []
    for raw in raws:
        with contextlib.suppress(hj212.HJ212Error):
            frames.append(hj212.decode(raw))
    return frames


class Dispatcher:
    """See the module docstring."""

    def __init__(
        self,
        settings: IngestSettings,
        *,
        directory: DeviceDirectory,
        sessions: SessionTable,
        recorder: FrameRecorder,
        commands: CommandManager,
        timekeeper: Timekeeper,
        time_base: TimeBase,
        store: SessionStore | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        """Set when uploads are shared with other workers through Redis."""
        self.directory = directory
        self.sessions = sessions
        self.recorder = recorder
        self.commands = commands
        self.timekeeper = timekeeper
        self.time = time_base
        self.now: Callable[[], float] = time_base.now
        self.door: Door | None = None
        """Set by the server once built (the door hands verified frames to `dispatch`)."""
        self.holding: set[DeviceConnection] = set()
        self.reassembler = hj212.Reassembler(timeout=settings.split_timeout_s)
        self.archived_parts: ArchivedParts | None = None
        """Set where the frame archive is at hand: a split set given up on is completed from
        the parts the archive holds (answered by a process that died, or by another worker)
        before what came is published as a partial reading."""
        self._completing: set[asyncio.Task[None]] = set()
        self._recent: dict[tuple[str, str, int], Entry] = {}
        self._utc_times: dict[str, str] = {}
        """DataTime text → its UTC ISO text (bounded; cleared when full)."""

    # ------------------------------------------------------------------ connection hooks
    def on_connection_made(self, conn: DeviceConnection) -> None:
        self.sessions.on_connection_made(conn)

    def on_connection_lost(self, conn: DeviceConnection, exc: Exception | None) -> None:
        self.holding.discard(conn)
        self.sessions.on_connection_lost(conn, exc)

    def received_bytes(self, conn: DeviceConnection, size: int) -> None:
        self.recorder.tally.received += size
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
        self.recorder.record_rejected(
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
        recorder = self.recorder
        try:
            frame = hj212.decode(raw, crc_policy=self.directory.crc_policy)
        except hj212.DecodeError as exc:
            partial = exc.frame
            recorder.record_rejected(
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
            recorder.record_rejected(
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
        if not mn:
            recorder.record_rejected(
                conn, raw, "mn_missing", "frame has no MN", cn=frame.cn, qn=frame.qn
            )
            return
        session = conn.session
        if session is not None and mn != session.mn:
            recorder.record_rejected(
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
        assert self.door is not None
        self.door.enter(conn, frame, mn)

    def dispatch(
        self,
        conn: DeviceConnection,
        session: Session,
        frame: hj212.Frame,
        wall: float,
        perf: float,
    ) -> None:
        """Handle a frame that passed the door, on its verified session."""
        mn = session.mn
        session.pw = frame.pw
        if frame.st is not None and frame.st != "91":
            session.st = frame.st
        if session.version is not frame.version and frame.version_source == "flag":
            session.version = frame.version
            session.dirty = True
        elif session.version is None:
            session.version = frame.version
        session.last_seen = wall
        session.frames += 1
        cn = frame.cn
        recorder = self.recorder
        if cn in ANSWER_CNS:  # their QN is the platform's request's, not the device's clock
            self.commands.on_answer(session, frame)
            recorder.record(conn, frame, ACCEPTED, None, None, wall, perf, answer=None)
            return
        if cn == "1013":  # time calibration: 9013 now, then a 1012 set-time
            conn.write(encode_answer(hj212_commands.notification_answer(frame)) or b"")
            recorder.record(conn, frame, ACCEPTED, None, None, wall, perf, answer=None)
            pol = frame.params.get("PolId")
            self.commands.internal(session, "1012", {"PolId": pol} if pol else {})
            return
        if cn == "9015":  # heartbeat (2025)
            if frame.ack_requested and self.settings.answer_heartbeats:
                conn.write(encode_answer(hj212_commands.notification_answer(frame)) or b"")
            recorder.record(conn, frame, ACCEPTED, None, None, wall, perf, answer=None)
            self.timekeeper.observe_clock(session, frame, wall)
            return
        original: Entry | None = None
        dedupe_key = None
        if frame.qn is not None:
            dedupe_key = (mn, frame.qn, zlib.crc32(frame.segment))
            original = self._recent.get(dedupe_key)
        if original is not None:
            session.duplicates += 1
            recorder.record(
                conn,
                frame,
                DUPLICATE,
                "duplicate_qn",
                f"QN {frame.qn} of MN {mn} was received before with the same content",
                wall,
                perf,
                answer=recorder.data_answer(frame),
                wait_for=original,
            )
            return
        extra: list[Message] = []
        frame_id = new_id()
        trace = new_trace_id()
        if cn is not None:
            self.commands.on_upload(session, frame)
        if cn in DATA_CNS:
            extra = self._readings(session, frame, frame_id, trace, wall)
        self.timekeeper.observe_clock(session, frame, wall)
        session.accepted += 1
        entry = recorder.record(
            conn,
            frame,
            ACCEPTED,
            None,
            None,
            wall,
            perf,
            answer=recorder.data_answer(frame),
            extra=extra,
            frame_id=frame_id,
            trace=trace,
        )
        if dedupe_key is not None:
            if self.store is not None:
                entry.shared = (mn, f"{dedupe_key[1]}|{dedupe_key[2]}")
            recent = self._recent
            recent[dedupe_key] = entry
            if len(recent) > self.settings.duplicate_cache_size:
                del recent[next(iter(recent))]
        if not session.backfill_checked:
            self.timekeeper.maybe_backfill(session)

    # ------------------------------------------------------------------ several workers
    async def share_uploads(self, entries: list[Entry]) -> None:
        """Note a publish call's durable uploads in Redis (before they are answered)."""
        assert self.store is not None
        uploads = [entry.shared for entry in entries if entry.shared is not None]
        settings = self.settings
        await self.store.remember_qns(
            uploads, keep=settings.shared_uploads_per_device, ttl_s=settings.shared_uploads_ttl_s
        )

    async def load_uploads(self, mn: str) -> None:
        """Learn the device's recent uploads taken by any worker (before it binds here)."""
        assert self.store is not None
        recent = self._recent
        for member in await self.store.recent_qns(mn):
            qn, _, crc = member.rpartition("|")
            if qn and crc.isdigit():
                recent.setdefault((mn, qn, int(crc)), _DURABLE)
        while len(recent) > self.settings.duplicate_cache_size:
            del recent[next(iter(recent))]

    # ------------------------------------------------------------------ readings
    def _readings(
        self, session: Session, frame: hj212.Frame, frame_id: str, trace: str, wall: float
    ) -> list[Message]:
        if frame.is_split:
            try:
                completed = self.reassembler.add(frame)
            except hj212.ReassemblyError as exc:
                _logger.info(
                    "split part not usable", extra={"mn": frame.mn, "reason": exc.reason.value}
                )
                return []
            if completed is None:
                return []
            first = completed.parts[0]
            return self._reading(session, first, completed.codes, frame_id, trace, wall)
        return self._reading(session, frame, frame.codes, frame_id, trace, wall)

    def _reading(
        self,
        session: Session | None,
        frame: hj212.Frame,
        items: dict[str, dict[str, str]],
        frame_id: str | None,
        trace: str,
        wall: float,
        key_suffix: str = "",
    ) -> list[Message]:
        moment = frame.data_time
        text = frame.params.get("DataTime")
        mn, cn = frame.mn, frame.cn
        if moment is None or text is None or mn is None or cn is None:
            return []
        history = self.timekeeper.is_history(session, cn, moment)
        stamp = utc_iso(wall)
        data_time = text.strip()
        utc_times = self._utc_times
        data_time_utc = utc_times.get(data_time)
        if data_time_utc is None:  # devices report the same minutes: convert each once
            if len(utc_times) >= 4096:
                utc_times.clear()
            data_time_utc = moment.replace(tzinfo=self.time.tz).astimezone(UTC).isoformat()
            utc_times[data_time] = data_time_utc
        return [
            reading_message(
                self.settings.topic_readings,
                mn=mn,
                cn=cn,
                st=frame.st,
                qn=frame.qn,
                data_time=data_time,
                data_time_utc=data_time_utc,
                received_at=stamp,
                protocol_version=frame.version.value,
                registered=True,
                history=history,
                items=items,
                frame_id=frame_id,
                trace_id=trace,
                produced_at=stamp,
                key_suffix=key_suffix,
            )
        ]

    def expire_splits(self) -> None:
        """Publish split sets given up as incomplete: completed from the archive when it holds
        the missing parts, else with what came (a partial key)."""
        for given_up in self.reassembler.expire():
            if not given_up.parts:
                continue
            if self.archived_parts is None:
                self._publish_split(given_up)
                continue
            task = asyncio.get_running_loop().create_task(self._complete_from_archive(given_up))
            self._completing.add(task)
            task.add_done_callback(self._completing.discard)

    async def _complete_from_archive(self, given_up: hj212.SplitSet) -> None:
        first = given_up.parts[0]
        assert self.archived_parts is not None
        try:
            raws = await self.archived_parts(
                first.mn or "",
                first.cn or "",
                (first.params.get("DataTime") or "").strip(),
            )
        except Exception as exc:  # (the archive unreachable: publish what came, as before)
            _logger.warning("split set: the archive could not be read", extra={"error": repr(exc)})
            raws = []
        merged = hj212.Reassembler(timeout=self.settings.split_timeout_s)
        found: hj212.SplitSet | None = None
        same_set = (first.st, first.pnum, first.params.get("DataTime"))
        for part in [*given_up.parts, *_decoded(raws)]:
            if not part.is_split or (part.st, part.pnum, part.params.get("DataTime")) != same_set:
                continue
            with contextlib.suppress(hj212.ReassemblyError):
                found = merged.add(part) or found
        if found is not None and found.complete:
            _logger.info(
                "split set completed from the archive",
                extra={"mn": first.mn, "recovered": list(given_up.missing)},
            )
            self._publish_split(found)
            return
        self._publish_split(given_up)

    def _publish_split(self, split: hj212.SplitSet) -> None:
        """A complete set under the reading's own key; an incomplete one with what came."""
        first = split.parts[0]
        suffix = ""
        if not split.complete:
            received = ",".join(str(p.pno) for p in split.parts)
            suffix = f"|partial:{received}/{split.pnum}"
            _logger.info(
                "split set incomplete: publishing what came",
                extra={"mn": first.mn, "why": split.reason, "missing": list(split.missing)},
            )
        messages = self._reading(
            self.sessions.sessions.get(first.mn or ""),
            first,
            split.codes,
            None,
            new_trace_id(),
            self.now(),
            key_suffix=suffix,
        )
        if messages:
            self.recorder.publisher.submit(messages, key=first.mn)
