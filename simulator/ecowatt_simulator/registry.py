"""Reading the fleet from `registry.changes`, and registering a synthetic fleet there."""

from __future__ import annotations

import dataclasses

from ecowatt_kernel.bus import Bus
from ecowatt_kernel.contracts import TOPICS, encode
from ecowatt_kernel.registry_view import RegistryView

from ecowatt_simulator.fleet import Fleet

__all__ = ["fleet_from_bus", "publish_fleet"]


async def fleet_from_bus(
    bus: Bus,
    *,
    city_seed: int,
    topic: str = "registry.changes",
    group_prefix: str = "simulator",
    timeout_s: float = 120.0,
    seed: int | None = None,
    password: str | None = None,
) -> Fleet:
    """The registered fleet as it is now (reads the compacted topic, then stops).

    `password`: one PW for every device (a fleet registered with one PW)."""
    view = RegistryView(topic=topic)
    await view.attach(bus, group_prefix=group_prefix)
    try:
        await view.wait_ready(timeout_s=timeout_s)
        return Fleet.from_view(view, city_seed=city_seed, seed=seed, password=password)
    finally:
        if view.subscription is not None:
            await view.subscription.stop()


async def publish_fleet(
    bus: Bus,
    fleet: Fleet,
    *,
    topic: str = "registry.changes",
    password_hash: str | None = None,
    revision: int = 1,
    batch: int = 2000,
) -> int:
    """Publish the `RegistryChange`s that register `fleet` on `topic`; returns how many.

    The topic is created (compacted, like registry.changes) when missing.
    """
    spec = dataclasses.replace(TOPICS["registry.changes"], name=topic)
    await bus.ensure_topics([spec])
    changes = fleet.registry_changes(revision=revision, password_hash=password_hash)
    messages = [encode(change, topic=topic) for change in changes]
    for start in range(0, len(messages), batch):
        await bus.publish(messages[start : start + batch])
    return len(messages)
