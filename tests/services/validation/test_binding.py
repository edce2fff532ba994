"""Binding through the real bus (in-process and Kafka) and the real database."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from ecowatt_kernel.bus import Bus
from ecowatt_validation import rules as R
from ecowatt_validation.binding import StateConflict
from harness import (
    DAY,
    Harness,
    complete_enterprise,
    device,
    local,
    meter,
    point,
    reading,
)
from sqlalchemy import text


async def test_ct_pt_profile_and_energy_deltas(harness: Harness) -> None:
    await harness.archive(
        [*complete_enterprise(), point("E1-PC", "control", "MNE1", 3, ct_ratio=40.0, pt_ratio=10.0)]
    )
    t0 = local(DAY, 8)
    items = {
        **meter(1, 50.0, 1000.0),
        **meter(3, 0.125, 20.5),
        "xe1103": {"Rtd": "1.5", "Flag": "N"},
        "xe2103": {"Rtd": "22.0", "Flag": "N"},
        "xe0303": {"Rtd": "0.93", "Flag": "N"},
    }
    items2 = {**meter(1, 51.0, 1001.0), **meter(3, 0.130, 20.75)}
    await harness.send(
        [reading("MNE1", t0, items), reading("MNE1", t0 + timedelta(minutes=1), items2)]
    )
    points = [p for p in harness.published_points() if p.point_id == "E1-PC"]
    assert len(points) == 2
    first, second = points
    assert first.values["active_power_kw"] == pytest.approx(0.125 * 400)
    assert first.values["current_a:A"] == pytest.approx(1.5 * 40)
    assert first.values["voltage_v:A"] == pytest.approx(22.0 * 10)
    assert first.values["power_factor"] == pytest.approx(0.93)
    assert "energy_delta_kwh" not in first.values, "the first counter reading is a baseline"
    assert second.values["energy_delta_kwh"] == pytest.approx(0.25 * 400)
    assert first.valid and second.valid and first.interval == "realtime" and first.circuit == 3
    assert second.source_key and second.enterprise_id == "E1"
    row = await harness.daily_row("E1-PC")
    assert row.energy_kwh == pytest.approx(100.0) and row.samples == 2 and row.valid_samples == 2
    assert row.p_max == pytest.approx(0.130 * 400)


async def test_duplicates_do_not_double_count(harness: Harness) -> None:
    await harness.archive(complete_enterprise())
    t0 = local(DAY, 9)
    batch = [
        reading("MNE1", t0 + timedelta(minutes=i), meter(1, 10.0 + i, 100.0 + i)) for i in range(5)
    ]
    await harness.send(batch)
    await harness.send(batch[1:4])  # redelivered
    row = await harness.daily_row("E1-PT")
    assert row.samples == 5 and row.energy_kwh == pytest.approx(4.0)
    assert len([p for p in harness.published_points() if p.point_id == "E1-PT"]) == 5


async def test_day_rows_store_exactly_the_floats_summed_in_memory(harness: Harness) -> None:
    # Arrays travel to PostgreSQL as text: exponent forms (1e+17) and 17-digit fractions must
    # read back as the same float8, or a re-loaded day would drift from the one in memory.
    await harness.archive(complete_enterprise())
    t0 = local(DAY, 10, 59)
    counters = [100.0, 100.01, 1e17 + 100.03, 1e17 + 100.07]
    await harness.send(
        [
            reading("MNE1", t0 + timedelta(minutes=i), meter(1, 10.0, counter))
            for i, counter in enumerate(counters)
        ]
    )
    in_memory = harness.binder.cache["E1-PT"].days[DAY]
    row = await harness.daily_row("E1-PT")
    assert any("e+" in repr(v) for v in in_memory.hourly_kwh), "an exponent form is stored"
    assert list(row.hourly_kwh) == in_memory.hourly_kwh
    assert row.energy_kwh == in_memory.energy_kwh and row.deltas == 3


async def test_a_state_moved_on_by_another_consumer_fails_the_batch_and_changes_nothing(
    harness: Harness,
) -> None:
    await harness.archive(complete_enterprise())
    t0 = local(DAY, 9)
    await harness.send([reading("MNE1", t0, meter(1, 10.0, 100.0))])
    async with harness.database.transaction() as session:  # another consumer wrote it
        await session.execute(
            text("UPDATE validation.point_state SET rev = rev + 1 WHERE point_id = 'E1-PT'")
        )
    second = reading("MNE1", t0 + timedelta(minutes=1), meter(1, 11.0, 101.0))
    with pytest.raises(StateConflict):
        await harness.binder.process([second])
    row = await harness.daily_row("E1-PT")
    assert row.samples == 1 and row.energy_kwh == 0.0, "the day rows were rolled back too"
    assert "E1-PT" not in harness.binder.cache, "the stale state is dropped"
    await harness.binder.process([second])  # the retry reloads the state and goes through
    row = await harness.daily_row("E1-PT")
    assert row.samples == 2 and row.energy_kwh == pytest.approx(1.0)


async def test_counter_reset_and_rollover(harness: Harness) -> None:
    await harness.archive(complete_enterprise())
    t0 = local(DAY, 10)
    counters = [99_990.0, 99_995.0, 3.0, 8.0, 500.0, 2.0, 4.0]  # roll-over at 100,000; then a reset
    await harness.send(
        [
            reading("MNE1", t0 + timedelta(minutes=i), meter(1, 20.0, c))
            for i, c in enumerate(counters)
        ]
    )
    row = await harness.daily_row("E1-PT")
    # 5 + (100000-99995+3)=8 + 5 + 492 + (reset: excluded) + 2
    assert row.energy_kwh == pytest.approx(5 + 8 + 5 + 492 + 2)
    assert row.rollovers == 1 and row.resets == 1 and row.neg_energy_events == 1
    pts = [p for p in harness.published_points() if p.point_id == "E1-PT"]
    assert "counter_rollover" in pts[2].quality["energy_total_kwh"] and pts[2].valid
    assert "counter_reset" in pts[5].quality["energy_total_kwh"] and not pts[5].valid
    assert "energy_delta_kwh" not in pts[5].values
    assert await harness.subjects(R.NEGATIVE_ENERGY) == {"E1-PT"}


async def test_flags_validity_and_unknown_points(harness: Harness) -> None:
    await harness.archive(complete_enterprise())
    await harness.archive([device("MNX", "E1")])
    t0 = local(DAY, 11)
    await harness.send(
        [
            reading("MNE1", t0, {**meter(1, 10.0, 50.0, flag="D"), **meter(7, 3.0, None)}),
            reading(
                "MNE1", t0 + timedelta(minutes=1), {**meter(1, 10.0, 50.5), "a01012": {"Rtd": "3"}}
            ),
            reading("UNKNOWN-MN", t0, meter(1, 1.0, 1.0)),
        ]
    )
    pts = [p for p in harness.published_points() if p.point_id == "E1-PT"]
    assert not pts[0].valid and pts[0].quality["active_power_kw"] == ["flag:D"]
    assert pts[1].valid
    row = await harness.daily_row("E1-PT")
    assert row.samples == 2 and row.valid_samples == 1
    async with harness.database.session() as session:
        from sqlalchemy import text

        rows = {
            (r.mn, r.reason, r.detail): r.count
            for r in await session.execute(text("SELECT * FROM validation.unbound_readings"))
        }
    assert rows[("UNKNOWN-MN", "unknown_device", "")] == 1
    assert rows[("MNE1", "unknown_circuit", "7")] == 1  # counted per reading
    assert rows[("MNE1", "unknown_code", "a01012-Rtd")] == 1
    assert await harness.subjects(R.UNBOUND_DATA) == {"MNE1"}


@pytest.mark.parametrize("backend", ["kafka"])
async def test_binding_through_kafka(backend: str, kafka_bus: Bus, empty_database: str) -> None:
    h = await Harness.start(kafka_bus, empty_database)
    try:
        await h.archive(complete_enterprise())
        t0 = local(DAY, 12)
        batch = [
            reading("MNE1", t0 + timedelta(minutes=i), meter(1, 10.0, 100.0 + 2 * i))
            for i in range(10)
        ]
        await h.send(batch)
        await h.send(batch[:3])
        row = await h.daily_row("E1-PT")
        assert row.samples == 10 and row.energy_kwh == pytest.approx(18.0)
    finally:
        await h.stop()


@pytest.mark.parametrize("backend", ["kafka"])
async def test_binding_partitions_concurrently(
    backend: str, kafka_bus: Bus, empty_database: str
) -> None:
    """As the service subscribes (`bind_concurrent_partitions`): batches of different
    partitions bound at once give the same rows as one at a time."""
    h = await Harness.start(kafka_bus, empty_database)
    try:
        assert h.subscription is not None
        await h.subscription.stop()
        devices = [f"C{i}" for i in range(12)]
        await h.archive([s for d in devices for s in complete_enterprise(d)])

        async def handle(records: Any) -> None:
            await h.binder.handle(records)
            h.handled += len(records)

        h.subscription = await kafka_bus.subscribe(
            group=f"{h.settings.readings_topic}.concurrent",
            topics=[h.settings.readings_topic],
            handler=handle,
            max_batch=20000,
            concurrent_partitions=True,
        )
        t0 = local(DAY, 12)
        batch = [
            reading(f"MN{d}", t0 + timedelta(minutes=i), meter(1, 10.0, 100.0 + 2 * i))
            for i in range(10)
            for d in devices
        ]
        await h.send(batch)
        await h.send(batch[:30])  # redelivered
        for d in devices:
            row = await h.daily_row(f"{d}-PT")
            assert row.samples == 10 and row.energy_kwh == pytest.approx(18.0), d
    finally:
        await h.stop()
