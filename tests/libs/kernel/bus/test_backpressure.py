"""Backpressure: publishers wait instead of buffering without bound."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from ecowatt_kernel.bus import InProcessBus, Message, Record
from ecowatt_kernel.bus.kafka import _InFlight


async def test_in_process_publish_waits_for_a_slow_consumer_group() -> None:
    bus = InProcessBus(max_lag=10)
    await bus.start()
    release = asyncio.Event()
    handled: list[bytes] = []

    async def slow(records: Sequence[Record]) -> None:
        await release.wait()
        handled.extend(r.value for r in records)

    try:
        await bus.subscribe(group="slow", topics=["bp"], handler=slow, max_batch=5)
        messages = [Message("bp", b"k", str(i).encode()) for i in range(30)]
        publishing = asyncio.create_task(bus.publish(messages))
        await asyncio.sleep(0.2)
        assert not publishing.done(), "publish must wait while the group is 10 behind"
        assert sum((await bus.end_offsets("bp")).values()) <= 10
        release.set()
        await asyncio.wait_for(publishing, 10)
        for _ in range(100):
            if len(handled) == 30:
                break
            await asyncio.sleep(0.02)
        assert handled == [str(i).encode() for i in range(30)]
    finally:
        await bus.stop()


async def test_kafka_in_flight_window_blocks_until_acknowledged() -> None:
    window = _InFlight(limit=100)
    await window.acquire(60)
    second = asyncio.create_task(window.acquire(60))
    await asyncio.sleep(0.05)
    assert not second.done(), "60 + 60 exceeds the window"
    await window.release(60)
    await asyncio.wait_for(second, 1)
    assert window.count == 60
    # A single batch larger than the window still goes through when nothing is in flight.
    await window.release(60)
    await asyncio.wait_for(window.acquire(500), 1)
