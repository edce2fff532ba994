"""Fleets: synthetic ones, their registration, reading them back from registry.changes
(in-process bus and the real Kafka), shards, determinism, and standalone mode's entry point."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ecowatt_kernel.bus import Bus, InProcessBus, KafkaBus, KafkaConnection
from ecowatt_kernel.contracts import DeviceSnapshot
from ecowatt_kernel.passwords import verify_password
from ecowatt_kernel.registry_view import RegistryView
from ecowatt_kernel.synthetic import device_password
from ecowatt_simulator import (
    DeviceSettings,
    FaultConfig,
    Fleet,
    SimClock,
    Simulator,
    fleet_from_bus,
    publish_fleet,
    run_against_platform,
)

START = datetime(2025, 12, 1, tzinfo=UTC)


def test_synthetic_fleet_is_a_consistent_archive() -> None:
    fleet = Fleet.synthetic(5, circuits=(3, 8), seed=51, city_seed=52)
    assert len(fleet) == 5
    for mn, device in fleet.devices.items():
        assert len(mn) == 24 and all(c in "0123456789ABCDEF" for c in mn), "HJ 212-2017 MN"
        assert device.password == device_password(52, mn)
        circuits = [p.circuit for p in device.points]
        assert len(set(circuits)) == len(circuits) and 3 <= len(circuits) <= 8
        assert [p.point_type for p in device.points].count("total") == 1
        for point in device.points:
            if point.facility_id:
                facility = fleet.facilities[point.facility_id]
                assert facility.kind == point.point_type
                assert facility.enterprise_id == point.enterprise_id == device.enterprise_id
    for group in fleet.groups.values():
        assert group.production_ids and group.control_ids
        assert all(fleet.facilities[f].kind == "production" for f in group.production_ids)
        assert all(fleet.facilities[f].kind == "control" for f in group.control_ids)


def test_registry_changes_carry_hashes_of_the_city_passwords() -> None:
    fleet = Fleet.synthetic(2, circuits=3, seed=53)
    changes = fleet.registry_changes()
    entities = [c.entity for c in changes]
    assert entities.index("device") > entities.index("point") > entities.index("facility")
    devices = [DeviceSnapshot.model_validate(c.snapshot) for c in changes if c.entity == "device"]
    assert {d.mn for d in devices} == set(fleet.devices)
    for snapshot in devices:
        assert snapshot.password_hash is not None
        assert verify_password(device_password(53, snapshot.mn), snapshot.password_hash)
        assert not verify_password("000000", snapshot.password_hash)
    shared = Fleet.synthetic(3, circuits=1, seed=54, password="246810").snapshots()
    hashes = {s.password_hash for s in shared if isinstance(s, DeviceSnapshot)}
    assert len(hashes) == 1, "one PW, one hash"


def test_shards_partition_the_fleet() -> None:
    fleet = Fleet.synthetic(10, circuits=2, seed=55)
    shards = [fleet.shard(i, 3) for i in range(3)]
    assert sorted(mn for s in shards for mn in s.devices) == sorted(fleet.devices)
    assert [len(s) for s in shards] == [4, 3, 3]
    assert all(s.points == fleet.points for s in shards), "totals still see every facility"
    with pytest.raises(ValueError):
        fleet.shard(3, 3)


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.integration)])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    if request.param == "memory":
        backend: Bus = InProcessBus()
    else:
        backend = KafkaBus(
            KafkaConnection(bootstrap_servers=request.getfixturevalue("kafka_bootstrap"))
        )
    await backend.start()
    yield backend
    await backend.stop()


async def test_fleet_from_view_reads_back_the_registered_fleet(bus: Bus) -> None:
    topic = f"test.simulator.registry.{uuid.uuid4().hex[:8]}"
    fleet = Fleet.synthetic(4, circuits=(2, 6), seed=56)
    published = await publish_fleet(bus, fleet, topic=topic)
    assert published == len(fleet.registry_changes())
    read = await fleet_from_bus(bus, city_seed=56, topic=topic, timeout_s=60)
    assert read.devices == fleet.devices, "points, circuits and PWs (from the city seed)"
    assert read.facilities == fleet.facilities and read.groups == fleet.groups
    assert read.points == fleet.points
    view = RegistryView(topic=topic)
    await view.attach(bus, group_prefix="test-sim")
    try:
        await view.wait_ready(timeout_s=60)
        from_view = Fleet.from_view(view, city_seed=56)
        assert from_view.devices == fleet.devices
        for mn, device in from_view.devices.items():
            snapshot = view.device(mn)
            assert snapshot is not None and snapshot.password_hash is not None
            assert verify_password(device.password, snapshot.password_hash)
    finally:
        assert view.subscription is not None
        await view.subscription.stop()


async def test_run_against_platform_follows_the_registry(platform: Any) -> None:
    bus = InProcessBus()
    await bus.start()
    topic = f"test.simulator.registry.{uuid.uuid4().hex[:8]}"
    fleet = Fleet.synthetic(3, circuits=2, seed=57)
    await publish_fleet(bus, fleet, topic=topic)
    started: list[Simulator] = []
    task = asyncio.create_task(
        run_against_platform(
            bus,
            "127.0.0.1",
            platform.port,
            57,
            topic=topic,
            speed=600,
            settings=DeviceSettings(rtd_interval_s=60),
            refresh_s=0.2,
            on_started=started.append,
        )
    )
    try:
        await platform.wait_until(lambda: {f.mn for f in platform.decoded()} == set(fleet.devices))
        assert all(f.pw == device_password(57, f.mn) for f in platform.decoded())
        newcomer = Fleet.synthetic(1, circuits=1, seed=58, city_seed=57)
        await publish_fleet(bus, newcomer, topic=topic)
        (new_mn,) = newcomer.devices
        await platform.wait_until(lambda: platform.decoded(new_mn) != [])
        assert len(started) == 1 and new_mn in started[0].devices
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await bus.stop()
    assert all(d.link is None for d in started[0].devices.values()), "connections closed"


async def _frames_of_a_run(mini_platform: Any, seed: int) -> dict[tuple[str, str], bytes]:
    platform = await mini_platform().start()
    try:
        fleet = Fleet.synthetic(3, circuits=(2, 5), seed=seed)
        faults = FaultConfig(
            shares={"garbage": 0.34, "split_packets": 0.34, "constant_power": 0.34}
        )
        sim = Simulator(
            fleet,
            port=platform.port,
            faults=faults,
            clock=SimClock.fast(START),
            settings=DeviceSettings(sample_s=30),
        )
        assert await sim.run(timedelta(hours=8), drain_timeout=20)
        return {(f.frame.mn, f.frame.qn): f.raw for f in platform.frames}
    finally:
        await platform.stop_listening()


async def test_same_seed_same_frames_other_seed_other_data(mini_platform: Any) -> None:
    first = await _frames_of_a_run(mini_platform, 59)
    second = await _frames_of_a_run(mini_platform, 59)
    assert len(first) > 1000
    assert first == second
    other = await _frames_of_a_run(mini_platform, 60)
    assert set(other.values()).isdisjoint(first.values())


def test_a_fleet_registered_with_one_password_is_read_back_with_it() -> None:
    fleet = Fleet.synthetic(3, circuits=2, seed=65, password="135790")
    view = RegistryView()
    view.apply_all(fleet.registry_changes())
    assert Fleet.from_view(view, city_seed=65, password="135790").devices == fleet.devices
    by_city_seed = Fleet.from_view(view, city_seed=65)
    assert {d.password for d in by_city_seed.devices.values()} == {
        device_password(65, mn) for mn in fleet.devices
    }


def test_a_power_cut_goes_to_an_enterprise_without_faults() -> None:
    """Two-logger enterprises: the power cut prefers an enterprise none of whose loggers has
    a fault, so that its effects are its own."""
    from dataclasses import replace

    from ecowatt_simulator import FaultConfig
    from ecowatt_simulator.faults import FaultPlan

    base = Fleet.synthetic(6, circuits=4, seed=9)
    devices = {}
    for mn, device in base.devices.items():  # controls on a second logger
        other = mn[:9] + "F" + mn[10:]
        controls = tuple(
            replace(p, device_mn=other, circuit=i)
            for i, p in enumerate((p for p in device.points if p.point_type == "control"), 1)
        )
        devices[mn] = replace(
            device, points=tuple(p for p in device.points if p.point_type != "control")
        )
        devices[other] = replace(device, mn=other, points=controls)
    fleet = Fleet(devices, base.enterprises, base.facilities, base.groups, {}, 9, 9)
    config = FaultConfig(shares={"control_off": 0.8, "power_cut": 0.1})
    for seed in range(5):
        plan = FaultPlan(fleet, config, seed=seed)
        assignments = plan.assignments()
        faulty = {
            fleet.devices[mn].enterprise_id
            for mn, kinds in assignments.items()
            if "control_off" in kinds
        }
        (cut,) = [mn for mn, kinds in assignments.items() if "power_cut" in kinds]
        assert fleet.devices[cut].enterprise_id not in faulty, seed


def test_meters_behind_transformers_send_secondary_values() -> None:
    """The registry's CT/PT ratios reach the meters: what a meter sends × CT × PT is what
    flows (validation multiplies back). Found in `make run`: sending primary values, every
    stand-by production line of the city read as running at night (×CT) and raised R1."""
    fleet = Fleet.synthetic(20, circuits=4, seed=31, transformers=True)
    points = [p for d in fleet.devices.values() for p in d.points]
    assert {p.ct_ratio for p in points} - {1.0}  # big circuits have CTs, small ones not
    assert 1.0 in {p.ct_ratio for p in points}
    read_back = Fleet.from_snapshots(fleet.snapshots(password_hash="x"), city_seed=31)
    assert {
        p.id: (p.ct_ratio, p.pt_ratio) for d in read_back.devices.values() for p in d.points
    } == {p.id: (p.ct_ratio, p.pt_ratio) for p in points}
    sim = Simulator(fleet, clock=SimClock(START))
    at = (START + timedelta(hours=3)).timestamp()  # 11:00 in Xi'an: production runs
    for point in points:
        primary, sent = sim.model.primary_sample(point, at), sim.model.sample(point, at)
        ratio = point.ct_ratio * point.pt_ratio
        assert sent.power * ratio == pytest.approx(primary.power)
        assert sent.ia * point.ct_ratio == pytest.approx(primary.ia)
        assert sent.ua * point.pt_ratio == pytest.approx(primary.ua)
