"""The simulator: a fleet of devices against one HJ 212 server.

    fleet = Fleet.synthetic(devices=10, circuits=4, seed=7)
    sim = Simulator(fleet, host="127.0.0.1", port=9212,
                    faults=FaultConfig(shares={"control_off": 0.2}),
                    clock=SimClock.fast(datetime(2025, 12, 1, tzinfo=UTC)))
    await sim.run(duration=timedelta(hours=24))     # simulated time; then waits for answers
    sim.log.unacked()      # {} when every upload was answered
    sim.ground_truth       # which device/point got which fault when

or `async with Simulator(...) as sim: ...` (runs until the block ends). `run_against_platform`
is what standalone mode calls: it follows the registry on the in-process bus and simulates
every registered device until cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from datetime import timedelta
from types import TracebackType
from typing import Any

from ecowatt_kernel.bus import Bus, Subscription
from ecowatt_kernel.registry_view import RegistryView

from ecowatt_simulator.device import DeviceSettings, SimDevice
from ecowatt_simulator.faults import FaultConfig, FaultPlan, GroundTruth
from ecowatt_simulator.fleet import Fleet
from ecowatt_simulator.load import LoadModel
from ecowatt_simulator.log import SentLog
from ecowatt_simulator.orders import OrderBook, OrderConfig
from ecowatt_simulator.timebase import LocalTime, ManualClock, SimClock, parse_duration

__all__ = ["Simulator", "run_against_platform"]

_logger = logging.getLogger("ecowatt.simulator")


class Simulator:
    """Simulated devices of `fleet` reporting to `host:port`."""

    def __init__(
        self,
        fleet: Fleet,
        *,
        host: str = "127.0.0.1",
        port: int = 9212,
        faults: FaultConfig | None = None,
        clock: SimClock | None = None,
        settings: DeviceSettings | None = None,
        seed: int | None = None,
        log: SentLog | None = None,
        connect_rate: float | None = None,
        orders: OrderConfig | None = None,
    ) -> None:
        """`connect_rate`: new connections per wall second across the fleet (None: no limit);
        `orders`: listed enterprises respond to control orders (`sim.orders`, `orders.py`)."""
        self.fleet = fleet
        self.host = host
        self.port = port
        self.clock = clock or SimClock()
        self.settings = settings or DeviceSettings()
        self.seed = fleet.seed if seed is None else seed
        self.local = LocalTime(self.settings.timezone)
        self.faults = faults or FaultConfig()
        self.plan = FaultPlan(fleet, self.faults, seed=self.seed, local=self.local)
        self.plan.anchor = self.clock.start
        self.orders = OrderBook(fleet, orders, seed=self.seed, local=self.local) if orders else None
        self.model = LoadModel(
            fleet, seed=self.seed, local=self.local, faults=self.plan, orders=self.orders
        )
        self.log = log or SentLog()
        self.connect_rate = connect_rate
        self.devices: dict[str, SimDevice] = {}
        self.end = math.inf
        self.finishing = False
        self.started = False
        self._next_permit = 0.0

    # ------------------------------------------------------------------------- lifecycle

    async def start(self, duration: float | timedelta | str | None = None) -> None:
        """Connect every device and start its timeline (`duration` of simulated time)."""
        if self.started:
            raise RuntimeError("simulator already started")
        self.started = True
        self.end = math.inf if duration is None else self.clock.start + parse_duration(duration)
        self.clock.attach()
        for mn in sorted(self.fleet.devices):
            self._add(mn)

    def _add(self, mn: str) -> SimDevice:
        device = SimDevice(self, self.fleet.devices[mn])
        self.devices[mn] = device
        device.start(self.end)
        return device

    async def wait(self, *, drain_timeout: float = 60.0) -> bool:
        """Wait for every timeline to end, then up to `drain_timeout` wall seconds for the
        platform to answer what is still unanswered. True when everything was answered."""
        devices = list(self.devices.values())
        for device in devices:
            await device.timeline_done.wait()
        self.finishing = True
        deadline = time.monotonic() + drain_timeout
        while time.monotonic() < deadline:
            if all(d.drained for d in devices):
                return True
            await asyncio.sleep(0.05)
        return all(d.drained for d in devices)

    async def stop(self) -> None:
        """Close every connection and stop every task."""
        self.finishing = True
        await asyncio.gather(*(d.stop() for d in self.devices.values()))

    async def run(
        self,
        duration: float | timedelta | str | None = None,
        *,
        drain_timeout: float = 60.0,
    ) -> bool:
        """Simulate `duration` (simulated time; None = until cancelled), wait for answers,
        stop. In idle mode `duration` is wall time to hold the connections. True when
        every upload was answered."""
        try:
            if self.settings.idle:
                await self.start(None)
                if duration is None:
                    await asyncio.Event().wait()
                await asyncio.sleep(parse_duration(duration))  # type: ignore[arg-type]
                return all(d.drained for d in self.devices.values())
            await self.start(duration)
            return await self.wait(drain_timeout=drain_timeout)
        finally:
            await self.stop()

    async def __aenter__(self) -> Simulator:
        await self.start(None)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def connect_permit(self) -> None:
        """Pace new connections to `connect_rate` per wall second."""
        if not self.connect_rate:
            return
        now = time.monotonic()
        slot = max(now, self._next_permit)
        self._next_permit = slot + 1.0 / self.connect_rate
        if slot > now:
            await asyncio.sleep(slot - now)

    async def advance(self, t: float, *, timeout_s: float = 60.0) -> None:
        """With a `ManualClock`: move simulated time to `t` (at most the end of the run),
        then wait until every timeline has made its data up to `t` and every online device
        has had all of it answered. Offline devices (a fault window) are not waited for:
        they send their backlog when they are back.

        Runs started with `start(duration)` end once the clock reaches the end; drive them
        with `advance` and then `wait()` (or `run(...)` in a task of its own)."""
        clock = self.clock
        if not isinstance(clock, ManualClock):
            raise TypeError("advance() needs a ManualClock")
        deadline = time.monotonic() + timeout_s
        while not self.started:  # `run()` was just created as a task
            if time.monotonic() > deadline:
                raise TimeoutError("the simulator was not started")
            await asyncio.sleep(0.002)
        clock.advance(min(t, self.end) if math.isfinite(self.end) else t)
        while True:
            devices = list(self.devices.values())
            running = sum(1 for d in devices if not d.timeline_done.is_set())
            if clock.waiting >= running and all(
                d.drained or not d.online.is_set() for d in devices
            ):
                return
            if time.monotonic() > deadline:
                behind = [d.mn for d in devices if not (d.drained or not d.online.is_set())]
                raise TimeoutError(
                    f"devices not answered {timeout_s:g} s after advancing to {t}: {behind[:5]}"
                )
            await asyncio.sleep(0.002)

    # -------------------------------------------------------------------------- changes

    async def update_fleet(self, fleet: Fleet) -> None:
        """Follow a changed archive: start new devices, stop removed ones, re-read points."""
        self.fleet = fleet
        self.plan = FaultPlan(fleet, self.faults, seed=self.seed, local=self.local)
        self.plan.anchor = self.clock.start
        if self.orders is not None:
            self.orders.update_fleet(fleet)
        self.model = LoadModel(
            fleet, seed=self.seed, local=self.local, faults=self.plan, orders=self.orders
        )
        for mn in sorted(set(self.devices) - set(fleet.devices)):
            await self.devices.pop(mn).stop()
        for mn, spec in fleet.devices.items():
            device = self.devices.get(mn)
            if device is None:
                self._add(mn)
            elif device.spec != spec:
                device.update_spec(spec)

    # -------------------------------------------------------------------------- results

    @property
    def reached(self) -> float:
        """Simulated time every device has reached."""
        if not self.devices:
            return self.clock.start
        if self.clock.is_fast:
            return min(
                d.reached if d.reached is not None else d.cursor for d in self.devices.values()
            )
        return min(self.clock.now(), self.end)

    @property
    def ground_truth(self) -> GroundTruth:
        """Faults from the start up to the time reached (the whole run once it ended)."""
        end = self.reached
        return GroundTruth(
            start=self.clock.start,
            end=end,
            assignments=self.plan.assignments(),
            events=self.plan.events(self.clock.start, end, self.model),
        )

    def device(self, mn: str) -> SimDevice:
        return self.devices[mn]

    def stats(self) -> dict[str, Any]:
        summary = self.log.summary()
        summary["online"] = sum(1 for d in self.devices.values() if d.link is not None)
        summary["reached"] = self.reached
        return summary


async def run_against_platform(
    bus: Bus,
    host: str = "127.0.0.1",
    port: int = 9212,
    city_seed: int = 0,
    *,
    topic: str = "registry.changes",
    speed: float = 1.0,
    faults: FaultConfig | None = None,
    settings: DeviceSettings | None = None,
    refresh_s: float = 10.0,
    group_prefix: str = "simulator",
    ready_timeout_s: float = 300.0,
    on_started: Any = None,
    orders: OrderConfig | None = None,
    tasks_topic: str = "control.tasks",
    follow_orders: bool = True,
) -> None:
    """Simulate every registered device against the platform until cancelled.

    Reads `registry.changes` from `bus` into a `RegistryView`, waits until it is caught up
    and holds at least one device, simulates the fleet in real time (`speed` 1 by default;
    start = now) and re-reads the archive every `refresh_s` seconds (new devices start,
    removed ones stop). `on_started(sim)` is called once the simulator runs. Listed
    enterprises respond to the control orders on `tasks_topic` as `orders` (default
    `OrderConfig()`) draws them (`orders.py`); `follow_orders=False` ignores the orders.
    """
    orders = (orders or OrderConfig()) if follow_orders else None
    follower: Subscription | None = None
    view = RegistryView(topic=topic)
    await view.attach(bus, group_prefix=group_prefix)
    sim: Simulator | None = None
    changed = asyncio.Event()
    view.on_change(lambda *_: changed.set())
    try:
        await view.wait_ready(timeout_s=ready_timeout_s)
        while True:
            fleet = Fleet.from_view(view, city_seed=city_seed)
            changed.clear()
            if sim is None and fleet.devices:
                sim = Simulator(
                    fleet,
                    host=host,
                    port=port,
                    faults=faults,
                    clock=SimClock(speed=speed),
                    settings=settings,
                    orders=orders,
                )
                if sim.orders is not None:
                    follower = await sim.orders.follow(
                        bus, tasks_topic, group=f"{group_prefix}.orders.{uuid.uuid4().hex[:12]}"
                    )
                await sim.start(None)
                _logger.info("simulating %d devices against %s:%d", len(fleet.devices), host, port)
                if on_started is not None:
                    on_started(sim)
            elif sim is not None and _fingerprint(fleet) != _fingerprint(sim.fleet):
                await sim.update_fleet(fleet)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout=refresh_s)
            await asyncio.sleep(min(1.0, refresh_s))  # let a burst of changes settle
    finally:
        if follower is not None:
            await follower.stop()
        if sim is not None:
            await sim.stop()
        if view.subscription is not None:
            await view.subscription.stop()


def _fingerprint(fleet: Fleet) -> tuple[Any, ...]:
    return (
        tuple(sorted(fleet.devices.items())),
        tuple(sorted(fleet.facilities.items())),
        tuple(sorted(fleet.groups.items())),
        tuple(sorted(fleet.points.items())),
    )
