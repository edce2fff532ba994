"""The `telemetry.points` messages, joined from cached JSON pieces byte-for-byte equal to
`encode(PointReading(...))` (`tests/services/validation/test_point_message.py` compares them)."""

from __future__ import annotations

from datetime import UTC, datetime

from ecowatt_kernel.bus import Message
from ecowatt_kernel.bus.types import Headers
from ecowatt_kernel.contracts import PointReading, TelemetryReading
from ecowatt_kernel.contracts.envelope import TYPE_HEADER, VERSION_HEADER
from ecowatt_kernel.contracts.registry import PointSnapshot
from ecowatt_kernel.ids import new_uuid_text
from ecowatt_kernel.tracing import TRACE_HEADER
from pydantic_core import to_json

__all__ = ["INTERVALS", "point_message", "point_pieces", "reading_pieces", "trace_pieces"]

INTERVALS = {"2011": "realtime", "2051": "minute", "2061": "hour", "2031": "day"}

_POINT_HEADERS = (
    (TYPE_HEADER, PointReading.event_type.encode()),
    (VERSION_HEADER, str(PointReading.event_version).encode()),
)


def point_message(
    topic: str,
    point: PointSnapshot,
    reading: TelemetryReading,
    values: dict[str, float],
    quality: dict[str, list[str]],
    valid: bool,
    trace: str,
    *,
    event_id: str | None = None,
    produced_at: datetime | None = None,
    produced_json: bytes | None = None,
    point_json: tuple[bytes, bytes, bytes] | None = None,
    reading_json: tuple[bytes, bytes, bytes] | None = None,
    trace_json: tuple[bytes, Headers] | None = None,
) -> Message:
    """What `encode(PointReading(...), trace_id=trace, topic=topic)` gives for the reading's
    values of `point`, without building the two pydantic models (a third of the binder's
    time): the same JSON envelope, key and headers — `tests/services/validation` compares
    them. Every field is already of its type: values are floats, `data_time` is aware.

    The envelope is joined from JSON pieces, each written by `to_json` (pydantic's own
    serializer, as `encode` uses): those of the point and of the reading are the same for
    every message of a point or a reading, and the binder passes them in ready-made."""
    p_head, p_circuit, key = point_json or point_pieces(point)
    r_ids, r_time, r_tail = reading_json or reading_pieces(reading)
    t_json, headers = trace_json or trace_pieces(trace)
    value = b"".join(
        (
            _HEAD,
            (event_id or new_uuid_text()).encode(),
            _PRODUCED_AT,
            produced_json or to_json(produced_at or datetime.now(UTC)),
            _TRACE,
            t_json,
            _DATA,
            p_head,
            r_ids,
            p_circuit,
            r_time,
            to_json(values, inf_nan_mode="null"),
            _QUALITY,
            to_json(quality) if quality else b"{}",
            _VALID if valid else _INVALID,
            r_tail,
        )
    )
    return Message(topic, key, value, headers)


# The envelope of a telemetry.points message, in the field order of Envelope and PointReading.
_HEAD = (
    b'{"type":'
    + to_json(PointReading.event_type)
    + b',"version":'
    + to_json(PointReading.event_version)
    + b',"id":"'
)
_PRODUCED_AT = b'","produced_at":'
_TRACE = b',"trace_id":'
_DATA = b',"data":{"enterprise_id":'
_QUALITY = b',"quality":'
_VALID = b',"valid":true'
_INVALID = b',"valid":false'


def point_pieces(point: PointSnapshot) -> tuple[bytes, bytes, bytes]:
    """`<enterprise_id>,"point_id":<id>,"mn":`, `,"circuit":<circuit>,"interval":` and the
    message key."""
    return (
        to_json(point.enterprise_id) + b',"point_id":' + to_json(point.id) + b',"mn":',
        b',"circuit":' + to_json(point.circuit) + b',"interval":',
        point.enterprise_id.encode(),
    )


def trace_pieces(trace: str) -> tuple[bytes, Headers]:
    """The trace id as JSON and the message headers."""
    return to_json(trace), (*_POINT_HEADERS, (TRACE_HEADER, trace.encode()))


def reading_pieces(reading: TelemetryReading) -> tuple[bytes, bytes, bytes]:
    """`<mn>,"cn":<cn>`, `<interval>,"data_time":<time>,"values":` and
    `,"source_key":<key>,"history":<bool>}}`."""
    return (
        to_json(reading.mn) + b',"cn":' + to_json(reading.cn),
        to_json(INTERVALS.get(reading.cn, "other"))
        + b',"data_time":'
        + to_json(reading.data_time)
        + b',"values":',
        b',"source_key":'
        + to_json(reading.idempotency_key)
        + (b',"history":true}}' if reading.history else b',"history":false}}'),
    )
