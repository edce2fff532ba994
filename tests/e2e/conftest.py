"""End-to-end fixtures: the ingest server (in process, real Kafka and Redis, private topics and
Redis prefix) paired with the device simulator as its fleet.

The server fixtures (`kafka`, `redis`, `topics`, `start_server`) and the private broker
(`private_kafka`) are the ingest tests' own, imported from `tests/services/ingest_hj212`.
A fleet is registered the way the platform does it: `publish_fleet` writes its
`RegistryChange`s to a private registry topic, and the server reads them through a
`RegistryView` attached to that topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import ecowatt_hj212 as hj212
import pytest
from ecowatt_kernel.bus import Bus, Record
from ecowatt_kernel.contracts import FrameReceived, TelemetryReading, decode
from ecowatt_kernel.registry_view import RegistryView
from ecowatt_simulator import Fleet, Simulator, publish_fleet

from ..services.ingest_hj212.conftest import (  # noqa: F401 - fixtures
    ServerFactory,
    Topics,
    kafka,
    make_topics,
    redis,
    start_server,
    topics,
)
from ..services.ingest_hj212.private_kafka import PrivateKafka, private_kafka  # noqa: F401

__all__ = [
    "Collector",
    "PrivateKafka",
    "Register",
    "ServerFactory",
    "Topics",
    "assert_every_frame_recorded",
    "make_topics",
]

FAST_DEVICES = {"max_frames_per_s": 100_000, "frame_burst": 100_000}
"""Server overrides for simulated devices in fast mode: they send as fast as they are
answered, far above a real logger's rate, so the per-connection rate limit is lifted."""


@dataclass
class Collector:
    """Decodes a topic from its start (fresh consumer group), as the records arrive."""

    bus: Bus
    topic: str
    events: list[Any] = field(default_factory=list)

    async def start(self) -> Collector:
        self._changed = asyncio.Event()

        async def collect(records: Iterable[Record]) -> None:
            self.events.extend(decode(r).data for r in records)
            self._changed.set()

        self.subscription = await self.bus.subscribe(
            group=f"test-e2e-{uuid.uuid4().hex[:8]}", topics=[self.topic], handler=collect
        )
        return self

    def frames(self) -> list[FrameReceived]:
        return [e for e in self.events if isinstance(e, FrameReceived)]

    def readings(self) -> list[TelemetryReading]:
        return [e for e in self.events if isinstance(e, TelemetryReading)]

    async def wait_for(
        self, condition: Callable[[list[Any]], bool], what: str, limit_s: float = 60.0
    ) -> list[Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit_s
        while not condition(self.events):
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {what}; {len(self.events)} events")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.5))
        return self.events

    async def stop(self) -> None:
        await self.subscription.stop()


Register = Callable[..., Awaitable[RegistryView]]


@pytest.fixture
async def register() -> AsyncIterator[Register]:
    """`await register(bus, fleet)`: publish the fleet on a private registry topic and return
    a `RegistryView` that has read it (what the server checks MN, PW and CRC against)."""
    views: list[RegistryView] = []

    async def factory(bus: Bus, fleet: Fleet) -> RegistryView:
        topic = f"test.e2e.{uuid.uuid4().hex[:10]}.registry"
        await publish_fleet(bus, fleet, topic=topic)
        view = RegistryView(topic=topic)
        await view.attach(bus, group_prefix=f"test-e2e-{uuid.uuid4().hex[:6]}")
        await view.wait_ready(60)
        views.append(view)
        return view

    yield factory
    for view in views:
        if view.subscription is not None:  # (its broker may be gone when a test failed)
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(view.subscription.stop(), 15)


def _data_time(frame: FrameReceived) -> str | None:
    try:
        return hj212.decode(frame.raw).params.get("DataTime")
    except hj212.DecodeError:
        return None


def expected_keys(sim: Simulator) -> tuple[set[tuple[str, str]], set[tuple[str, str, str]]]:
    """What the sent log says must be in `hj212.frames`: (MN, QN) of every frame that asked
    for an answer or answered a command, and (MN, CN, DataTime) of 2005-style frames."""
    qns = {(mn, qn) for mn, device_qns in sim.log.all_qns().items() for qn in device_qns}
    qns |= {(d.mn, qn) for d in sim.log for _, qn in d.answers if qn}
    no_ack = {(d.mn, cn, data_time) for d in sim.log for cn, data_time in d.no_ack}
    return qns, no_ack


def recorded_keys(
    frames: Iterable[FrameReceived],
) -> tuple[set[tuple[str, str]], set[tuple[str, str, str]]]:
    qns: set[tuple[str, str]] = set()
    no_qn: set[tuple[str, str, str]] = set()
    for frame in frames:
        if frame.mn is None:
            continue
        if frame.qn is not None:
            qns.add((frame.mn, frame.qn))
        elif frame.cn is not None:
            data_time = _data_time(frame)
            if data_time is not None:
                no_qn.add((frame.mn, frame.cn, data_time))
    return qns, no_qn


async def assert_every_frame_recorded(
    sim: Simulator, frames: Collector, limit_s: float = 60.0
) -> list[FrameReceived]:
    """Every QN of the sent log, and every 2005-style frame by (CN, DataTime), is in the
    frames topic (waits up to `limit_s` for the consumer). Returns the frame records."""
    want_qns, want_no_ack = expected_keys(sim)
    assert want_qns, "the simulator sent nothing"
    state: dict[str, Any] = {"seen": 0, "qns": set(), "no_qn": set()}

    def complete(events: list[Any]) -> bool:
        fresh = [e for e in events[state["seen"] :] if isinstance(e, FrameReceived)]
        state["seen"] = len(events)
        qns, no_qn = recorded_keys(fresh)
        state["qns"] |= qns
        state["no_qn"] |= no_qn
        return want_qns <= state["qns"] and want_no_ack <= state["no_qn"]

    try:
        await frames.wait_for(complete, "every frame of the sent log", limit_s)
    except AssertionError:
        missing = sorted(want_qns - state["qns"])[:10]
        missing_2005 = sorted(want_no_ack - state["no_qn"])[:10]
        raise AssertionError(
            f"{len(want_qns - state['qns'])} QNs and {len(want_no_ack - state['no_qn'])}"
            f" 2005-style frames missing from hj212.frames, e.g. {missing} {missing_2005}"
        ) from None
    return frames.frames()
