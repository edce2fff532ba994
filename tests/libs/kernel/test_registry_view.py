from __future__ import annotations

import asyncio
import hashlib
import hmac
import uuid
from datetime import UTC, datetime

import pytest
from ecowatt_kernel.bus import Bus, InProcessBus
from ecowatt_kernel.contracts import (
    DeviceSnapshot,
    PointSnapshot,
    RegistryChange,
    Snapshot,
    TopicSpec,
    encode,
)
from ecowatt_kernel.registry_view import RegistryView
from ecowatt_kernel.synthetic import device_password

NOW = datetime(2026, 11, 26, tzinfo=UTC)


def change(snapshot: Snapshot, entity: str, revision: int) -> RegistryChange:
    return RegistryChange(
        entity=entity,
        entity_id=snapshot.id,
        operation="upsert",
        revision=revision,
        changed_at=NOW,
        snapshot=snapshot.model_dump(mode="json"),
    )


def point(point_id: str, mn: str | None, circuit: int = 1, kw: float = 5.0) -> PointSnapshot:
    return PointSnapshot(
        id=point_id,
        updated_at=NOW,
        enterprise_id="E1",
        point_type="control",
        name=point_id,
        device_mn=mn,
        circuit=circuit,
        start_stop_kw=kw,
    )


def test_newer_revisions_win_and_indexes_follow_moves() -> None:
    view = RegistryView()
    seen: list[tuple[str, str, bool]] = []
    view.on_change(lambda entity, key, old, new: seen.append((entity, key, new is None)))
    view.apply(change(point("P1", "MN-A", circuit=2), "point", 1))
    view.apply(change(point("P2", "MN-A", circuit=1), "point", 1))
    assert [p.id for p in view.points_of_device("MN-A")] == ["P2", "P1"]

    view.apply(change(point("P1", "MN-B", circuit=1, kw=9.0), "point", 3))
    assert not view.apply(change(point("P1", "MN-A", kw=1.0), "point", 2)), "stale revision"
    moved = view.point("P1")
    assert moved is not None and moved.device_mn == "MN-B" and moved.start_stop_kw == 9.0
    assert [p.id for p in view.points_of_device("MN-A")] == ["P2"]
    assert [p.id for p in view.points_of_device("MN-B")] == ["P1"]

    view.apply(
        RegistryChange(
            entity="point", entity_id="P2", operation="delete", revision=2, changed_at=NOW
        )
    )
    assert view.point("P2") is None and view.points_of_device("MN-A") == []
    assert seen[-1] == ("point", "P2", True)
    assert view.device("P1") is None, "typed accessors do not mix entities"


@pytest.mark.integration
async def test_view_catches_up_then_follows_the_topic(bus: Bus) -> None:
    # A private topic name keeps this test apart from the real registry topic.
    topic = f"test.registry.{uuid.uuid4().hex[:8]}"
    await bus.ensure_topics([TopicSpec(topic, "entity", "", partitions=3, compacted=True)])
    devices = [DeviceSnapshot(id=f"MN{i:03d}", mn=f"MN{i:03d}", updated_at=NOW) for i in range(50)]
    await bus.publish([encode(change(d, "device", 1), topic=topic) for d in devices])

    view = RegistryView(topic=topic)
    try:
        await view.attach(bus, group_prefix="test")
        await view.wait_ready(timeout_s=60)
        assert len(view.all("device")) == 50, "ready means caught up"
        late = DeviceSnapshot(id="MN999", mn="MN999", updated_at=NOW, crc_variant="modbus_hi_lo")
        await bus.publish([encode(change(late, "device", 1), topic=topic)])
        for _ in range(200):
            if view.device("MN999"):
                break
            await asyncio.sleep(0.05)
        found = view.device("MN999")
        assert found is not None and found.crc_variant == "modbus_hi_lo"
    finally:
        if view.subscription is not None:
            await view.subscription.stop()


async def test_view_of_an_empty_topic_is_ready_at_once() -> None:
    bus = InProcessBus()
    await bus.start()
    try:
        view = RegistryView()
        await view.attach(bus, group_prefix="t")
        await view.wait_ready(timeout_s=1)
    finally:
        await bus.stop()


def test_synthetic_device_password_is_hmac_of_seed_and_mn() -> None:
    expected = (
        int.from_bytes(
            hmac.new(
                b"ecowatt-synthetic-city:42", b"010000A8900016F000169DC0", hashlib.sha256
            ).digest()[:8],
            "big",
        )
        % 1_000_000
    )
    assert device_password(42, "010000A8900016F000169DC0") == f"{expected:06d}"
    assert len(device_password(7, "X")) == 6
    assert device_password(42, "A") != device_password(43, "A")
