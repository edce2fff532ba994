"""History: rollups under redelivery and disorder, retention, curves with gaps, timelines."""

from __future__ import annotations

import csv
import io
import random
import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from city import TZ, SmallCity, local, today
from conftest import Harness
from ecowatt_kernel.db import Database, scratch_database
from ecowatt_kernel.excel import load_workbook_bytes
from ecowatt_kernel.identity import Role
from ecowatt_reporting.history.partitions import POINT_SAMPLE_PARTS
from ecowatt_reporting.history.service import HistoryWriter, Maintenance, rollup_differences
from ecowatt_reporting.service import SERVICE
from sqlalchemy import text


def _readings(city: SmallCity, day: datetime) -> list:
    """Four hours around local midnight for X1 and X2: real-time every minute, minute data
    every 10 minutes, seeded random values."""
    rng = random.Random(20261207)
    out = []
    start = day - timedelta(hours=2)
    for point in ("X1", "X2"):
        for minute in range(240):
            at = start + timedelta(minutes=minute)
            out.append(
                city.reading(
                    point,
                    at,
                    power=round(rng.uniform(5, 50), 3),
                    energy=round(rng.uniform(0.05, 0.9), 4),
                    valid=rng.random() > 0.1,
                    current_a=round(rng.uniform(1, 9), 2),
                )
            )
            if minute % 10 == 0:
                out.append(
                    city.reading(
                        point,
                        at,
                        interval="minute",
                        power=round(rng.uniform(5, 50), 3),
                        energy=round(rng.uniform(0.5, 5), 4),
                        **{"active_power_kw:max": 60.0, "active_power_kw:min": 1.0},
                    )
                )
    return out


def _expected_daily(readings: list) -> dict[tuple[str, object], dict[str, float]]:
    """Hand computation of the daily rollup: energy in the local day the interval ended in,
    samples and valid power by the sample's own local day."""
    out: dict[tuple[str, object], dict[str, float]] = defaultdict(
        lambda: {"energy": 0.0, "samples": 0, "valid": 0, "power_sum": 0.0, "max": 0.0}
    )
    for r in readings:
        shift = timedelta(microseconds=1) if r.interval == "realtime" else timedelta(0)
        energy_day = (r.data_time - shift).astimezone(TZ).date()
        out[(r.point_id, energy_day)]["energy"] += r.values["energy_delta_kwh"]
        row = out[(r.point_id, r.data_time.astimezone(TZ).date())]
        row["samples"] += 1
        if r.valid:
            row["valid"] += 1
            row["power_sum"] += r.values["active_power_kw"]
            row["max"] = max(row["max"], r.values.get("active_power_kw:max", 0.0),
                             r.values["active_power_kw"])  # fmt: skip
    return out


async def test_rollups_equal_recomputation_after_redelivery_and_disorder(
    harness: Harness, city: SmallCity
) -> None:
    h = harness
    midnight = local(today() - timedelta(days=5))
    readings = _readings(city, midnight)
    rng = random.Random(7)
    shuffled = readings[:]
    rng.shuffle(shuffled)
    redelivered = rng.sample(readings, len(readings) // 2)
    await h.publish(shuffled, h.settings.reporting_points_topic)
    await h.publish(redelivered, h.settings.reporting_points_topic)
    await h.publish(shuffled[:300], h.settings.reporting_points_topic)
    ids = [city.e("X1"), city.e("X2")]
    count_sql = (
        "SELECT count(*) FROM point_sample WHERE point_id = ANY(CAST(:ids AS text[])) "
        "AND data_time >= :s AND data_time < :e"
    )
    window = {"s": midnight - timedelta(hours=2), "e": midnight + timedelta(hours=2)}
    await h.wait_rows(count_sql, len(readings), ids=ids, **window)
    # Copies still in flight after this point insert nothing, so they cannot change sums.
    stored_once = await h.scalar(count_sql, ids=ids, **window)
    assert stored_once == len(readings)

    async with h.runtime.database.session() as session:
        for table in ("rollup_15m", "rollup_1h", "rollup_1d"):
            problems = await rollup_differences(
                session,
                table=table,
                timezone="Asia/Shanghai",
                point_ids=ids,
                since=midnight - timedelta(days=1),
                until=midnight + timedelta(days=1),
            )
            assert problems == [], problems[:5]
        rows = await session.execute(
            text(
                "SELECT point_id, day, energy_kwh, samples, valid_samples, power_sum, power_max "
                "FROM rollup_1d WHERE point_id = ANY(CAST(:ids AS text[]))"
            ),
            {"ids": ids},
        )
        stored = {(r.point_id, r.day): r for r in rows}
    expected = _expected_daily(readings)
    assert set(stored) == set(expected)
    for key, want in expected.items():
        got = stored[key]
        assert abs(got.energy_kwh - want["energy"]) < 1e-6, key
        assert got.samples == want["samples"], key
        assert got.valid_samples == want["valid"], key
        assert abs(got.power_sum - want["power_sum"]) < 1e-6, key
        assert abs(got.power_max - want["max"]) < 1e-9, key


async def test_retention_drops_whole_partitions_only(database_url: str) -> None:
    async with scratch_database(database_url) as url:
        database = Database(url, schema="reporting", pool_size=2)
        try:
            assert SERVICE.migrations is not None
            await database.migrate(SERVICE.migrations)
            now = datetime.now(UTC)
            start_today = POINT_SAMPLE_PARTS.start_of(now)
            writer = HistoryWriter(
                database=database, timezone="Asia/Shanghai", raw_retention_days=400,
                future_tolerance_h=26,
            )  # fmt: skip
            city = SmallCity()
            readings = [
                city.reading("X1", start_today - timedelta(days=d, hours=h), power=10.0, energy=1.0)
                for d in range(0, 6)
                for h in (-1, 0, 6, 12, 18)
                if start_today - timedelta(days=d, hours=h) < now
            ]
            assert (await writer.write(readings)).inserted == len(readings)
            async with database.session() as session:
                days_before = await session.scalar(text("SELECT count(*) FROM rollup_1d"))
            horizon = start_today - timedelta(days=3)
            result = await Maintenance(
                database=database, raw_retention_days=3, rollup_retention_days=0, ahead_days=2,
                clock=lambda: now,
            ).run()  # fmt: skip
            expected_drops = {
                POINT_SAMPLE_PARTS.name_of(POINT_SAMPLE_PARTS.start_of(r.data_time))
                for r in readings
                if POINT_SAMPLE_PARTS.start_of(r.data_time) + timedelta(days=1) <= horizon
            }
            assert len(expected_drops) == 3
            assert set(result["dropped"]) == expected_drops
            async with database.session() as session:
                kept = await session.scalar(text("SELECT count(*) FROM point_sample"))
                oldest = await session.scalar(text("SELECT min(data_time) FROM point_sample"))
                days_after = await session.scalar(text("SELECT count(*) FROM rollup_1d"))
            # Whole days were dropped: every row at or after the horizon is still there, and
            # the partition that holds the horizon kept all its rows.
            assert kept == sum(1 for r in readings if r.data_time >= horizon)
            assert oldest == horizon
            assert days_after == days_before, "rollups are kept"
            # A reading older than the retention is refused and counted, not stored.
            strict = HistoryWriter(
                database=database, timezone="Asia/Shanghai", raw_retention_days=3,
                future_tolerance_h=26, clock=lambda: now,
            )  # fmt: skip
            late = city.reading("X1", horizon - timedelta(hours=1), power=1.0, energy=0.1)
            future = city.reading("X1", now + timedelta(days=3), power=1.0, energy=0.1)
            outcome = await strict.write([late, future])
            assert outcome.inserted == 0
            assert outcome.rejected == {"too_old": 1, "future": 1}
            async with database.session() as session:
                reasons = dict(
                    (await session.execute(text("SELECT reason, count FROM history_reject"))).all()
                )
            assert reasons == {"too_old": 1, "future": 1}
        finally:
            await database.dispose()


async def test_series_with_gaps_on_one_axis(harness: Harness, city: SmallCity) -> None:
    h = harness
    day = today() - timedelta(days=6)
    start = local(day, 10)
    readings = []
    for minute in range(60):
        at = start + timedelta(minutes=minute)
        if not 20 <= minute < 30:
            readings.append(city.reading("X1", at, power=40.0 + minute, energy=0.5))
        readings.append(city.reading("X2", at, power=20.0, energy=0.3, valid=not 40 <= minute < 45))
    await h.publish(readings, h.settings.reporting_points_topic)
    await h.wait_rows(
        "SELECT count(*) FROM point_sample WHERE point_id = ANY(CAST(:ids AS text[])) "
        "AND data_time >= :s AND data_time < :e",
        len(readings),
        ids=[city.e("X1"), city.e("X2")],
        s=start,
        e=start + timedelta(hours=1),
    )
    headers = h.headers(Role.CITY_SUPERVISOR)
    window = {"from": start.isoformat(), "to": (start + timedelta(hours=1)).isoformat()}
    r = await h.client.get(f"/series/group/{city.e('G9')}", params=window, headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["resolution"] == "raw" and body["step_s"] == 60
    assert len(body["times"]) == 60
    production, control = body["series"]
    assert (production["role"], control["role"]) == ("production", "control")
    assert [i for i, v in enumerate(production["values"]) if v is None] == list(range(20, 30))
    assert [i for i, v in enumerate(control["values"]) if v is None] == list(range(40, 45))
    assert production["values"][5] == 45.0 and control["values"][5] == 20.0

    r = await h.client.get(
        f"/series/group/{city.e('G9')}", params={**window, "resolution": "15m"}, headers=headers
    )
    quarter = r.json()
    assert quarter["step_s"] == 900 and len(quarter["times"]) == 4
    # 10:15–10:30 has X1 samples at minutes 15–19 only: their mean, not a zero-filled one.
    assert quarter["series"][0]["values"][1] == sum(40.0 + m for m in range(15, 20)) / 5

    r = await h.client.get(
        f"/series/enterprise/{city.e('E9')}",
        params={**window, "quantity": "energy", "resolution": "1h"},
        headers=headers,
    )
    energy = {line["key"]: line["values"] for line in r.json()["series"]}
    # Real-time energy belongs to the interval that ends at the reading: 10:00's reading
    # closes the 09:00 hour, 11:00's reading (absent) would close the 10:00 hour.
    assert energy[city.e("X1")] == [round(0.5 * 49, 4)]
    assert energy[city.e("X2")] == [round(0.3 * 59, 4)]

    r = await h.client.get(
        f"/series/point/{city.e('X1')}", params={**window, "format": "csv"}, headers=headers
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.text.lstrip("\ufeff"))))
    assert rows[0][0] == "时间" and "产污设施" in rows[0][1]
    assert len(rows) == 61 and rows[21][1] == ""
    r = await h.client.get(
        f"/series/group/{city.e('G9')}", params={**window, "format": "xlsx"}, headers=headers
    )
    sheet_rows = list(load_workbook_bytes(r.content)["曲线"].iter_rows(values_only=True))
    assert len(sheet_rows) == 61 and sheet_rows[21][1] is None and sheet_rows[21][2] == 20.0

    outsider = h.headers(Role.DISTRICT_OFFICER, districts=["610113"])
    r = await h.client.get(f"/series/group/{city.e('G9')}", params=window, headers=outsider)
    assert r.status_code == 404
    r = await h.client.get(
        f"/series/point/{city.e('X1')}",
        params={"from": start.isoformat(), "to": (start + timedelta(days=40)).isoformat(),
                "resolution": "raw"},
        headers=headers,
    )  # fmt: skip
    assert r.status_code == 422 and "31 days" in r.json()["detail"]


async def test_timeline_slots_late_states_in_place(harness: Harness, city: SmallCity) -> None:
    h = harness
    day = today() - timedelta(days=7)
    running, standby, stopped = local(day, 8), local(day, 10), local(day, 12)
    await h.publish(
        [city.state("F1P", "running", running), city.state("F1P", "stopped", stopped)],
        h.settings.reporting_states_topic,
    )
    await h.wait_rows(
        "SELECT count(*) FROM state_interval WHERE subject_id = :s", 2, s=city.e("F1P")
    )
    await h.publish([city.state("F1P", "standby", standby)], h.settings.reporting_states_topic)
    await h.publish(  # redelivered
        [city.state("F1P", "running", running)], h.settings.reporting_states_topic
    )
    alarm = city.alarm("TL1", "E1", "R1", local(day, 9), level=2)
    await h.publish([alarm], h.settings.reporting_alarms_topic)
    await h.wait_rows("SELECT count(*) FROM alarm_record WHERE alarm_id = :a", 1, a=alarm.alarm_id)

    async def settled() -> bool:
        return (
            await h.scalar(
                "SELECT ended_at FROM state_interval WHERE subject_id = :s AND started_at = :t",
                s=city.e("F1P"),
                t=running,
            )
        ) == standby

    await h.wait_for(settled)
    r = await h.client.get(
        f"/timelines/enterprises/{city.e('E1')}",
        params={"from": local(day).isoformat(), "to": local(day, 23).isoformat()},
        headers=h.headers(Role.ENTERPRISE_USER, enterprises=[city.e("E1")]),
    )
    assert r.status_code == 200, r.text
    intervals = r.json()["intervals"]
    states = [
        (i["label"], i["started_at"], i["ended_at"])
        for i in intervals
        if i["kind"] == "state" and i["subject_id"] == city.e("F1P")
    ]
    iso = lambda t: t.isoformat().replace("+00:00", "Z")  # noqa: E731
    assert states == [
        ("运行", iso(running), iso(standby)),
        ("待机", iso(standby), iso(stopped)),
        ("停运", iso(stopped), None),
    ]
    alarms = [i for i in intervals if i["kind"] == "alarm"]
    assert alarms and alarms[0]["detail"]["level_name"] == "较重"


def test_fast_decoding_agrees_with_the_contract(city: SmallCity) -> None:
    """The history reads `telemetry.point` envelopes without pydantic; whatever it accepts
    must read exactly as the contract does, and anything odd goes to the strict decoder."""
    import pytest
    from ecowatt_kernel.bus import Record
    from ecowatt_kernel.contracts import ContractError, decode, encode
    from ecowatt_reporting.history.service import fast_sample

    def record(message: object) -> Record:
        return Record("t", 0, 0, message.key, message.value, message.headers, 0)  # type: ignore[attr-defined]

    at = local(today(), 3)
    for reading in (
        city.reading("X1", at, power=1.5, energy=0.25, current_a=2.0),
        city.reading("X2", at, power=3.0, valid=False, interval="minute"),
    ):
        rec = record(encode(reading))
        fast = fast_sample(rec)
        strict = decode(rec).data
        assert fast is not None
        for name in ("point_id", "enterprise_id", "data_time", "interval", "values", "quality",
                     "valid"):  # fmt: skip
            assert getattr(fast, name) == getattr(strict, name), name
    good = record(encode(city.reading("X1", at, power=1.0)))
    broken = good.value.replace(b'"active_power_kw":1.0', b'"active_power_kw":"1,0"')
    odd = Record("t", 0, 0, good.key, broken, good.headers, 0)
    assert fast_sample(odd) is None
    with pytest.raises(ContractError):
        decode(odd)
    naive = re.sub(rb'("data_time":"[^"]*)Z"', rb'\1"', good.value)
    assert naive != good.value
    assert fast_sample(Record("t", 0, 0, good.key, naive, good.headers, 0)) is None
    other = Record("t", 0, 0, good.key, good.value, (("event-type", b"alarm"),), 0)
    assert fast_sample(other) is None
