"""Every frame and rejected span becomes one `hj212.frames` record; answers wait for it.

`record` publishes a decoded frame's record (with the messages that go with it, e.g. its
reading) and writes the device's answer from the publish's completion, i.e. only once the
frame is durable; `record_rejected` publishes what could not be read or was refused before
any identity was known. Both count `ecowatt_ingest_frames_total` and keep a connection's
unacknowledged frames bounded (`max_unacked_per_connection`).
"""

from __future__ import annotations

import json
import logging
import time

import ecowatt_hj212 as hj212
from ecowatt_hj212 import commands as hj212_commands
from ecowatt_kernel.bus import Message

from ecowatt_ingest import metrics
from ecowatt_ingest.connection import UNACKED, DeviceConnection
from ecowatt_ingest.devices import DeviceDirectory
from ecowatt_ingest.publisher import BatchPublisher, Entry
from ecowatt_ingest.settings import IngestSettings
from ecowatt_ingest.timebase import TimeBase
from ecowatt_ingest.wire import data_answer, frame_message, new_trace_id, utc_iso

__all__ = [
    "ACCEPTED",
    "ANSWER_CNS",
    "DUPLICATE",
    "REJECTED",
    "UNREGISTERED",
    "FrameRecorder",
    "encode_answer",
]

_logger = logging.getLogger(__name__)

ACCEPTED, UNREGISTERED, DUPLICATE, REJECTED = "accepted", "unregistered", "duplicate", "rejected"
ANSWER_CNS = frozenset({"9011", "9012", "9013", "9014"})
_NO_9014 = ANSWER_CNS | {"1013", "9015"}  # answered otherwise (9013) or never


class FrameRecorder:
    """See the module docstring."""

    def __init__(
        self,
        settings: IngestSettings,
        *,
        instance: str,
        publisher: BatchPublisher,
        directory: DeviceDirectory,
        time_base: TimeBase,
    ) -> None:
        self.settings = settings
        self.instance = instance
        self.publisher = publisher
        self.directory = directory
        self.time = time_base
        self.stats = {"frames": 0, "acks": 0, "rejected": 0}
        self.tally = metrics.HotPathTally()
        """Frames and ack latencies, added to Prometheus by the server's sweep."""

    def data_answer(self, frame: hj212.Frame) -> bytes | None:
        """The 9014 a frame asks for (None when it asks for none, or for another answer)."""
        if frame.ack_requested and frame.cn not in _NO_9014:
            return data_answer(frame, self._version_flag(frame))
        return None

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
        answer: bytes | None,
        extra: list[Message] | None = None,
        frame_id: str | None = None,
        trace: str | None = None,
        wait_for: Entry | None = None,
    ) -> Entry:
        """Publish the frame's record (and `extra`); write `answer` once they are durable."""
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
        """Publish a rejected frame or span; no answer (HJ 212: a bad frame ends there).

        A reject on a bound connection that names its MN (or none) is the device's own:
        it is counted in its session and kept among its recent rejects.
        """
        self._count(cn, REJECTED)
        self.stats["rejected"] += 1
        stamp = utc_iso(wall or conn.rx_wall or self.time.now())
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
        message = frame_message(
            self.settings.topic_frames,
            raw=raw,
            peer=conn.peer,
            received_at=stamp,
            verdict=REJECTED,
            trace_id=new_trace_id(),
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
        """`ecowatt_ingest_frames_total{cn,verdict}` (through the tally)."""
        frames = self.tally.frames
        key = (cn, verdict)
        frames[key] = frames.get(key, 0) + 1

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
        ack = self.tally.ack

        def done() -> None:
            conn.unacked -= 1
            if answer and not conn.closed:
                conn.transport.write(answer)  # type: ignore[union-attr]
                ack(time.perf_counter() - perf)
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


def encode_answer(message: hj212.Message) -> bytes | None:
    """Encode an answer; None when the device's own fields cannot be echoed legally."""
    try:
        return hj212.encode(message)
    except hj212.EncodeError as exc:
        # the reason code only: the codec's sentence may quote the device's PW
        _logger.info("answer not sent", extra={"mn": message.mn, "reason": exc.reason.value})
        return None
