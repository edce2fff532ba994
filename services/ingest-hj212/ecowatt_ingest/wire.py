"""Bus messages of the hot path, built without pydantic.

`FrameReceived` and `TelemetryReading` envelopes are written with one `json.dumps` of a plain
dict each: the same JSON the kernel's `encode` produces (a test decodes them with the
kernel's `decode`), at a fraction of the cost of building and dumping pydantic models for
every frame.
"""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime

from ecowatt_kernel.bus import Message
from ecowatt_kernel.contracts import FrameReceived, TelemetryReading
from ecowatt_kernel.contracts.envelope import TYPE_HEADER, VERSION_HEADER
from ecowatt_kernel.tracing import TRACE_HEADER

__all__ = ["frame_message", "new_id", "reading_message", "utc_iso"]

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_FRAME_TYPE = FrameReceived.event_type
_FRAME_VERSION = FrameReceived.event_version
_READING_TYPE = TelemetryReading.event_type
_READING_VERSION = TelemetryReading.event_version
_FRAME_HEADERS = (
    (TYPE_HEADER, _FRAME_TYPE.encode()),
    (VERSION_HEADER, str(_FRAME_VERSION).encode()),
)
_READING_HEADERS = (
    (TYPE_HEADER, _READING_TYPE.encode()),
    (VERSION_HEADER, str(_READING_VERSION).encode()),
)


def new_id() -> str:
    """A random (version 4) UUID as text, cheaper than `str(uuid.uuid4())`."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def utc_iso(timestamp: float) -> str:
    """ISO 8601 UTC text of a POSIX time."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat()


def frame_message(
    topic: str,
    *,
    raw: bytes,
    peer: str,
    received_at: str,
    verdict: str,
    trace_id: str,
    produced_at: str,
    frame_id: str | None = None,
    mn: str | None = None,
    cn: str | None = None,
    qn: str | None = None,
    reason_code: str | None = None,
    reason: str | None = None,
    session_id: str | None = None,
    instance: str | None = None,
) -> Message:
    """The `hj212.frame` message of one received frame (or rejected span)."""
    envelope = {
        "type": _FRAME_TYPE,
        "version": _FRAME_VERSION,
        "id": new_id(),
        "produced_at": produced_at,
        "trace_id": trace_id,
        "data": {
            "frame_id": frame_id or new_id(),
            "raw": base64.b64encode(raw).decode("ascii"),
            "peer": peer,
            "received_at": received_at,
            "mn": mn,
            "cn": cn,
            "qn": qn,
            "verdict": verdict,
            "reason_code": reason_code,
            "reason": reason,
            "session_id": session_id,
            "ingest_instance": instance,
        },
    }
    key = mn if mn else "peer:" + peer
    return Message(
        topic,
        key.encode(),
        _dumps(envelope).encode(),
        (*_FRAME_HEADERS, (TRACE_HEADER, trace_id.encode())),
    )


def reading_message(
    topic: str,
    *,
    mn: str,
    cn: str,
    st: str | None,
    qn: str | None,
    data_time: str,
    data_time_utc: str,
    received_at: str,
    protocol_version: str | None,
    registered: bool,
    items: dict[str, dict[str, str]],
    frame_id: str | None,
    trace_id: str,
    produced_at: str,
    key_suffix: str = "",
) -> Message:
    """The `telemetry.reading` message of one decoded data frame (or complete split set).

    `data_time` is the device's DataTime text; the idempotency key is `MN|CN|DataTime`
    (plus `key_suffix` for partial split sets).
    """
    envelope = {
        "type": _READING_TYPE,
        "version": _READING_VERSION,
        "id": new_id(),
        "produced_at": produced_at,
        "trace_id": trace_id,
        "data": {
            "idempotency_key": f"{mn}|{cn}|{data_time}{key_suffix}",
            "mn": mn,
            "cn": cn,
            "st": st,
            "qn": qn,
            "data_time": data_time_utc,
            "received_at": received_at,
            "protocol_version": protocol_version,
            "registered": registered,
            "items": items,
            "frame_id": frame_id,
        },
    }
    return Message(
        topic,
        mn.encode(),
        _dumps(envelope).encode(),
        (*_READING_HEADERS, (TRACE_HEADER, trace_id.encode())),
    )
