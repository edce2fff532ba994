"""The hot path's hand-built messages and answers equal what the kernel and codec build,
and the service wiring serves HJ 212 in standalone mode (in-process bus)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import ecowatt_hj212 as hj212
import httpx
import pytest
from asgi_lifespan import LifespanManager
from ecowatt_hj212 import commands as hj212_commands
from ecowatt_ingest.service import SERVICE
from ecowatt_ingest.settings import IngestSettings
from ecowatt_ingest.wire import data_answer, frame_message, new_id, reading_message, utc_iso
from ecowatt_kernel.app import Infrastructure, create_app
from ecowatt_kernel.bus import InProcessBus, Record
from ecowatt_kernel.contracts import FrameReceived, TelemetryReading, decode, encode
from ecowatt_kernel.identity import verifier_from_settings
from ecowatt_kernel.redis_client import create_redis
from hypothesis import given, settings
from hypothesis import strategies as st

from .conftest import DeviceClient, new_mn, upload


def as_record(message) -> Record:
    return Record(message.topic, 0, 0, message.key, message.value, message.headers, 0)


def test_frame_and_reading_messages_decode_with_the_kernel() -> None:
    raw = b"##0010\xff\x00garbage&&ABCD\r\n"
    message = frame_message(
        "hj212.frames",
        raw=raw,
        peer="10.0.0.1:5000",
        received_at="2026-11-26T00:45:00+00:00",
        verdict="rejected",
        trace_id="ab" * 16,
        produced_at="2026-11-26T00:45:00+00:00",
        mn='odd"mn',
        reason_code="crc_mismatch",
        reason="CRC 0000 does not match 中文",
    )
    envelope = decode(as_record(message))
    event = envelope.data
    assert isinstance(event, FrameReceived)
    assert event.raw == raw and event.mn == 'odd"mn' and event.verdict == "rejected"
    assert event.reason == "CRC 0000 does not match 中文"
    assert envelope.trace_id == "ab" * 16 and message.key == b'odd"mn'
    reading = reading_message(
        "telemetry.readings",
        mn="M1",
        cn="2011",
        st="31",
        qn="1",
        data_time="20261126084500",
        data_time_utc="2026-11-26T00:45:00+00:00",
        received_at="2026-11-26T00:45:01+00:00",
        protocol_version="2017",
        registered=False,
        items={"xe0101": {"Rtd": "1", "Flag": "N"}},
        frame_id=new_id(),
        trace_id="cd" * 16,
        produced_at="2026-11-26T00:45:01+00:00",
    )
    event = decode(as_record(reading)).data
    assert isinstance(event, TelemetryReading)
    assert event.idempotency_key == "M1|2011|20261126084500" and event.registered is False
    assert event.data_time == datetime(2026, 11, 26, 0, 45, tzinfo=UTC)
    ids = {new_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(uuid.UUID(i).version == 4 for i in ids)


# Text as devices and the codec produce it: any Unicode but lone surrogates (the codec's
# decoded text never holds one: UTF-8, GB18030 or replacement characters).
_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=24)
_optional = st.none() | _text
_moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC)
)
_items = st.dictionaries(_text, st.dictionaries(_text, _text, max_size=4), max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    mn=_text.filter(bool),
    cn=st.sampled_from(["2011", "2021", "2031", "2041", "2051", "2061"]),
    st_=_optional,
    qn=_optional,
    data_time=_text,
    moment=_moments,
    received=_moments,
    protocol_version=st.none() | st.sampled_from(["2005", "2017", "2025"]),
    registered=st.booleans(),
    history=st.booleans(),
    items=_items,
    frame_id=st.none() | st.uuids(version=4),
    key_suffix=st.sampled_from(["", "|partial:1,2/3"]),
)
def test_fast_reading_bytes_decode_to_the_pydantic_model(
    mn,
    cn,
    st_,
    qn,
    data_time,
    moment,
    received,
    protocol_version,
    registered,
    history,
    items,
    frame_id,
    key_suffix,
) -> None:
    """The hot path's orjson bytes are the contract: the kernel decodes them to exactly the
    model built from the same fields, and to what the kernel's own `encode` gives."""
    trace = "ef" * 16
    message = reading_message(
        "telemetry.readings",
        mn=mn,
        cn=cn,
        st=st_,
        qn=qn,
        data_time=data_time,
        data_time_utc=moment.isoformat(),
        received_at=received.isoformat(),
        protocol_version=protocol_version,
        registered=registered,
        items=items,
        frame_id=None if frame_id is None else str(frame_id),
        trace_id=trace,
        produced_at=received.isoformat(),
        key_suffix=key_suffix,
        history=history,
    )
    model = TelemetryReading(
        idempotency_key=f"{mn}|{cn}|{data_time}{key_suffix}",
        mn=mn,
        cn=cn,
        st=st_,
        qn=qn,
        data_time=moment,
        received_at=received,
        protocol_version=protocol_version,
        registered=registered,
        items=items,
        frame_id=frame_id,
        history=history,
    )
    envelope = decode(as_record(message))
    assert envelope.data == model
    assert envelope.trace_id == trace and envelope.produced_at == received
    assert message.key == mn.encode() and dict(message.headers) == dict(
        encode(model, trace_id=trace).headers
    )
    assert decode(as_record(encode(model, trace_id=trace))).data == envelope.data


@settings(max_examples=300, deadline=None)
@given(
    raw=st.binary(max_size=200),
    peer=_text,
    received=_moments,
    verdict=st.sampled_from(["accepted", "rejected", "unregistered", "duplicate"]),
    frame_id=st.none() | st.uuids(version=4),
    mn=_optional,
    cn=_optional,
    qn=_optional,
    reason_code=_optional,
    reason=_optional,
    session_id=_optional,
    instance=_optional,
)
def test_fast_frame_bytes_decode_to_the_pydantic_model(
    raw,
    peer,
    received,
    verdict,
    frame_id,
    mn,
    cn,
    qn,
    reason_code,
    reason,
    session_id,
    instance,
) -> None:
    trace = "ab" * 16
    message = frame_message(
        "hj212.frames",
        raw=raw,
        peer=peer,
        received_at=received.isoformat(),
        verdict=verdict,
        trace_id=trace,
        produced_at=received.isoformat(),
        frame_id=None if frame_id is None else str(frame_id),
        mn=mn,
        cn=cn,
        qn=qn,
        reason_code=reason_code,
        reason=reason,
        session_id=session_id,
        instance=instance,
    )
    event = decode(as_record(message)).data
    assert isinstance(event, FrameReceived)
    if frame_id is not None:
        assert event.frame_id == frame_id
    model = FrameReceived(
        frame_id=event.frame_id,  # a fresh id when none was given: any one is right
        raw=raw,
        peer=peer,
        received_at=received,
        mn=mn,
        cn=cn,
        qn=qn,
        verdict=verdict,
        reason_code=reason_code,
        reason=reason,
        session_id=session_id,
        ingest_instance=instance,
    )
    assert event == model
    assert message.key == model.partition_key().encode()


@settings(max_examples=2000, deadline=None)
@given(st.floats(min_value=-1e9, max_value=4e9, allow_nan=False) | st.integers(0, 2**32))
def test_receive_stamp_text_equals_datetime_isoformat(timestamp: float) -> None:
    assert utc_iso(timestamp) == datetime.fromtimestamp(timestamp, UTC).isoformat()
    assert utc_iso(timestamp + 0.25) == datetime.fromtimestamp(timestamp + 0.25, UTC).isoformat()


@pytest.mark.parametrize("flag", [4, 5, 7, 9, None])
def test_fast_answer_equals_the_codec_answer(flag: int | None) -> None:
    message = hj212.Message(
        cn="2011",
        qn="20261126084500123",
        st="31",
        pw="123456",
        mn="EW01",
        flag=flag,
        cp=(("DataTime", "20261126084500"),),
    )
    frame = hj212.decode(hj212.encode(message))
    assert data_answer(frame) == hj212.encode(hj212_commands.data_answer(frame))


def test_frame_without_flag_is_answered_with_the_registry_version() -> None:
    frame = hj212.decode(
        hj212.encode(
            hj212.Message(
                cn="2011",
                qn="20261126084500123",
                st="31",
                pw="123456",
                mn="EW01",
                cp=(("DataTime", "20261126084500"),),
            )
        )
    )
    answer = hj212.decode(data_answer(frame, version_flag=4))
    assert answer.flag == 4 and answer.qn == frame.qn and answer.cn == "9014"


@pytest.mark.integration
async def test_service_serves_hj212_with_the_in_process_bus(redis_url: str) -> None:
    settings = IngestSettings(
        environment="test",
        bus_backend="memory",
        hj212_host="127.0.0.1",
        hj212_port=0,
        redis_prefix=f"test-ingest-{uuid.uuid4().hex[:8]}",
        raise_nofile=False,
        wait_for_registry_s=5,
    )
    bus = InProcessBus()
    infrastructure = Infrastructure(
        bus=bus,
        redis=create_redis(redis_url),
        database_url="unused",
        verifier=verifier_from_settings(settings),
    )
    spec = SERVICE.__class__(**{**SERVICE.__dict__, "schema": None, "migrations": None})
    app = create_app(spec, settings=settings, infrastructure=infrastructure)
    async with LifespanManager(app, startup_timeout=30) as manager:
        await bus.start()
        server = app.state.context.state["ingest"]
        await asyncio.wait_for(server.serving.wait(), 10)
        mn = new_mn()
        device = await DeviceClient.connect(server.port)
        await device.send(upload(mn))
        refused = await device.expect("9011")  # not in the (empty) registry: MN error
        assert refused.params["QnRtn"] == "4"
        frames = bus.read_all("hj212.frames")
        assert [decode(r).data.verdict for r in frames] == ["unregistered"]
        assert bus.read_all("telemetry.readings") == []
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
            assert (await client.get("/healthz")).status_code == 200
        await device.close()
    await bus.stop()
    await infrastructure.close()
