"""The device side of the link: re-sends after a missing 9014, reopened links, back-off."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

from ecowatt_simulator import DeviceSettings, Fleet, SimClock, Simulator

START = datetime(2025, 12, 1, 0, 0, tzinfo=UTC)


async def test_a_missing_9014_makes_the_device_resend_the_same_frame(platform: Any) -> None:
    withheld: set[tuple[str, str]] = set()

    def should_ack(frame: Any) -> bool:
        # withhold the first answer to uploads of every seventh minute
        key = (frame.mn, frame.qn)
        if int(frame.qn[10:12]) % 7 == 0 and key not in withheld:
            withheld.add(key)
            return False
        return True

    platform.should_ack = should_ack
    fleet = Fleet.synthetic(3, circuits=3, seed=31)
    sim = Simulator(
        fleet,
        port=platform.port,
        clock=SimClock.fast(START),
        settings=DeviceSettings(ack_timeout_s=0.3, window=16, sample_s=60),
    )
    assert await sim.run(timedelta(hours=2), drain_timeout=20)
    assert len(withheld) > 20
    copies: dict[tuple[str, str], list[bytes]] = {}
    for received in platform.frames:
        copies.setdefault((received.frame.mn, received.frame.qn), []).append(received.raw)
    for key in withheld:
        assert len(copies[key]) >= 2, "re-sent after the timeout"
        assert len(set(copies[key])) == 1, "re-sent unchanged"
    assert sum(d.resends for d in sim.log) >= len(withheld)
    assert sim.log.unacked() == {}
    for mn, qns in sim.log.all_qns().items():
        assert {f.qn for f in platform.decoded(mn)} == set(qns)


async def test_no_answers_at_all_reopen_the_link_and_everything_is_sent_again(
    platform: Any,
) -> None:
    answering = False
    platform.should_ack = lambda frame: answering
    fleet = Fleet.synthetic(1, circuits=2, seed=32)
    (mn,) = fleet.devices
    sim = Simulator(
        fleet,
        port=platform.port,
        clock=SimClock.fast(START),
        settings=DeviceSettings(
            ack_timeout_s=0.2, recount=2, window=3, backoff_base_s=0.05, sample_s=60
        ),
    )
    run = asyncio.create_task(sim.run(timedelta(hours=1), drain_timeout=20))
    await platform.wait_until(lambda: len(platform.conns) >= 3)
    first_conn = {f.frame.qn for f in platform.frames if f.conn == 0}
    second_conn = {f.frame.qn for f in platform.frames if f.conn == 1}
    assert first_conn and first_conn <= second_conn, "the unanswered frames are sent again"
    per_qn_on_first = [f for f in platform.frames if f.conn == 0]
    assert len(per_qn_on_first) == 3 * len(first_conn), "the first send and recount=2 resends"
    answering = True
    assert await run
    assert sim.log[mn].disconnects >= 2
    assert set(sim.log[mn].qns) == {f.qn for f in platform.decoded(mn)}
    assert sim.log.unacked() == {}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_reconnects_back_off_exponentially_with_jitter(mini_platform: Any) -> None:
    port = _free_port()
    base, cap, jitter = 0.05, 0.8, 0.5
    fleet = Fleet.synthetic(3, circuits=1, seed=33)
    settings = DeviceSettings(
        idle=True, backoff_base_s=base, backoff_max_s=cap, backoff_jitter=jitter
    )
    async with Simulator(fleet, port=port, settings=settings) as sim:
        await asyncio.sleep(3.0)
        for log in sim.log:
            delays = log.backoff_s
            assert log.connects == 0 and log.connect_failures >= 6
            for k, delay in enumerate(delays):
                ceiling = min(cap, base * 2**k)
                assert ceiling * (1 - jitter) - 1e-3 <= delay <= ceiling + 1e-3, (k, delays)
            assert max(delays) > 0.3, "grows up to the cap"
        sequences = [tuple(log.backoff_s[:5]) for log in sim.log]
        assert len(set(sequences)) == 3, "jitter spreads the devices apart"
        platform = await mini_platform().start(port=port)
        try:
            await platform.wait_until(lambda: len({c.mn for c in platform.conns}) == 3, 5)
            assert all(log.connects == 1 for log in sim.log)
            assert {f.cn for f in platform.decoded()} == {"2011"}, "idle devices say hello once"
        finally:
            await platform.stop_listening()


async def test_a_refusal_9011_is_counted_never_answered_and_the_upload_is_sent_again(
    platform: Any,
) -> None:
    """A strict platform answers an unknown MN or a wrong PW with 9011 (QnRtn 4 / 3) instead
    of 9014: the device must not treat that 9011 as a command (no 9011 of its own back)."""
    from ecowatt_hj212 import commands as hj212_commands
    from ecowatt_hj212 import encode

    refusing = True
    platform.should_ack = lambda frame: not refusing

    def refuse(frame: Any, conn: Any) -> None:
        if refusing and frame.cn == "2011":
            conn.writer.write(encode(hj212_commands.request_answer(frame, 3)))

    platform.on_frame = refuse
    fleet = Fleet.synthetic(1, circuits=2, seed=33)
    (mn,) = fleet.devices
    sim = Simulator(
        fleet,
        port=platform.port,
        clock=SimClock.fast(START),
        settings=DeviceSettings(
            ack_timeout_s=0.3, recount=5, window=2, sample_s=60, minute_data=False
        ),
    )
    await sim.start(timedelta(minutes=10))
    await platform.wait_until(lambda: sum(sim.log[mn].refused.values()) >= 4)
    sent_back = platform.decoded(mn, "9011")
    assert sent_back == [], "the device answered the platform's refusal"
    assert set(sim.log[mn].refused) == {"3"}
    assert sim.log[mn].resends >= 1 and sim.log[mn].acked_count == 0
    refusing = False
    assert await sim.wait(drain_timeout=20)
    await sim.stop()
    assert sim.log.unacked() == {}
    assert sim.log.latency.count == sim.log[mn].acked_count > 0


def test_latency_histogram_quantiles_and_merge() -> None:
    from ecowatt_simulator import LatencyHistogram

    first, second = LatencyHistogram(), LatencyHistogram()
    for ms in range(1, 101):  # 1..100 ms
        (first if ms % 2 else second).add(ms / 1000)
    first.merge(second)
    assert first.count == 100 and abs(first.max - 0.1) < 1e-9
    for q, expected in ((0.5, 0.050), (0.99, 0.099), (0.01, 0.001)):
        value = first.quantile(q)
        assert value is not None and abs(value - expected) / expected < 0.01
    again = LatencyHistogram.from_json(first.to_json())
    assert again.buckets == first.buckets and again.quantile(0.5) == first.quantile(0.5)
    assert LatencyHistogram().quantile(0.5) is None


async def test_report_on_connect_sends_the_current_values_at_once(platform: Any) -> None:
    """Real time, a minute between real-time uploads: with `report_on_connect` the platform
    hears from the device right after it connects (DataTime = the current second)."""
    fleet = Fleet.synthetic(2, circuits=2, seed=34)
    start = datetime.now(UTC).replace(second=1, microsecond=0)  # 59 s before a minute ends
    sim = Simulator(
        fleet,
        port=platform.port,
        clock=SimClock(start.timestamp(), speed=1),
        settings=DeviceSettings(report_on_connect=True),
    )
    await sim.start(None)
    try:
        await platform.wait_until(lambda: len(platform.decoded(cn="2011")) >= 2, limit_s=5)
        for mn in fleet.devices:
            (first,) = platform.decoded(mn, "2011")
            assert first.data_time is not None and first.data_time.second in (1, 2, 3)
            assert len(first.codes) >= 2 * 10, "every circuit's real-time values"
        assert sim.log.summary()["by_cn"] == {"2011": 2}
    finally:
        await sim.stop()
