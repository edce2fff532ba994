"""A manual clock: simulated time moves when the caller says, and `Simulator.advance(t)`
returns once the whole fleet's data up to `t` has been sent and answered."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ecowatt_simulator import DeviceSettings, FaultConfig, Fleet, ManualClock, SimClock, Simulator

START = datetime(2025, 12, 1, 0, 0, tzinfo=UTC)


async def test_sleepers_wake_when_the_clock_reaches_them() -> None:
    clock = ManualClock(START)
    t0 = clock.now()
    woke: list[float] = []

    async def sleeper(offset: float) -> None:
        await clock.sleep_until(t0 + offset)
        woke.append(offset)

    tasks = [asyncio.create_task(sleeper(o)) for o in (30, 10, 20)]
    await asyncio.sleep(0)
    assert clock.waiting == 3 and woke == []
    clock.advance(t0 + 15)
    await asyncio.sleep(0)
    assert woke == [10] and clock.waiting == 2
    clock.advance(t0 + 30)
    await asyncio.gather(*tasks)
    assert sorted(woke) == [10, 20, 30] and clock.waiting == 0
    await clock.sleep_until(t0)  # the past: no wait
    with pytest.raises(ValueError):
        clock.advance(t0)
    assert clock.wall_delay(t0 + 31) == float("inf") and clock.wall_delay(t0) == 0.0


async def test_advance_keeps_the_fleet_in_step(platform: Any) -> None:
    fleet = Fleet.synthetic(4, circuits=3, seed=31)
    clock = ManualClock(START)
    sim = Simulator(
        fleet,
        port=platform.port,
        clock=clock,
        faults=FaultConfig(shares={"offline": 0.25}, offline_s=(1800.0, 1800.0)),
        settings=DeviceSettings(rtd_interval_s=60, sample_s=60),
    )
    (offline_mn,) = sim.plan.assignments()
    window = sim.plan.offline_window(offline_mn, sim.local.day_index(clock.start), sim.model)
    assert window is not None
    duration = window[1] - clock.start + 1800  # past the offline window
    run = asyncio.create_task(sim.run(duration, drain_timeout=10))
    t, end = clock.start, clock.start + duration
    while t < end:
        t = min(t + 300, end)
        await sim.advance(t)
        for mn in fleet.devices:
            times = [_utc(d) for d in platform.records(mn, "2011")]
            assert times and max(times) <= t, "nothing is sent ahead of the clock"
            offline = window[0] <= t < window[1] + 300 and mn == offline_mn
            if not offline:  # everything up to t arrived (and was answered)
                assert max(times) == t - t % 60, (mn, t)
                assert sim.devices[mn].drained
    assert await run
    assert sim.log.unacked() == {}
    times = [_utc(d) for d in platform.records(offline_mn, "2011")]
    assert not [x for x in times if window[0] + 60 <= x < window[1] - 60]


def test_the_clock_kinds_are_told_apart() -> None:
    assert not ManualClock(START).is_fast and SimClock.fast(START).is_fast
    clock = ManualClock(START)
    clock.attach()
    assert clock.now() == START.timestamp() and "ManualClock" in repr(clock)
    assert clock.now() + 1 == (START + timedelta(seconds=1)).timestamp()


def _utc(data_time: str) -> float:
    local = datetime.strptime(data_time, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    return local.timestamp() - 8 * 3600
