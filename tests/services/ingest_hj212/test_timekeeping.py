"""Back-fill is history, not news (issue 19, ingest's part): readings of history answers and
of data from before the connection carry `history=true`, live data `history=false`; a
device catching up (old QNs, old DataTimes) is never sent a 1012 for the age of its
backlog, while a device whose live clock is off gets exactly one."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import ecowatt_hj212 as hj212
import pytest
from ecowatt_hj212 import commands as hj212_commands
from ecowatt_kernel.contracts import TelemetryReading, encode

from .conftest import (
    DeviceClient,
    ServerFactory,
    TopicReader,
    Topics,
    command,
    device_snapshot,
    local_now,
    new_mn,
    registry_with,
    upload,
)

pytestmark = pytest.mark.integration

WINDOW_S = 0.3
"""clock_check_interval_s of these tests (60 s in production)."""


def qn_at(moment: datetime) -> str:
    return hj212_commands.new_qn(moment)


def n14(moment: datetime) -> str:
    return hj212.format_hj212_time(moment)


class Device:
    """A test device that records every frame the platform sends it."""

    def __init__(self, client: DeviceClient) -> None:
        self.client = client
        self.received: list[hj212.Frame] = []

    async def upload(self, message: hj212.Message) -> None:
        await self.client.send(message)
        while True:
            frame = await self.client.receive(10)
            self.received.append(frame)
            if frame.cn == "9014" and frame.qn == message.qn:
                return

    async def live(self, mn: str, seconds: float, clock_offset: timedelta = timedelta()) -> None:
        """Real-time data now (by a clock `clock_offset` off), one every 0.1 s."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            now = local_now() + clock_offset
            await self.upload(upload(mn, qn=qn_at(now), data_time=n14(now)))
            await asyncio.sleep(0.1)

    def commands(self, cn: str) -> list[hj212.Frame]:
        return [f for f in self.received if f.cn == cn]


async def test_a_backfilling_device_gets_no_1012_and_its_history_is_flagged(
    start_server: ServerFactory, topics: Topics, kafka
) -> None:
    mn = new_mn()
    server = await start_server(
        registry_with(device_snapshot(mn)),
        consume_commands=True,
        clock_check_interval_s=WINDOW_S,
        backfill_enabled=False,
    )
    readings = await TopicReader(kafka, topics.readings).start()
    device = Device(await DeviceClient.connect(server.port or 0))
    await device.live(mn, 4 * WINDOW_S)  # its clock is right: windows agree at ~0 s

    # re-sends of what it could not deliver before this connection (HJ 212-2017 §6.3):
    # old QNs and old DataTimes, three hours back, over several windows
    start = local_now().replace(microsecond=0) - timedelta(hours=3)
    for n in range(8):
        moment = start + timedelta(minutes=n)
        await device.upload(upload(mn, qn=qn_at(moment), data_time=n14(moment)))
        await asyncio.sleep(WINDOW_S / 2)

    # an operator asks for two hours of minute data; the device answers with old DataTimes
    # (some uploads with new QNs as the standard says, some with the QNs they had)
    begin, end = start, start + timedelta(hours=2)
    order = command(mn, "2051", {"BeginTime": n14(begin), "EndTime": n14(end)})
    await kafka.publish([encode(order, topic=topics.commands)])
    request = await device.client.expect("2051", limit_s=30)
    await device.client.send(hj212.encode(hj212_commands.request_answer(request, 1)))
    for n in range(8):
        moment = begin + timedelta(minutes=10 * n)
        qn = qn_at(moment + timedelta(minutes=10)) if n % 2 else None
        await device.upload(upload(mn, cn="2051", qn=qn, data_time=n14(moment)))
        await asyncio.sleep(WINDOW_S / 2)
    await device.client.send(hj212.encode(hj212_commands.execution_answer(request, 1)))
    await device.live(mn, 3 * WINDOW_S)
    await device.client.nothing(4 * WINDOW_S)
    assert device.commands("1012") == [], "no 1012 for the age of the backlog"

    events = await readings.wait_for(lambda e: len(e) >= 16 + 7, "every reading")
    kept: list[TelemetryReading] = events
    history = {(r.cn, r.data_time) for r in kept if r.history}
    an_hour_ago = order.requested_at - timedelta(hours=1)
    old_realtime = [r for r in kept if r.cn == "2011" and r.data_time < an_hour_ago]
    answers = [r for r in kept if r.cn == "2051"]
    live = [r for r in kept if r.cn == "2011" and r not in old_realtime]
    assert len(old_realtime) == 8 and len(answers) == 8 and len(live) >= 7
    assert all(r.history for r in old_realtime), "sent again from before the connection"
    assert all(r.history for r in answers), "answers to the history request"
    assert not any(r.history for r in live), "live data are judged"
    assert len(history) == 16
    await device.client.close()
    await readings.stop()


async def test_a_device_whose_live_clock_is_off_gets_one_1012(
    start_server: ServerFactory, topics: Topics, kafka
) -> None:
    mn = new_mn()
    server = await start_server(
        registry_with(device_snapshot(mn)),
        clock_check_interval_s=WINDOW_S,
        max_clock_drift_s=60,
        backfill_enabled=False,
    )
    device = Device(await DeviceClient.connect(server.port or 0))
    await device.live(mn, 6 * WINDOW_S, clock_offset=timedelta(minutes=-30))
    [set_time] = device.commands("1012")
    sent = hj212.parse_hj212_time(set_time.params["SystemTime"])
    assert sent is not None and abs((sent - local_now()).total_seconds()) < 5
    await device.live(mn, 4 * WINDOW_S, clock_offset=timedelta(minutes=-30))
    assert len(device.commands("1012")) == 1, "one per clock_correction_interval_s"
    await device.client.close()


async def test_data_from_before_the_connection_are_history_without_a_command(
    start_server: ServerFactory, topics: Topics, kafka
) -> None:
    """The grace: data a few minutes older than the connection (sampled just before it, a
    slow link) are live; an hour value completed after the connection started is live; data
    older than `history_grace_s` before it are history."""
    mn = new_mn()
    server = await start_server(registry_with(device_snapshot(mn)), history_grace_s=900)
    readings = await TopicReader(kafka, topics.readings).start()
    device = Device(await DeviceClient.connect(server.port or 0))
    now = local_now().replace(microsecond=0)
    cases = {
        ("2011", now - timedelta(minutes=5)): False,
        ("2011", now - timedelta(minutes=20)): True,
        ("2061", now - timedelta(minutes=30)): False,  # its hour ends after the connection
        ("2061", now.replace(minute=0, second=0) - timedelta(hours=3)): True,
        ("2031", now.replace(hour=0, minute=0, second=0) - timedelta(days=3)): True,
    }
    for cn, moment in cases:
        await device.upload(upload(mn, cn=cn, data_time=n14(moment)))
    events = await readings.wait_for(lambda e: len(e) >= len(cases), "the readings")
    tz = server.time.tz
    got = {(r.cn, r.data_time.astimezone(tz).replace(tzinfo=None)): r.history for r in events}
    assert got == cases
    await device.client.close()
    await readings.stop()


async def test_a_replay_on_a_simulated_clock_is_live_in_its_own_time(
    start_server: ServerFactory, topics: Topics, kafka
) -> None:
    """`IngestServer(clock=...)`: receive times, sessions and the history judgement follow
    the injected clock, so a replay of past days (the pipeline tests) is live, not history."""
    past = datetime(2026, 11, 20, 8, 0, tzinfo=UTC).timestamp()
    started = time.time()

    def clock() -> float:
        return past + (time.time() - started)

    mn = new_mn()
    server = await start_server(registry_with(device_snapshot(mn)), clock=clock)
    readings = await TopicReader(kafka, topics.readings).start()
    device = Device(await DeviceClient.connect(server.port or 0))
    simulated_now = datetime.fromtimestamp(clock(), server.time.tz).replace(tzinfo=None)
    await device.upload(upload(mn, qn=qn_at(simulated_now), data_time=n14(simulated_now)))
    [reading] = await readings.wait_for(lambda e: len(e) >= 1, "the reading")
    assert reading.history is False
    assert abs(reading.received_at.timestamp() - clock()) < 30
    assert abs((reading.received_at - reading.data_time).total_seconds()) < 30
    await device.client.close()
    await readings.stop()
