"""The device door (issue 21) against the real broker and Redis: who does not prove its
identity changes nothing — no session, no reading, no device state, no command — and what
it sends is recorded with its reason, answered per the standard, bounded in Redis and, for
wrong PWs, rate-limited per peer address."""

from __future__ import annotations

import asyncio
import logging

import ecowatt_hj212 as hj212
import pytest
from ecowatt_kernel.contracts import DeviceCommandResult, encode
from ecowatt_kernel.identity import DataScope, Role
from prometheus_client import REGISTRY

from .conftest import (
    ApiFactory,
    DeviceClient,
    ServerFactory,
    TopicReader,
    Topics,
    command,
    device_snapshot,
    new_mn,
    qn_now,
    registry_with,
    token,
    upload,
)

pytestmark = pytest.mark.integration

CITY = token(Role.CITY_SUPERVISOR, scope=DataScope(all=True), subject="city")


def metric(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def minute(n: int) -> str:
    return f"20261126{8 + n // 60:02d}{n % 60:02d}00"


async def test_a_spoofing_client_changes_no_session_reading_or_state(
    start_server: ServerFactory, api: ApiFactory, topics: Topics, kafka, redis
) -> None:
    """A client that knows a real device's MN but not its PW, connected beside it, sends
    data (and asks for a time calibration): each frame is recorded as `rejected` /
    `bad_password` and answered 9011 QnRtn=3, while the real device's session (peer,
    connected_at, session id), its readings, its Redis state and its answers are untouched
    and `/devices/{mn}` reports the attempts apart, under `unverified`."""
    mn = new_mn()
    server = await start_server(registry_with(device_snapshot(mn)), pw_failures_max=1000)
    client = await api(server)
    frames = await TopicReader(kafka, topics.frames).start()
    readings = await TopicReader(kafka, topics.readings).start()
    real = await DeviceClient.connect(server.port or 0)
    await real.send(upload(mn, data_time=minute(0)))
    await real.expect("9014")
    await asyncio.sleep(1.2)  # its session is in Redis
    before = (await client.get(f"/devices/{mn}", headers=CITY)).json()
    assert before["online"] is True and before["peer"].startswith("127.0.0.1:")
    state_before = await server.store.device_state(mn)
    session = server.sessions[mn]

    spoofer = await DeviceClient.connect(server.port or 0)
    forged = [upload(mn, pw="000000", data_time=minute(n), values=(("xe0101-Rtd", "0.00"),))
              for n in range(1, 4)]  # fmt: skip
    for message in forged:
        await spoofer.send(message)
        answer = await spoofer.expect("9011")
        assert answer.params["QnRtn"] == "3" and answer.qn == message.qn
    calibrate = hj212.Message(cn="1013", qn=qn_now(), st="31", pw="000000", mn=mn, flag=5)
    await spoofer.send(calibrate)
    assert (await spoofer.expect("9011")).params["QnRtn"] == "3"
    for n in range(4, 7):  # the real device keeps reporting, and is answered
        await real.send(upload(mn, data_time=minute(n)))
        await real.expect("9014")
    await spoofer.nothing(1.0)  # no 1012, no 9014: nothing but the refusals
    await asyncio.sleep(1.2)  # state flushed

    assert server.sessions[mn] is session and session.conn is not None
    assert session.peer == before["peer"]
    after = (await client.get(f"/devices/{mn}", headers=CITY)).json()
    for field in ("peer", "connected_at", "online", "identity", "instance"):
        assert after[field] == before[field], field
    assert after["recent_rejects"] == [] and after["counters"]["rejected"] == 0
    assert after["counters"]["accepted"] == 4 and after["counters"]["frames"] == 4
    state_after = await server.store.device_state(mn)
    for field in ("session_id", "peer", "connected_at", "instance", "online", "identity"):
        assert state_after[field] == state_before[field], field
    assert await redis.llen(server.store.rejects(mn)) == 0
    spoofed = after["unverified"]
    assert spoofed["reason"] == "bad_password" and spoofed["frames"] == 4
    assert spoofed["last_peer"] != before["peer"] and spoofed["registered"] is True
    assert mn not in await server.store.unregistered_seen(), "its device is registered"

    records = await frames.wait_for(lambda e: len(e) >= 8, "every frame recorded")
    refused = [f for f in records if f.peer == spoofed["last_peer"]]
    assert [(f.verdict, f.reason_code, f.session_id) for f in refused] == [
        ("rejected", "bad_password", None)
    ] * 4
    real_ids = {f.frame_id for f in records if f.peer == before["peer"]}
    await readings.wait_for(lambda e: len(e) >= 4, "the real device's readings")
    await asyncio.sleep(0.5)
    kept = readings.events()
    assert len(kept) == 4 and {r.frame_id for r in kept} <= real_ids
    assert all(r.items["xe0101"]["Rtd"] == "41.27" for r in kept), "no forged value"
    for device in (real, spoofer):
        await device.close()
    await frames.stop()
    await readings.stop()


async def test_pw_failures_from_one_address_are_limited(
    start_server: ServerFactory, topics: Topics, kafka, caplog: pytest.LogCaptureFixture
) -> None:
    """Three wrong PWs within the window: the third is refused like the others and its
    connection is closed; the address is then blocked — a frame that would need a PW check
    is recorded as `peer_blocked`, unchecked and unanswered, and its connection closed —
    while a device whose PW this instance already verified still gets in from it (a NAT).
    Nothing reaches `telemetry.readings`; the failures are counted without an MN label."""
    caplog.set_level(logging.DEBUG, logger="ecowatt_ingest")
    mn, victim, neighbour = new_mn(), new_mn(), new_mn()
    registry = registry_with(
        device_snapshot(mn), device_snapshot(victim), device_snapshot(neighbour, pw="246810")
    )
    server = await start_server(
        registry,
        pw_failures_max=3,
        pw_failure_window_s=60,
        pw_block_s=60,
        pw_failures_per_mn_from=[],  # 127.0.0.1 counted as one address, like a device's
    )
    frames = await TopicReader(kafka, topics.frames).start()
    readings = await TopicReader(kafka, topics.readings).start()
    honest = await DeviceClient.connect(server.port or 0)  # verified before the attack
    await honest.send(upload(mn))
    await honest.expect("9014")
    await honest.close()
    failures, blocks = (
        metric("ecowatt_ingest_pw_failures_total"),
        metric("ecowatt_ingest_peers_blocked_total"),
    )

    guesser = await DeviceClient.connect(server.port or 0)
    for guess in ("111111", "222222", "333333"):
        await guesser.send(upload(victim, pw=guess))
        assert (await guesser.expect("9011")).params["QnRtn"] == "3"
    with pytest.raises(ConnectionError):
        await guesser.receive(5)  # the server closed it
    assert metric("ecowatt_ingest_pw_failures_total") - failures == 3
    assert metric("ecowatt_ingest_peers_blocked_total") - blocks == 1

    again = await DeviceClient.connect(server.port or 0)
    await again.send(upload(victim, pw="444444"))
    with pytest.raises(ConnectionError):
        await again.receive(5)  # no answer, closed
    late = await DeviceClient.connect(server.port or 0)  # its first PW check: refused
    await late.send(upload(neighbour, pw="246810"))
    with pytest.raises(ConnectionError):
        await late.receive(5)
    known = await DeviceClient.connect(server.port or 0)  # its verdict is known: in
    await known.send(upload(mn, data_time="20261126084600"))
    await known.expect("9014")

    records = await frames.wait_for(lambda e: len(e) >= 7, "every frame recorded")
    # (one MN's records are in order: they share a partition)
    assert [(f.verdict, f.reason_code) for f in records if f.mn == victim] == [
        ("rejected", "bad_password"),
        ("rejected", "bad_password"),
        ("rejected", "bad_password"),
        ("rejected", "peer_blocked"),
    ]
    assert [(f.verdict, f.reason_code) for f in records if f.mn == neighbour] == [
        ("rejected", "peer_blocked")
    ]
    assert [f.verdict for f in records if f.mn == mn] == ["accepted", "accepted"]
    blocked = next(f for f in records if f.reason_code == "peer_blocked")
    assert "3 PW failures from 127.0.0.1 within 60 s" in (blocked.reason or "")
    await asyncio.sleep(0.5)
    assert {r.mn for r in readings.events()} == {mn}, "nothing of the refused frames"
    assert victim not in server.sessions and neighbour not in server.sessions
    # logged through structured fields: no message is built from what the wire said
    logged = [r for r in caplog.records if r.name.startswith("ecowatt_ingest")]
    [warning] = [r for r in logged if r.levelname == "WARNING"]
    assert warning.getMessage() == "peer blocked after repeated PW failures"
    assert warning.address == "127.0.0.1"  # type: ignore[attr-defined]
    for record in logged:
        text = record.getMessage()
        assert not any(s in text for s in (victim, neighbour, "111111", "246810")), text
    await known.close()
    await frames.stop()
    await readings.stop()


async def test_behind_a_shared_address_one_device_is_blocked_not_its_neighbours(
    start_server: ServerFactory, topics: Topics, kafka
) -> None:
    """From a network of `pw_failures_per_mn_from` (loopback by default: a NAT gateway, a
    load balancer, `make run`'s simulator) failures count per (address, MN): the device
    with the wrong PW is blocked, a neighbour whose PW was never checked still gets in."""
    victim, neighbour = new_mn(), new_mn()
    server = await start_server(
        registry_with(device_snapshot(victim), device_snapshot(neighbour, pw="246810")),
        pw_failures_max=2,
    )
    assert server.settings.pw_failures_per_mn_from == ("127.0.0.0/8", "::1/128")
    frames = await TopicReader(kafka, topics.frames).start()
    guesser = await DeviceClient.connect(server.port or 0)
    for guess in ("111111", "222222"):
        await guesser.send(upload(victim, pw=guess))
        assert (await guesser.expect("9011")).params["QnRtn"] == "3"
    with pytest.raises(ConnectionError):
        await guesser.receive(5)
    again = await DeviceClient.connect(server.port or 0)
    await again.send(upload(victim, pw="333333"))
    with pytest.raises(ConnectionError):
        await again.receive(5)
    neighbour_link = await DeviceClient.connect(server.port or 0)
    await neighbour_link.send(upload(neighbour, pw="246810"))
    await neighbour_link.expect("9014")
    records = await frames.wait_for(lambda e: len(e) >= 4, "every frame recorded")
    blocked = [f for f in records if f.reason_code == "peer_blocked"]
    assert [f.mn for f in blocked] == [victim]
    assert f"from 127.0.0.1 for MN {victim}" in (blocked[0].reason or "")
    await neighbour_link.close()
    await frames.stop()


async def test_an_unknown_mn_flood_leaves_redis_bounded(
    start_server: ServerFactory, topics: Topics, kafka, redis
) -> None:
    """5,000 distinct invented MNs from 10 connections: every frame is recorded and refused,
    but Redis keeps at most `unverified_max_mns` of them (one small hash each, plus two
    capped sets), however many come, and its memory grows by a fraction of what one entry
    per MN would take."""
    cap = 200
    server = await start_server(
        registry_with(),
        unverified_max_mns=cap,
        max_frames_per_s=100_000,
        frame_burst=100_000,
    )
    prefix = server.settings.redis_prefix
    await asyncio.sleep(1.2)  # heartbeat written: the baseline holds the instance's keys
    baseline_memory = int((await redis.info("memory"))["used_memory"])

    async def flood(worker: int) -> None:
        device = await DeviceClient.connect(server.port or 0)
        for batch in range(5):
            mns = [f"FLOOD{worker:02d}{batch}{n:04d}" for n in range(100)]
            await device.send(b"".join(hj212.encode(upload(mn)) for mn in mns))
            for _ in mns:
                assert (await device.expect("9011", limit_s=30)).params["QnRtn"] == "4"
        await device.close()

    await asyncio.gather(*(flood(worker) for worker in range(10)))
    await asyncio.sleep(2.5)  # two flushes
    keys = [key async for key in redis.scan_iter(match=f"{prefix}:*", count=1000)]
    hashes = [k for k in keys if k.startswith(f"{prefix}:unverified:".encode())]
    assert len(hashes) <= cap
    assert await redis.zcard(server.store.unverified) <= cap
    assert await redis.zcard(server.store.unregistered) <= cap
    assert len(keys) <= cap + 5, sorted(k for k in keys if k not in hashes)
    assert not [k for k in keys if k.startswith(f"{prefix}:dev:".encode())]
    one = hashes[0]
    assert 0 < await redis.ttl(one) <= server.settings.unverified_ttl_s
    per_mn = int(await redis.memory_usage(one) or 0) + 64  # and its set entries
    grown = int((await redis.info("memory"))["used_memory"]) - baseline_memory
    assert grown < cap * per_mn * 3 + 256 * 1024 < 5000 * per_mn, (grown, per_mn)
    assert server.recorder.stats["frames"] >= 5000, "every frame was recorded"


async def test_reverse_commands_never_reach_an_unverified_connection(
    start_server: ServerFactory, topics: Topics, kafka
) -> None:
    """A connection that claimed a device's MN with a wrong PW holds no session: a command
    for that device is reported `offline` and never written to it; once the real device is
    connected, the next command goes to the real device only."""
    mn = new_mn()
    server = await start_server(
        registry_with(device_snapshot(mn)), consume_commands=True, pw_failures_max=1000
    )
    results = await TopicReader(kafka, topics.results).start()
    spoofer = await DeviceClient.connect(server.port or 0)
    await spoofer.send(upload(mn, pw="000000"))
    await spoofer.expect("9011")

    first = command(mn, "1011")
    await kafka.publish([encode(first, topic=topics.commands)])
    events = await results.wait_for(
        lambda e: any(r.command_id == first.command_id for r in e), "the first outcome"
    )
    assert [r.status for r in events if r.command_id == first.command_id] == ["offline"]
    real = await DeviceClient.connect(server.port or 0)
    await real.send(upload(mn))
    await real.expect("9014")
    second = command(mn, "1061")
    await kafka.publish([encode(second, topic=topics.commands)])
    request = await real.expect("1061", limit_s=30)
    assert request.pw == "123456"
    await spoofer.nothing(1.0)
    assert isinstance(events[0], DeviceCommandResult)
    for device in (real, spoofer):
        await device.close()
    await results.stop()
