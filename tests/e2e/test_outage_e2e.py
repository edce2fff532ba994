"""Answers only after the broker's ack, proven with the simulator as the fleet and a broker of
the test's own (`private_kafka`, shared with the ingest tests) taken away under load.

While the broker is down no device gets an answer; the devices re-send (HJ 212 OverTime /
ReCount) and reopen their links; once the broker is back every upload is answered, every
QN of the sent log is in `hj212.frames`, each exactly once as a first arrival (the re-sends
are recorded as `duplicate`), and each data frame gives one reading.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import ecowatt_hj212 as hj212
import pytest
from ecowatt_kernel.bus import KafkaBus, KafkaConnection
from ecowatt_simulator import DeviceSettings, Fleet, SimClock, Simulator

from .conftest import (
    FAST_DEVICES,
    Collector,
    PrivateKafka,
    Register,
    ServerFactory,
    assert_every_frame_recorded,
    make_topics,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

START = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)


async def test_no_answer_while_the_broker_is_down_devices_resend_and_nothing_is_lost(
    private_kafka: PrivateKafka, register: Register, start_server: ServerFactory
) -> None:
    bus = KafkaBus(
        KafkaConnection(bootstrap_servers=private_kafka.bootstrap, client_id="e2e-outage"),
        linger_ms=2,
        request_timeout_ms=10_000,
    )
    await bus.start()
    topics = await make_topics(bus)
    fleet = Fleet.synthetic(6, circuits=3, seed=506)
    view = await register(bus, fleet)
    server = await start_server(
        view, bus=bus, publish_retry_max_s=1.0, **topics.settings(), **FAST_DEVICES
    )
    sim = Simulator(
        fleet,
        port=server.port or 0,
        clock=SimClock(START.timestamp(), speed=300),  # a 2011 every 0.2 s per device
        settings=DeviceSettings(
            sample_s=60, ack_timeout_s=1.5, recount=3, backoff_base_s=0.2, backoff_max_s=2.0
        ),
    )
    await sim.start(timedelta(hours=3))  # 36 s of wall time
    try:
        # broker up: answered as usual
        await asyncio.sleep(3.0)
        before = sim.log.summary()
        assert before["acked"] > 30 and before["resends"] == 0

        # broker down: uploads arrive, nothing is answered, the devices re-send
        await asyncio.to_thread(private_kafka.kill)
        await asyncio.sleep(1.0)  # answers already on the wire when it died
        down = sim.log.summary()
        server_acks = server.stats["acks"]
        started = time.monotonic()
        await asyncio.sleep(8.0)
        during = sim.log.summary()
        assert during["acked"] == down["acked"], "an answer while the broker was down"
        assert server.stats["acks"] == server_acks
        assert during["resends"] > down["resends"], "unanswered uploads are sent again"
        assert sum(d.connects for d in sim.log) > len(fleet.devices), "links reopened"

        # broker back: everything is answered and stored
        await asyncio.to_thread(private_kafka.up)
        outage_s = time.monotonic() - started + 1.0
        back = time.monotonic()
        assert await sim.wait(drain_timeout=120), sim.log.unacked()
        drained_s = time.monotonic() - back
        assert sim.log.unacked() == {}
    finally:
        await sim.stop()
    frames = await Collector(bus, topics.frames).start()
    readings = await Collector(bus, topics.readings).start()
    records = await assert_every_frame_recorded(sim, frames, limit_s=90)
    first = Counter(
        (f.mn, f.cn, f.qn) for f in records if f.qn is not None and f.verdict != "duplicate"
    )
    assert max(first.values()) == 1, "a re-sent frame processed twice"
    assert {f.verdict for f in records} == {"accepted", "duplicate"}
    assert sum(1 for f in records if f.verdict == "duplicate") > 0
    data = {  # split parts (PNUM/PNO) of one upload share a key
        f"{f.mn}|{f.cn}|{hj212.decode(f.raw).params['DataTime']}"
        for f in records
        if f.verdict == "accepted" and f.cn in ("2011", "2051", "2061", "2031")
    }
    events = await readings.wait_for(lambda e: len(e) >= len(data), "a reading per upload")
    await asyncio.sleep(1.0)
    keys = Counter(r.idempotency_key for r in readings.readings())
    assert set(keys) == data and max(keys.values()) == 1, "one reading per upload"
    print(
        f"outage {outage_s:.0f} s, all answered {drained_s:.0f} s after:"
        f" {sim.log.summary()['frames']} frames,"
        f" {sim.log.summary()['resends']} re-sends, {len(events)} readings"
    )
    await frames.stop()
    await readings.stop()
    await server.stop()
    await bus.stop()
