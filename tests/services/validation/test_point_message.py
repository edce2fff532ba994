"""The binder's fast `telemetry.points` encoder gives exactly what `encode(PointReading)` gives."""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from ecowatt_kernel.bus import Record
from ecowatt_kernel.contracts import PointReading, TelemetryReading, decode, encode
from ecowatt_kernel.contracts.envelope import Envelope
from ecowatt_validation.binding import INTERVALS, point_message
from ecowatt_validation.binding.state import _array_text
from harness import point


def reading(cn: str, t: datetime) -> TelemetryReading:
    return TelemetryReading(
        idempotency_key=f"MN1|{cn}|{t.isoformat()}",
        mn="MN1",
        cn=cn,
        data_time=t,
        received_at=t + timedelta(seconds=3),
        items={"xe0101": {"Rtd": "1"}},
    )


CASES = [
    ("2011", datetime(2026, 11, 20, 0, 0, tzinfo=UTC), {"active_power_kw": 90.0}, {}, True),
    (
        "2051",
        datetime(2026, 11, 20, 8, 1, 2, 345678, tzinfo=timezone(timedelta(hours=8))),
        {"energy_total_kwh": 1e-7, "energy_delta_kwh": 0.0, "current_a:A": -0.0, "x": 1e22},
        {"energy_total_kwh": ["flag:D", "counter_reset"]},
        False,
    ),
    (
        "9999",
        datetime(2026, 1, 1, tzinfo=UTC),
        {"a": math.inf, "b": -math.inf, "c": math.nan},
        {},
        True,
    ),
    ("2061", datetime(2026, 3, 1, 23, 59, 59, 1, tzinfo=UTC), {}, {"k": []}, True),
]


@pytest.mark.parametrize(("cn", "t", "values", "quality", "valid"), CASES)
def test_point_message_is_encode_of_point_reading(
    cn: str, t: datetime, values: dict[str, float], quality: dict[str, list[str]], valid: bool
) -> None:
    p = point("E1-PT", "total", "MN1", 3)
    r = reading(cn, t)
    event_id = str(uuid.uuid4())
    when = datetime.now(UTC)
    fast = point_message(
        "t.points", p, r, values, quality, valid, "trace-1", event_id=event_id, produced_at=when
    )
    model = PointReading(
        enterprise_id=p.enterprise_id,
        point_id=p.id,
        mn=r.mn,
        cn=cn,
        circuit=p.circuit,
        interval=INTERVALS.get(cn, "other"),  # type: ignore[arg-type]
        data_time=t,
        values=values,
        quality=quality,
        valid=valid,
        source_key=r.idempotency_key,
    )
    reference = encode(model, trace_id="trace-1", topic="t.points")
    envelope = Envelope[PointReading](
        type=model.event_type,
        version=model.event_version,
        id=uuid.UUID(event_id),
        produced_at=when,
        trace_id="trace-1",
        data=model,
    )
    assert fast.value == envelope.model_dump_json().encode()
    assert (fast.topic, fast.key, fast.headers) == (
        reference.topic,
        reference.key,
        reference.headers,
    )
    assert json.loads(fast.value)["data"] == json.loads(reference.value)["data"]
    if all(math.isfinite(v) for v in values.values()):  # encode writes null for inf and nan
        decoded = decode(Record("t.points", 0, 0, fast.key, fast.value, fast.headers, 0)).data
        assert decoded == model


def test_envelope_ids_are_the_kernels_uuid7() -> None:
    t = datetime(2026, 12, 7, 8, 30, tzinfo=UTC)
    p = point("E1-PT", "total", "MN1", 3)
    messages = [point_message("t", p, reading("2011", t), {}, {}, True, "tr") for _ in range(500)]
    ids = {str(decode(Record("t", 0, 0, m.key, m.value, m.headers, 0)).id) for m in messages}
    assert len(ids) == 500
    for text in list(ids)[:100]:
        parsed = uuid.UUID(text)
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122


def test_array_text_reads_back_exactly() -> None:
    floats = [0.0, 1.5, 1e-05, 1e-7, 1e20, 0.1 + 0.2, -0.0, 123456.789, 2.0**-40]
    text = _array_text(floats)
    assert text[0] == "{" and text[-1] == "}"
    assert [float(part) for part in text[1:-1].split(",")] == floats
    assert _array_text([1, 0, 3]) == "{1,0,3}"  # int[] input takes no decimal point


def test_point_message_escapes_like_encode() -> None:
    p = point('P"1\\点\n', "total", 'MN"\\2', 7, eid='企业\t"E"')
    t = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    r = TelemetryReading(
        idempotency_key='MN"\\2|2011|\u2028x',
        mn='MN"\\2',
        cn="2011",
        data_time=t,
        received_at=t,
        items={},
    )
    event_id = str(uuid.uuid4())
    when = datetime.now(UTC)
    values = {'k"\\ü': 1.25}
    quality = {'k"\\ü': ["flag:D", 'x"y']}
    trace = 't"r'
    fast = point_message(
        "t", p, r, values, quality, False, trace, event_id=event_id, produced_at=when
    )
    model = PointReading(
        enterprise_id=p.enterprise_id,
        point_id=p.id,
        mn=r.mn,
        cn="2011",
        circuit=7,
        data_time=t,
        values=values,
        quality=quality,
        valid=False,
        source_key=r.idempotency_key,
    )
    envelope = Envelope[PointReading](
        type=model.event_type,
        version=model.event_version,
        id=uuid.UUID(event_id),
        produced_at=when,
        trace_id=trace,
        data=model,
    )
    assert fast.value == envelope.model_dump_json().encode()
    assert fast.key == p.enterprise_id.encode()
