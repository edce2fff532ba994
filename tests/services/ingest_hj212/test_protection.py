"""Protection: bad or malicious connections do not hurt the others; limits hold; the
server stops reading when the bus cannot keep up instead of buffering without bound."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence

import ecowatt_hj212 as hj212
import pytest
from ecowatt_ingest.connection import BACKPRESSURE
from ecowatt_kernel.bus import InProcessBus, Message

from .conftest import (
    DeviceClient,
    ServerFactory,
    TopicReader,
    Topics,
    device_snapshot,
    new_mn,
    registry_with,
    upload,
)

pytestmark = pytest.mark.integration


async def _closed_by_server(device: DeviceClient, limit_s: float) -> bool:
    try:
        data = await asyncio.wait_for(device.reader.read(1024), limit_s)
    except (TimeoutError, ConnectionError):
        return False
    return data == b""


async def test_slow_garbage_and_huge_senders_do_not_slow_a_good_device(
    start_server: ServerFactory,
) -> None:
    good_mn, slow_mn = new_mn(), new_mn()
    server = await start_server(
        registry_with(device_snapshot(good_mn), device_snapshot(slow_mn)),
        max_garbage_bytes=200_000,
    )
    stop = asyncio.Event()

    async def slow_sender() -> None:  # one byte at a time, a valid frame in the end
        device = await DeviceClient.connect(server.port)
        frame = hj212.encode(upload(slow_mn))
        for byte in frame:
            if stop.is_set():
                break
            await device.send(bytes([byte]))
            await asyncio.sleep(0.05)
        await device.close()

    async def garbage_sender() -> None:
        while not stop.is_set():
            device = await DeviceClient.connect(server.port)
            try:
                while not stop.is_set():
                    await device.send(os.urandom(16384))
                    await asyncio.sleep(0)
            except (ConnectionError, OSError):
                pass
            await device.close()

    async def huge_sender() -> None:
        device = await DeviceClient.connect(server.port)
        while not stop.is_set():
            await device.send(b"##9999" + b"A" * 8000 + b"\r\n")
            await asyncio.sleep(0.001)
        await device.close()

    attackers = [asyncio.create_task(f()) for f in (slow_sender, garbage_sender, huge_sender)]
    await asyncio.sleep(0.5)
    device = await DeviceClient.connect(server.port)
    latencies = []
    for minute in range(40):
        started = time.perf_counter()
        await device.send(upload(good_mn, data_time=f"202611261{minute // 60}{minute % 60:02d}00"))
        await device.expect("9014", limit_s=5)
        latencies.append(time.perf_counter() - started)
    stop.set()
    await asyncio.gather(*attackers, return_exceptions=True)
    latencies.sort()
    assert latencies[-2] < 0.5, f"a good device waited {latencies[-2]:.3f} s for an answer"
    assert server.stats["rejected"] > 10, "the attackers' bytes were recorded as rejects"
    await device.close()


async def test_garbage_only_connection_is_closed(start_server: ServerFactory) -> None:
    server = await start_server(registry_with(), max_garbage_bytes=4096)
    device = await DeviceClient.connect(server.port)
    await device.send(b"x" * 10_000)
    assert await _closed_by_server(device, 5), "closed after max_garbage_bytes"


async def test_connection_limit_and_idle_timeout(start_server: ServerFactory) -> None:
    server = await start_server(registry_with(), max_connections=2, idle_timeout_s=1.5)
    first = await DeviceClient.connect(server.port)
    second = await DeviceClient.connect(server.port)
    third = await DeviceClient.connect(server.port)
    assert await _closed_by_server(third, 3), "beyond max_connections"
    assert len(server.connections) == 2
    started = time.monotonic()
    assert await _closed_by_server(first, 5), "idle connections are closed"
    assert time.monotonic() - started >= 1.0
    assert await _closed_by_server(second, 5)


async def test_frame_rate_limit_throttles_without_losing_frames(
    start_server: ServerFactory,
) -> None:
    mn = new_mn()
    server = await start_server(
        registry_with(device_snapshot(mn)), max_frames_per_s=10, frame_burst=5
    )
    device = await DeviceClient.connect(server.port)
    burst = [upload(mn, data_time=f"2026112610{i:02d}00") for i in range(25)]
    started = time.monotonic()
    await device.send(b"".join(hj212.encode(m) for m in burst))
    answered = [await device.expect("9014", limit_s=10) for _ in burst]
    elapsed = time.monotonic() - started
    assert [a.qn for a in answered] == [m.qn for m in burst], "every frame, in order"
    assert elapsed >= 1.5, f"25 frames at 10/s after a burst of 5 took only {elapsed:.2f} s"


async def test_trailerless_frame_is_released_when_the_link_goes_quiet(
    start_server: ServerFactory, topics: Topics, kafka
) -> None:
    mn = new_mn()
    server = await start_server(registry_with(device_snapshot(mn)), flush_idle_s=0.3)
    device = await DeviceClient.connect(server.port)
    message = upload(mn)
    await device.send(hj212.encode(message)[:-2])  # no CR LF
    answer = await device.expect("9014", limit_s=3)
    assert answer.qn == message.qn
    await device.close()


class GatedBus(InProcessBus):
    """An in-process bus whose publish waits until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def publish(self, messages: Sequence[Message]) -> None:
        await self.gate.wait()
        await super().publish(messages)


async def test_backpressure_stops_reading_instead_of_buffering(
    start_server: ServerFactory,
) -> None:
    bus = GatedBus()
    await bus.start()
    mns = [new_mn() for _ in range(4)]
    server = await start_server(
        registry_with(*(device_snapshot(mn) for mn in mns)),
        bus=bus,
        publish_high_watermark=50,
        publish_low_watermark=10,
        max_unacked_per_connection=10_000,
        max_frames_per_s=100_000,
        frame_burst=100_000,
    )
    devices = [await DeviceClient.connect(server.port) for _ in mns]
    frames = {
        mn: [upload(mn, data_time=f"2026112611{i // 60:02d}{i % 60:02d}") for i in range(300)]
        for mn in mns
    }
    writers = [
        asyncio.create_task(device.send(b"".join(hj212.encode(m) for m in frames[mn])))
        for device, mn in zip(devices, mns, strict=True)
    ]
    await asyncio.sleep(1.5)
    pending = server.publisher.pending
    assert server.publisher.under_pressure
    assert all(c.paused & BACKPRESSURE for c in server.connections)
    # bounded: at most what was already read when the pressure began
    assert pending < 50 + 4 * 200, f"{pending} messages buffered behind a stalled bus"
    await asyncio.sleep(0.5)
    assert server.publisher.pending == pending, "nothing more is read while paused"
    bus.gate.set()
    await asyncio.gather(*writers)
    for device, mn in zip(devices, mns, strict=True):
        answered = [await device.expect("9014", limit_s=20) for _ in frames[mn]]
        assert [a.qn for a in answered] == [m.qn for m in frames[mn]]
    assert not server.publisher.under_pressure
    for device in devices:
        await device.close()
    await bus.stop()


async def test_huge_declared_length_is_rejected_and_recorded(
    start_server: ServerFactory, topics: Topics, kafka
) -> None:
    server = await start_server(registry_with(), max_segment_size=1024)
    frames = await TopicReader(kafka, topics.frames).start()
    device = await DeviceClient.connect(server.port)
    await device.send(b"##2000QN=1;CN=2011;CP=&&" + b"x" * 1990 + b"&&ABCD\r\n")
    events = await frames.wait_for(lambda e: len(e) >= 1, "the reject", limit_s=10)
    assert events[0].reason_code == "length_exceeds_limit"
    await device.close()
    await frames.stop()
