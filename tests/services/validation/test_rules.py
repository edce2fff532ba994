"""Every rule: a positive case, a negative case and an edge case at its threshold.

Each test builds several enterprises in one archive (one per case), sends readings through
the bus, runs the checks, and asserts exactly which subjects were found.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from ecowatt_validation import rules as R
from ecowatt_validation.checks import ALSO_USED_BY_MAX, Checks
from harness import (
    DAY,
    Harness,
    complete_enterprise,
    device,
    enterprise,
    facility,
    local,
    meter,
    point,
    reading,
)


def one_point(eid: str, pid: str, point_type: str = "production", **kw: object) -> list[object]:
    mn = f"MN-{pid}"
    return [enterprise(eid), device(mn, eid), point(pid, point_type, mn, 1, eid, **kw)]


# ------------------------------------------------------------------------ archive rules


async def test_archive_completeness_rules(harness: Harness) -> None:
    snapshots = [
        *complete_enterprise("OK"),
        enterprise("NOPTS"),  # no point at all
        enterprise("DISABLED"),  # edge: only a disabled point
        device("MN-DIS", "DISABLED"),
        point("DIS-P", "total", "MN-DIS", 1, "DISABLED", status="disabled"),
        enterprise("SUSP", production_status="suspended"),  # suspended: not checked
        # no total point, production facility without a point (only a control point on it)
        enterprise("NOTOT"),
        facility("NOTOT-F1", "production", "NOTOT"),
        facility("NOTOT-F2", "control", "NOTOT"),
        device("MN-NT", "NOTOT"),
        point("NT-C", "control", "MN-NT", 1, "NOTOT", facility_id="NOTOT-F1"),
        point("NT-C2", "control", "MN-NT", 2, "NOTOT", facility_id="NOTOT-F2"),
    ]
    await harness.archive(snapshots)
    await harness.checks.check_archive(DAY)
    assert await harness.subjects(R.NO_MONITORING_POINT) == {"NOPTS", "DISABLED"}
    assert await harness.subjects(R.NO_TOTAL_POINT) == {"NOPTS", "DISABLED", "NOTOT"}
    assert await harness.subjects(R.PRODUCTION_UNMONITORED) == {"NOPTS", "DISABLED", "NOTOT"}
    assert await harness.subjects(R.CONTROL_UNMONITORED) == {"NOPTS", "DISABLED"}
    [row] = [
        r for r in await harness.findings_of(R.PRODUCTION_UNMONITORED) if r.subject_id == "NOTOT"
    ]
    assert row.evidence["problem"] == "facility_without_point"
    assert row.evidence["facilities"] == [{"id": "NOTOT-F1", "name": "NOTOT-F1"}]


async def test_an_archive_is_judged_once_it_has_settled(harness: Harness) -> None:
    """An enterprise entered piece by piece is judged after `settle_s` of quiet (or when
    declared complete): nothing opens and resolves while it is half-built."""
    h = harness
    checks = Checks(
        database=h.database,
        view=h.view,
        findings=h.findings,
        rules=h.rulebook,
        timezone=h.settings.timezone,
        clock=lambda: h.now[0],
        settle_s=600,
    )
    await h.archive([enterprise("HALF")])
    assert await checks.check_archive(DAY) == 0, "changed just now: not judged yet"
    h.now[0] += timedelta(minutes=5)
    # facilities, device, points come later; another enterprise is entered meanwhile
    await h.archive([*complete_enterprise("HALF")[1:], enterprise("DECLARED")])
    h.now[0] += timedelta(minutes=9)
    await checks.check_archive(DAY)
    assert await h.subjects(R.NO_MONITORING_POINT) == set(), "HALF changed 9 minutes ago"
    checks.complete("DECLARED")
    await checks.check_archive(DAY)
    assert await h.subjects(R.NO_MONITORING_POINT) == {"DECLARED"}, "declared complete: judged"
    h.now[0] += timedelta(minutes=2)
    await checks.check_archive(DAY)
    assert await h.subjects(R.NO_MONITORING_POINT) == {"DECLARED"}, "HALF settled: complete"
    events = [f for f in h.published_findings() if f.subject_id == "HALF"]
    assert events == [], "the half-built archive never opened (or resolved) a finding"


async def test_threshold_rules(harness: Harness) -> None:
    await harness.archive(
        [
            enterprise("E1"),
            device("MN1"),
            point("C-OK", "control", "MN1", 1),
            point("C-NONE", "control", "MN1", 2, start_stop_kw=None),
            point("C-ZERO", "control", "MN1", 3, start_stop_kw=0.0),  # edge: ≤ 0
            point("C-TINY", "control", "MN1", 4, start_stop_kw=0.001),  # edge: just above
            point("K-ZERO", "combined", "MN1", 5, start_stop_kw=0.0, is_key=True),
            point("NK-ZERO", "combined", "MN1", 6, start_stop_kw=0.0, is_key=False),
            point("P-NONE", "production", "MN1", 7, start_stop_kw=None),
            point("P-OK", "production", "MN1", 8, start_stop_kw=20.0),
            point("C-OFF", "control", "MN1", 9, start_stop_kw=None, status="disabled"),
        ]
    )
    await harness.checks.check_archive(DAY)
    assert await harness.subjects(R.CONTROL_THRESHOLD_MISSING) == {"C-NONE", "C-ZERO", "K-ZERO"}
    assert await harness.subjects(R.PRODUCTION_THRESHOLD_MISSING) == {"P-NONE", "K-ZERO", "NK-ZERO"}


async def test_industry_and_credit_code_rules(harness: Harness) -> None:
    await harness.archive(
        [
            enterprise("OK"),
            enterprise("DIV", industry_code="30", credit_code=""),
            enterprise("GRP", industry_code="301", credit_code="   "),  # edge: blank is empty
            enterprise("NONE", industry_code=None, credit_code=None),
            enterprise("BAD", credit_code="91350100M000100Y44"),  # wrong check digit
            enterprise("DUP1", credit_code="911100007109288314"),  # edge: valid but shared
            enterprise("DUP2", credit_code="911100007109288314"),
            enterprise("CHARS", credit_code="91350100M000100I43"),  # I is not allowed
        ]
    )
    await harness.checks.check_archive(DAY)
    assert await harness.subjects(R.INDUSTRY_NOT_CLASS) == {"DIV", "GRP", "NONE"}
    assert await harness.subjects(R.CREDIT_CODE_EMPTY) == {"DIV", "GRP", "NONE"}
    assert await harness.subjects(R.CREDIT_CODE_INVALID) == {"BAD", "DUP1", "DUP2", "CHARS"}
    (dup1,) = [
        f for f in await harness.findings_of(R.CREDIT_CODE_INVALID) if f.subject_id == "DUP1"
    ]
    assert dup1.evidence["also_used_by"] == ["DUP2"]
    assert dup1.evidence["also_used_by_count"] == 1


async def test_a_credit_code_shared_by_many_names_a_few_and_counts_the_rest(
    harness: Harness,
) -> None:
    sharers = [f"S{i:02d}" for i in range(ALSO_USED_BY_MAX + 5)]
    await harness.archive([enterprise(e, credit_code="911100007109288314") for e in sharers])
    await harness.checks.check_archive(DAY)
    findings = await harness.findings_of(R.CREDIT_CODE_INVALID)
    assert {f.subject_id for f in findings} == set(sharers)
    for finding in findings:
        named = finding.evidence["also_used_by"]
        assert len(named) == ALSO_USED_BY_MAX
        assert finding.subject_id not in named and set(named) <= set(sharers)
        assert finding.evidence["also_used_by_count"] == len(sharers) - 1


# --------------------------------------------------------------------------- data rules


async def test_no_data_after_commissioning(harness: Harness) -> None:
    end = local(DAY + timedelta(days=1))
    await harness.archive(
        [
            *one_point("A", "SILENT"),
            *one_point("B", "TALKS"),
            *one_point("C", "EDGE-HIT", commissioned_at=end - timedelta(hours=2)),
            *one_point(
                "D", "EDGE-NO", commissioned_at=end - timedelta(hours=2) + timedelta(seconds=1)
            ),
            *one_point("F", "FLAGGED"),  # data, but none valid
        ]
    )
    await harness.send(
        [
            reading("MN-TALKS", local(DAY, 9), meter(1, 10.0, 1.0)),
            reading("MN-FLAGGED", local(DAY, 9), meter(1, 10.0, 1.0, flag="D")),
        ]
    )
    await harness.run_day()
    assert await harness.subjects(R.NO_DATA_AFTER_COMMISSIONING) == {
        "SILENT",
        "EDGE-HIT",
        "FLAGGED",
    }


async def _counter_day(h: Harness, mn: str, counters: list[float], power: float = 50.0) -> None:
    await h.send(
        [
            reading(mn, local(DAY, 8) + timedelta(minutes=i), meter(1, power, c))
            for i, c in enumerate(counters)
        ]
    )


async def test_negative_energy(harness: Harness) -> None:
    await harness.archive(
        [
            *one_point("A", "BACK"),
            *one_point("B", "FWD"),
            *one_point("C", "EDGE"),
            *one_point("D", "EDGE2"),
        ]
    )
    await _counter_day(harness, "MN-BACK", [100.0, 99.0, 99.5])
    await _counter_day(harness, "MN-FWD", [100.0, 100.5, 101.0])
    await _counter_day(harness, "MN-EDGE", [100.0, 99.99, 100.5])  # −0.01: not below −0.01
    await _counter_day(harness, "MN-EDGE2", [100.0, 99.98, 100.5])
    await harness.send(
        [reading("MN-FWD", local(DAY, 9), {"xe0201": {"Cou": "-3.0", "Flag": "N"}}, cn="2051")]
    )
    await harness.run_day()
    assert await harness.subjects(R.NEGATIVE_ENERGY) == {"BACK", "EDGE2", "FWD"}
    [fwd] = [r for r in await harness.findings_of(R.NEGATIVE_ENERGY) if r.subject_id == "FWD"]
    assert fwd.evidence["events"] == 1


async def test_daily_energy_above_25_times_max_load(harness: Harness) -> None:
    await harness.archive(
        [
            *one_point("A", "HIGH"),
            *one_point("B", "OK"),
            *one_point("C", "EDGE"),
            *one_point("D", "NOPOWER", rated_kw=None, max_load_kw=None),
        ]
    )
    await _counter_day(harness, "MN-HIGH", [0.0, 2600.0], power=100.0)
    await _counter_day(harness, "MN-OK", [0.0, 2400.0], power=100.0)
    await _counter_day(harness, "MN-EDGE", [0.0, 2500.0], power=100.0)  # exactly 25 ×: not above
    await _counter_day(harness, "MN-NOPOWER", [0.0, 5.0], power=0.0)  # energy without power
    await harness.run_day()
    assert await harness.subjects(R.ENERGY_GT_25X_MAX_LOAD) == {"HIGH", "NOPOWER"}


async def test_abnormal_large_energy(harness: Harness) -> None:
    # 12-hour sampling: two samples a day make a complete day; deltas of ~100 kWh a day.
    kw = {"expected_interval_s": 43200, "rated_kw": 1000.0}
    await harness.archive(
        [
            *one_point("A", "SPIKE", **kw),
            *one_point("B", "NORMAL", **kw),
            *one_point("C", "SHORT", **kw),
            *one_point("D", "HOURLY", expected_interval_s=3600, rated_kw=10.0),
            *one_point("E", "GAP", expected_interval_s=3600, rated_kw=10.0),
        ]
    )
    history = [100.0, 98.0, 103.0, 101.0, 99.0, 102.0, 97.0]
    for name, days, last in (
        ("SPIKE", history, 400.0),
        ("NORMAL", history, 150.0),
        ("SHORT", history[1:], 400.0),
    ):
        counter = 1000.0
        first_day = DAY - timedelta(days=len(days))
        rows = []
        for offset, energy in enumerate([*days, last]):
            day = first_day + timedelta(days=offset)
            rows.append(reading(f"MN-{name}", local(day, 0), meter(1, 5.0, counter)))
            counter += energy
            rows.append(reading(f"MN-{name}", local(day, 12), meter(1, 5.0, counter)))
        await harness.send(rows)
    await harness.send(
        [
            reading("MN-HOURLY", local(DAY, 0), meter(1, 5.0, 0.0)),
            reading("MN-HOURLY", local(DAY, 1), meter(1, 5.0, 13.0)),  # > 1.2 × 10 kWh in 1 h
            # 20 kWh over a 2-hour gap (the device was offline): 10 kWh an hour, no finding
            # (it was charged to the hour the device came back in, found by the pipeline test)
            reading("MN-GAP", local(DAY, 0), meter(1, 5.0, 0.0)),
            reading("MN-GAP", local(DAY, 2), meter(1, 5.0, 20.0)),
        ]
    )
    for offset in range(len(history), 0, -1):
        await harness.run_day(DAY - timedelta(days=offset))
    await harness.run_day()
    assert await harness.subjects(R.ABNORMAL_LARGE_ENERGY) == {"SPIKE", "HOURLY"}
    [spike] = [
        r for r in await harness.findings_of(R.ABNORMAL_LARGE_ENERGY) if r.subject_id == "SPIKE"
    ]
    assert spike.evidence["history"]["days"] == 7


async def test_sub_meters_exceed_total(harness: Harness) -> None:
    snapshots = []
    cases = {
        "OVER": 110.0,
        "OK": 100.0,
        "EDGE": 106.0,
        "EDGE2": 106.5,
    }  # limit 1.05 × 100 + 1 = 106
    for eid in cases:
        snapshots += [
            enterprise(eid),
            device(f"MN-{eid}", eid),
            point(f"{eid}-T", "total", f"MN-{eid}", 1, eid, expected_interval_s=43200),
            point(f"{eid}-P", "production", f"MN-{eid}", 2, eid, expected_interval_s=43200),
            point(f"{eid}-C", "control", f"MN-{eid}", 3, eid, expected_interval_s=43200),
        ]
    await harness.archive(snapshots)
    rows = []
    for eid, sub in cases.items():
        rows.append(
            reading(
                f"MN-{eid}",
                local(DAY, 0),
                {**meter(1, 10, 0.0), **meter(2, 5, 0.0), **meter(3, 5, 0.0)},
            )
        )
        rows.append(
            reading(
                f"MN-{eid}",
                local(DAY, 12),
                {**meter(1, 10, 100.0), **meter(2, 5, sub * 0.7), **meter(3, 5, sub * 0.3)},
            )
        )
    await harness.send(rows)
    await harness.run_day()
    assert await harness.subjects(R.SUB_METERS_EXCEED_TOTAL) == {"OVER", "EDGE2"}


async def test_negative_power(harness: Harness) -> None:
    await harness.archive([s for e in ("THREE", "TWO", "EDGE", "EDGE2") for s in one_point(e, e)])

    def run(mn: str, powers: list[float]) -> list[object]:
        return [
            reading(mn, local(DAY, 10) + timedelta(minutes=i), meter(1, p, None))
            for i, p in enumerate(powers)
        ]

    await harness.send(
        [
            *run("MN-THREE", [5, -1, -1, -1, 5]),
            *run("MN-TWO", [5, -1, -1, 5, -1, -1, 5] + [5.0] * 40),
            *run("MN-EDGE", [-0.5, -0.5, -0.5, 5]),  # limit is max(0.05, 0.5 % of 100 kW) = 0.5
            *run("MN-EDGE2", [-0.51, -0.51, -0.51, 5]),
        ]  # type: ignore[list-item]
    )
    await harness.run_day()
    assert await harness.subjects(R.NEGATIVE_POWER) == {"THREE", "EDGE2"}
    pts = [p for p in harness.published_points() if p.point_id == "THREE"]
    assert "negative_power" in pts[1].quality["active_power_kw"] and not pts[1].valid


async def test_constant_power(harness: Harness) -> None:
    kw = {"expected_interval_s": 900}
    await harness.archive(
        [s for e in ("STUCK", "VARIES", "SHORT", "ZERO") for s in one_point(e, e, **kw)]
    )

    def run(mn: str, values: list[float]) -> list[object]:
        return [
            reading(mn, local(DAY, 6) + timedelta(minutes=15 * i), meter(1, v, None))
            for i, v in enumerate(values)
        ]

    await harness.send(
        [
            *run("MN-STUCK", [42.0] * 17),  # 17 samples = 4 h
            *run("MN-VARIES", [42.0 + (i % 3) for i in range(17)]),
            *run("MN-SHORT", [42.0] * 16),  # edge: 3 h 45 min
            *run("MN-ZERO", [0.0] * 30),
        ]  # type: ignore[list-item]
    )
    await harness.run_day()
    assert await harness.subjects(R.CONSTANT_POWER) == {"STUCK"}
    pts = [p for p in harness.published_points() if p.point_id == "STUCK"]
    assert "constant_value" in pts[-1].quality["active_power_kw"] and not pts[-1].valid
    assert pts[0].valid


async def test_constant_current_counts_only_while_the_facility_runs(harness: Harness) -> None:
    """A stopped line's stand-by current, steady at the meter's 0.1 A for hours, is no
    frozen meter (found by the pipeline test on healthy simulated devices); the same steady
    current while the line runs is."""
    kw = {"expected_interval_s": 900}  # rated 100 kW: idle_kw = 2 kW
    await harness.archive([s for e in ("STANDBY", "FROZEN-I") for s in one_point(e, e, **kw)])

    def run(mn: str, powers: list[float], amps: str) -> list[object]:
        return [
            reading(
                mn,
                local(DAY, 6) + timedelta(minutes=15 * i),
                meter(1, p, None, xe1101=amps, xe1201=amps, xe1301=amps),
            )
            for i, p in enumerate(powers)
        ]

    await harness.send(
        [
            *run("MN-STANDBY", [0.40 + 0.01 * (i % 3) for i in range(30)], "1.3"),
            *run("MN-FROZEN-I", [42.0 + (i % 3) for i in range(30)], "63.0"),
        ]  # type: ignore[list-item]
    )
    await harness.run_day()
    assert await harness.subjects(R.CONSTANT_POWER) == {"FROZEN-I"}


async def test_constant_power_needs_a_value_its_resolution_can_show_varying(
    harness: Harness,
) -> None:
    """Behind a CT of 160 a stand-by line reads 0.02 kW on the meter (3.2 kW once scaled,
    above idle) for hours: two resolution steps cannot vary, so it is no frozen meter (found
    in `make run`'s city). A hundred steps can (edge: tested)."""
    kw = {"expected_interval_s": 900, "ct_ratio": 160.0}  # rated 100 kW: idle_kw = 2 kW
    await harness.archive([s for e in ("COARSE", "STEPS100") for s in one_point(e, e, **kw)])

    def run(mn: str, secondary: str) -> list[object]:
        return [
            reading(
                mn,
                local(DAY, 6) + timedelta(minutes=15 * i),
                meter(1, None, None, xe0101=secondary),
            )
            for i in range(17)
        ]

    await harness.send([*run("MN-COARSE", "0.02"), *run("MN-STEPS100", "1.00")])  # type: ignore[list-item]
    await harness.run_day()
    assert await harness.subjects(R.CONSTANT_POWER) == {"STEPS100"}
    coarse = [p for p in harness.published_points() if p.point_id == "COARSE"]
    assert coarse[-1].values["active_power_kw"] == pytest.approx(3.2) and coarse[-1].valid


async def test_data_latency(harness: Harness) -> None:
    await harness.archive([s for e in ("LATE", "FRESH", "EDGE") for s in one_point(e, e)])
    t = local(DAY, 10)
    await harness.send(
        [
            reading("MN-LATE", t, meter(1, 5, None), received_at=t + timedelta(minutes=90)),
            reading("MN-FRESH", t, meter(1, 5, None), received_at=t + timedelta(minutes=10)),
            reading("MN-EDGE", t, meter(1, 5, None), received_at=t + timedelta(hours=1)),
        ]
    )
    assert await harness.subjects(R.DATA_LATENCY) == {"LATE"}, "fires as data arrives"
    await harness.run_day()
    [late] = await harness.findings_of(R.DATA_LATENCY)
    assert late.evidence["grades"][1] == 1


async def test_history_is_not_judged_for_latency(harness: Harness) -> None:
    """Back-filled or re-sent data (`history`) are late by design: no latency finding, no
    latency grade; the point reading says it is history."""
    await harness.archive([s for e in ("BACKFILL",) for s in one_point(e, e)])
    t = local(DAY, 11)
    await harness.send(
        [
            reading(
                "MN-BACKFILL",
                t + timedelta(minutes=m),
                meter(1, 5, None),
                received_at=t + timedelta(hours=5),
                history=True,
            )
            for m in range(3)
        ]
    )
    assert await harness.subjects(R.DATA_LATENCY) == {"LATE"} - {"LATE"}
    assert (await harness.daily_row("BACKFILL")).latency_grades == [0, 0, 0, 0, 0]
    points = [p for p in harness.published_points() if p.point_id == "BACKFILL"]
    assert len(points) == 3 and all(p.history for p in points)


async def test_device_offline_daily_and_live(harness: Harness) -> None:
    kw = {"expected_interval_s": 600}
    await harness.archive(
        [s for e in ("GAP", "OK", "EDGE", "EDGE2") for s in one_point(e, e, **kw)]
    )
    skip = {"GAP": 4, "OK": 1, "EDGE": 2, "EDGE2": 3}  # missing 10-min samples after 10:00

    rows = []
    for name, missing in skip.items():
        for i in range(144):
            if 61 <= i <= 60 + missing:
                continue
            rows.append(
                reading(
                    f"MN-{name}",
                    local(DAY) + timedelta(minutes=10 * i),
                    meter(1, 5.0 + i % 7, None),
                )
            )
    await harness.send(rows)
    await harness.run_day()
    # silence = (missing + 1) × 10 min; offline when > 30 min
    assert await harness.subjects(R.DEVICE_OFFLINE) == {"MN-GAP", "MN-EDGE2"}

    # live: 31 minutes after the last sample every device is offline; then one comes back
    harness.now[0] = local(DAY + timedelta(days=1)) + timedelta(minutes=21)
    await harness.checks.sweep_offline()
    assert {r.subject_id for r in await harness.findings_of(R.DEVICE_OFFLINE)} == {
        "MN-GAP",
        "MN-OK",
        "MN-EDGE",
        "MN-EDGE2",
    }
    harness.now[0] = local(DAY + timedelta(days=1), 0, 25)
    await harness.send(
        [
            reading(
                "MN-OK",
                local(DAY + timedelta(days=1), 0, 24),
                meter(1, 5.0, None),
                received_at=harness.now[0],
            )
        ]
    )
    await harness.checks.sweep_offline()
    assert {r.subject_id for r in await harness.findings_of(R.DEVICE_OFFLINE)} == {
        "MN-GAP",
        "MN-EDGE",
        "MN-EDGE2",
    }
    [ok] = await harness.findings_of(R.DEVICE_OFFLINE, status="resolved")
    assert ok.subject_id == "MN-OK"


async def test_back_filled_samples_complete_the_day_but_not_the_devices_presence(
    harness: Harness,
) -> None:
    """A device silent for 70 minutes that back-fills them (history: the answer to ingest's
    history request) was offline all the same; the same samples arriving late but live
    (a slow link, no history flag) close the gap. Both days are complete."""
    kw = {"expected_interval_s": 600}
    await harness.archive([s for e in ("BACKFILLED", "SLOW") for s in one_point(e, e, **kw)])
    back = local(DAY, 12)
    rows = []
    for name in ("BACKFILLED", "SLOW"):
        for i in range(144):
            t = local(DAY) + timedelta(minutes=10 * i)
            silent = 61 <= i <= 66  # 10:10–11:00: a 70-minute silence
            rows.append(
                reading(
                    f"MN-{name}",
                    t,
                    meter(1, 5.0 + i % 7, None),
                    received_at=back if silent else None,
                    history=silent and name == "BACKFILLED",
                )
            )
    await harness.send(rows)
    await harness.run_day()
    assert await harness.subjects(R.DEVICE_OFFLINE) == {"MN-BACKFILLED"}
    [finding] = await harness.findings_of(R.DEVICE_OFFLINE)
    assert datetime.fromisoformat(finding.evidence["from"]) == local(DAY, 10, 10)
    assert finding.evidence["hours"] == pytest.approx(1.0)  # six 10-minute slots
    for name in ("BACKFILLED", "SLOW"):
        row = await harness.daily_row(name)
        assert row.samples == 144 and row.completeness == 1.0


async def test_rule_parameters_are_versioned_and_used(harness: Harness) -> None:
    await harness.archive([*one_point("A", "HIGH"), *one_point("B", "OK")])
    await _counter_day(harness, "MN-HIGH", [0.0, 2600.0], power=100.0)
    await _counter_day(harness, "MN-OK", [0.0, 2400.0], power=100.0)
    async with harness.database.transaction() as session:
        state = await harness.rulebook.update(
            session,
            R.ENERGY_GT_25X_MAX_LOAD,
            params={"factor": 20},
            enabled=None,
            actor="admin",
            reason="test",
        )
    assert state.version == 2 and state["factor"] == 20.0
    with pytest.raises(ValueError):
        async with harness.database.transaction() as session:
            await harness.rulebook.update(
                session,
                R.ENERGY_GT_25X_MAX_LOAD,
                params={"nope": 1},
                enabled=None,
                actor="admin",
                reason=None,
            )
    await harness.run_day()
    rows = await harness.findings_of(R.ENERGY_GT_25X_MAX_LOAD)
    assert {r.subject_id for r in rows} == {"HIGH", "OK"} and {r.rule_version for r in rows} == {2}
