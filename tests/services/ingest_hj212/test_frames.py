"""Frames in, records out: verdicts, readings, answers only after the broker's ack,
device identity under both policies, duplicates, split packets, time calibration.
The door's security properties (spoofing, floods, PW failures) are in `test_door.py`."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import ecowatt_hj212 as hj212
import pytest
from ecowatt_kernel.contracts import FrameReceived, TelemetryReading

from .conftest import (
    DeviceClient,
    ServerFactory,
    TopicReader,
    Topics,
    device_snapshot,
    new_mn,
    qn_now,
    registry_with,
    upload,
)

pytestmark = pytest.mark.integration


async def test_data_frame_is_recorded_published_and_answered(
    start_server: ServerFactory, topics: Topics, kafka
) -> None:
    mn = new_mn()
    server = await start_server(registry_with(device_snapshot(mn)))
    frames = await TopicReader(kafka, topics.frames).start()
    readings = await TopicReader(kafka, topics.readings).start()
    device = await DeviceClient.connect(server.port)
    message = upload(mn, data_time="20261126084500")
    await device.send(message)
    answer = await device.expect("9014")
    assert answer.qn == message.qn and answer.st == "91" and answer.flag == 4
    assert answer.mn == mn

    [frame] = await frames.wait_for(lambda e: len(e) >= 1, "the frame record")
    assert isinstance(frame, FrameReceived)
    assert frame.verdict == "accepted" and frame.mn == mn and frame.cn == "2011"
    assert frame.raw == hj212.encode(message)
    assert frame.qn == message.qn and frame.peer.startswith("127.0.0.1:")
    [reading] = await readings.wait_for(lambda e: len(e) >= 1, "the reading")
    assert isinstance(reading, TelemetryReading)
    assert reading.idempotency_key == f"{mn}|2011|20261126084500"
    # DataTime is Asia/Shanghai local time: 08:45 local is 00:45 UTC
    assert reading.data_time == datetime(2026, 11, 26, 0, 45, tzinfo=UTC)
    assert reading.items == {"xe0101": {"Rtd": "41.27", "Flag": "N"}}
    assert reading.registered is True and reading.frame_id == frame.frame_id
    await device.close()
    await frames.stop()
    await readings.stop()


async def test_bad_crc_garbage_and_bad_length_are_recorded_not_answered(
    start_server: ServerFactory, topics: Topics, kafka
) -> None:
    mn = new_mn()
    server = await start_server(registry_with(device_snapshot(mn)))
    frames = await TopicReader(kafka, topics.frames).start()
    device = await DeviceClient.connect(server.port)
    good = hj212.encode(upload(mn))
    bad_crc = good[:-6] + (b"0000" if good[-6:-2] != b"0000" else b"1111") + b"\r\n"
    await device.send(b"hello garbage\r\n" + bad_crc)
    await device.send(b"##9999QN=1;CN=2011&&ABCD\r\n")  # beyond max_segment_size
    await device.nothing(1.0)
    events = await frames.wait_for(lambda e: len(e) >= 3, "three rejects")
    assert all(e.verdict == "rejected" for e in events)
    reasons = {e.reason_code for e in events}
    assert reasons == {"garbage", "crc_mismatch", "length_exceeds_limit"}, reasons
    crc = next(e for e in events if e.reason_code == "crc_mismatch")
    assert crc.raw == bad_crc and crc.mn == mn and "does not match" in (crc.reason or "")
    # the connection survives: a good frame is still answered
    await device.send(good)
    await device.expect("9014")
    # a frame cut off by the peer closing is recorded as truncated
    cut = b"##0999QN=1;ST=31;CN=2011;MN=" + mn.encode()
    await device.send(cut)
    await device.close()
    events = await frames.wait_for(lambda e: len(e) >= 5, "the truncated frame")
    assert events[-1].raw == cut and events[-1].verdict == "rejected"
    assert events[-1].reason_code in ("frame_truncated", "length_mismatch")
    await frames.stop()


@pytest.mark.parametrize("policy", ["lenient", "strict"])
async def test_unknown_mn_and_wrong_password_are_refused_under_both_policies(
    start_server: ServerFactory, topics: Topics, kafka, policy: str
) -> None:
    """Neither policy lets an unknown MN or a wrong PW in: recorded with the reason,
    answered with the standard's MN / PW error, no reading, no session; the unknown MN is
    listed as unregistered, the known one is not (its device is fine)."""
    known = new_mn()
    unknown = new_mn()
    server = await start_server(registry_with(device_snapshot(known)), device_policy=policy)
    frames = await TopicReader(kafka, topics.frames).start()
    readings = await TopicReader(kafka, topics.readings).start()

    stranger = await DeviceClient.connect(server.port)
    await stranger.send(upload(unknown))
    impostor = await DeviceClient.connect(server.port)
    await impostor.send(upload(known, pw="654321"))
    mn_error = await stranger.expect("9011")
    assert mn_error.params["QnRtn"] == "4"
    pw_error = await impostor.expect("9011")
    assert pw_error.params["QnRtn"] == "3"
    events = await frames.wait_for(lambda e: len(e) >= 2, "two frames")
    assert {(e.mn, e.verdict, e.reason_code) for e in events} == {
        (unknown, "unregistered", "unknown_mn"),
        (known, "rejected", "bad_password"),
    }
    assert all(e.session_id is None for e in events), "no session was bound"
    await stranger.nothing(0.5)
    assert server.sessions == {}
    await asyncio.sleep(1.0)  # state reaches Redis
    assert set(await server.store.unregistered_seen()) == {unknown}
    assert await server.store.device_state(known) == {}
    assert await server.store.device_state(unknown) == {}
    # the right PW still works for the known device on a new connection
    honest = await DeviceClient.connect(server.port)
    await honest.send(upload(known))
    await honest.expect("9014")
    [reading] = await readings.wait_for(lambda e: len(e) >= 1, "the honest reading")
    assert reading.mn == known and reading.registered is True
    await asyncio.sleep(0.5)
    assert len(readings.events()) == 1, "nothing published for the refused frames"
    for client in (stranger, impostor, honest):
        await client.close()
    await frames.stop()
    await readings.stop()


async def test_a_device_without_a_pw_is_refused_by_strict_and_accepted_by_lenient(
    start_server: ServerFactory, topics: Topics, kafka
) -> None:
    """`pw_not_provisioned`: strict (the default) refuses it as a PW error and lists it as
    unregistered; lenient accepts it on its MN, but a second connection claiming the MN
    cannot take over the live session (`mn_in_use`, 9011 QnRtn=2)."""
    mn = new_mn()
    registry = registry_with(device_snapshot(mn, pw=None))
    strict = await start_server(registry)
    assert strict.settings.device_policy == "strict", "the default"
    device = await DeviceClient.connect(strict.port)
    await device.send(upload(mn))
    refused = await device.expect("9011")
    assert refused.params["QnRtn"] == "3"
    await asyncio.sleep(1.2)
    assert set(await strict.store.unregistered_seen()) == {mn}
    await device.close()

    frames = await TopicReader(kafka, topics.frames).start()
    lenient = await start_server(registry, device_policy="lenient")
    first = await DeviceClient.connect(lenient.port)
    await first.send(upload(mn, pw="anything"))
    await first.expect("9014")
    second = await DeviceClient.connect(lenient.port)
    await second.send(upload(mn, pw="other"))
    taken = await second.expect("9011")
    assert taken.params["QnRtn"] == "2"
    session = lenient.sessions[mn]
    assert session.conn is not None and not session.conn.closed
    assert session.identity == "pw_not_provisioned"
    await first.send(upload(mn, pw="anything", data_time="20261126084600"))
    await first.expect("9014")  # the first connection keeps its session
    events = await frames.wait_for(
        lambda e: sum(f.verdict == "accepted" for f in e) >= 2, "the accepted frames"
    )
    assert [
        (f.verdict, f.reason_code)
        for f in events
        if f.verdict != "accepted" and f.ingest_instance == lenient.instance
    ] == [("rejected", "mn_in_use")]
    for client in (first, second):
        await client.close()
    await frames.stop()


async def test_duplicate_qn_is_answered_again_but_published_once(
    start_server: ServerFactory, topics: Topics, kafka
) -> None:
    mn = new_mn()
    server = await start_server(registry_with(device_snapshot(mn)))
    frames = await TopicReader(kafka, topics.frames).start()
    readings = await TopicReader(kafka, topics.readings).start()
    device = await DeviceClient.connect(server.port)
    message = upload(mn)
    await device.send(message)
    await device.expect("9014")
    await device.send(message)  # the device missed the answer and re-sends
    again = await device.expect("9014")
    assert again.qn == message.qn
    events = await frames.wait_for(lambda e: len(e) >= 2, "both frames")
    assert [e.verdict for e in events] == ["accepted", "duplicate"]
    assert events[1].reason_code == "duplicate_qn"
    await asyncio.sleep(1.0)
    assert len(readings.events()) == 1, "published to telemetry.readings once"
    await device.close()
    await frames.stop()
    await readings.stop()


async def test_split_packets_give_one_reading_when_complete(
    start_server: ServerFactory, topics: Topics, kafka
) -> None:
    mn = new_mn()
    server = await start_server(registry_with(device_snapshot(mn)))
    frames = await TopicReader(kafka, topics.frames).start()
    readings = await TopicReader(kafka, topics.readings).start()
    device = await DeviceClient.connect(server.port)
    values = []
    for circuit in range(1, 13):
        for suffix, value in (("Avg", "41.05"), ("Min", "39.80"), ("Max", "42.31"), ("Flag", "N")):
            values.append((f"xe01{circuit:02d}-{suffix}", value))
    message = upload(mn, cn="2051", data_time="20261126084000", values=values, flag=5)
    parts = hj212.encode_split(message, max_segment_size=400)
    assert len(parts) >= 3
    for part in parts:  # each part waits for its own answer, as the standard says
        await device.send(part)
        answer = await device.expect("9014")
        assert answer.qn == hj212.decode(part).qn
        if part is not parts[-1]:
            assert readings.events() == [], "no reading before the set is complete"
    events = await frames.wait_for(lambda e: len(e) >= len(parts), "every part")
    assert all(e.verdict == "accepted" for e in events)
    [reading] = await readings.wait_for(lambda e: len(e) >= 1, "the reading")
    assert reading.idempotency_key == f"{mn}|2051|20261126084000"
    assert len(reading.items) == 12
    assert reading.items["xe0112"] == {"Avg": "41.05", "Min": "39.80", "Max": "42.31", "Flag": "N"}
    await device.close()
    await frames.stop()
    await readings.stop()


async def test_time_calibration_is_answered_then_the_clock_is_set(
    start_server: ServerFactory, topics: Topics, kafka
) -> None:
    mn = new_mn()
    server = await start_server(registry_with(device_snapshot(mn)))
    device = await DeviceClient.connect(server.port)
    request = hj212.Message(
        cn="1013",
        qn=qn_now(),
        st="31",
        pw="123456",
        mn=mn,
        flag=5,
        cp=(("PolId", "xe0101"),),
    )
    await device.send(request)
    notified = await device.expect("9013")
    assert notified.qn == request.qn
    set_time = await device.expect("1012")
    assert set_time.params["PolId"] == "xe0101"
    sent = hj212.parse_hj212_time(set_time.params["SystemTime"])
    local_now = server.local_now()
    assert sent is not None and abs((sent - local_now).total_seconds()) < 5
    await device.send(hj212.encode(hj212.commands.request_answer(set_time, 1)))
    await device.send(hj212.encode(hj212.commands.execution_answer(set_time, 1)))
    await device.close()


async def test_heartbeats_and_unknown_cns_keep_the_connection(
    start_server: ServerFactory, topics: Topics, kafka
) -> None:
    mn = new_mn()
    server = await start_server(registry_with(device_snapshot(mn)))
    device = await DeviceClient.connect(server.port)
    beat = hj212.Message(cn="9015", qn=qn_now(), st="31", pw="123456", mn=mn, flag=9)
    await device.send(beat)
    answer = await device.expect("9013")
    assert answer.qn == beat.qn and answer.flag == 8, "2025 version bits echoed"
    odd = hj212.Message(cn="7777", qn=qn_now(), st="31", pw="123456", mn=mn, flag=4)
    await device.send(odd)
    await device.nothing(0.5)
    await device.send(upload(mn))
    await device.expect("9014")
    await device.close()
