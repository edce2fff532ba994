"""One simulated day of a small fleet without faults: the frames, the energy, the load curves.

Expected values come from the frames the test server decoded with the codec and from the
registry data of the fleet, never from the simulator's own computations.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import ecowatt_hj212 as hj212
import pytest
from ecowatt_kernel.synthetic import device_password
from ecowatt_simulator import DeviceSettings, Fleet, SimClock, Simulator

# Monday 2025-12-01 00:00 in Xi'an (UTC+8)
START = datetime(2025, 11, 30, 16, 0, tzinfo=UTC)
CITY_SEED = 11


@dataclass
class Day:
    platform: Any  # conftest.MiniPlatform
    fleet: Fleet
    sim: Simulator
    answered: bool


@pytest.fixture(scope="module")
async def day(mini_platform: Any) -> AsyncIterator[Day]:
    platform = await mini_platform().start()
    fleet = Fleet.synthetic(6, circuits=(3, 7), seed=CITY_SEED)
    sim = Simulator(
        fleet,
        port=platform.port,
        clock=SimClock.fast(START),
        settings=DeviceSettings(rtd_interval_s=60, minute_interval_min=10, sample_s=15),
    )
    answered = await sim.run(timedelta(days=1), drain_timeout=20)
    yield Day(platform, fleet, sim, answered)
    await platform.stop_listening()


def _f(value: str) -> float:
    return float(value)


def test_every_frame_decodes_and_verifies_in_the_default_profile(day: Day) -> None:
    profile = hj212.get_profile("ecowatt-default")
    frames = day.platform.frames
    assert len(frames) > 6 * 1440, "a day of real-time data from six devices"
    assert not day.platform.rejected, "no bytes outside frames"
    cns: set[str] = set()
    for received in frames:
        frame = received.frame
        assert frame is not None
        assert frame.ok, (frame.verification.length.explanation, frame.verification.crc.explanation)
        assert frame.verification.crc.reason is hj212.Reason.CRC_OK
        assert frame.version is hj212.ProtocolVersion.V2017 and frame.st == "31"
        assert frame.flag in (5, 7), "A bit set; D bit for split parts"
        assert len(frame.segment) <= 1024
        assert frame.pw == device_password(CITY_SEED, frame.mn or "")
        assert frame.data_time is not None
        for code, items in frame.codes.items():
            for suffix in items:
                if suffix != "Flag":
                    assert profile.resolve(code, suffix) is not None, f"{code}-{suffix} unbound"
        cns.add(frame.cn or "")
    assert cns == {"2011", "2051", "2061", "2031"}
    split = [r.frame for r in frames if r.frame is not None and r.frame.is_split]
    assert split, "devices with more than four circuits split their uploads"
    assert all(f.pnum and f.pno and f.pno <= f.pnum for f in split)


def test_nothing_lost_every_qn_sent_was_received_and_answered(day: Day) -> None:
    assert day.answered
    received: dict[str, set[str]] = {}
    for frame in day.platform.decoded():
        received.setdefault(frame.mn or "", set()).add(frame.qn or "")
    sent = day.sim.log.all_qns()
    assert set(sent) == set(day.fleet.devices)
    for mn, qns in sent.items():
        assert qns and set(qns) == received[mn]
        assert len(set(qns)) == len(qns), "QNs are unique per device"
    assert day.sim.log.unacked() == {}
    assert sum(d.acked_count for d in day.sim.log) == day.platform.acks_sent


def test_each_circuit_of_a_device_reports_every_minute(day: Day) -> None:
    for mn, device in day.fleet.devices.items():
        realtime = day.platform.records(mn, "2011")
        assert len(realtime) == 1441, "every minute of the day, both ends included"
        assert next(iter(realtime)) == "20251201000000"
        assert list(realtime)[-1] == "20251202000000"
        circuits = {p.circuit for p in device.points}
        for values in realtime.values():
            assert {int(code[4:]) for code in values if code.startswith("xe01")} == circuits
        assert len(day.platform.records(mn, "2051")) == 144, "10-minute data"
        assert len(day.platform.records(mn, "2061")) == 24
        assert list(day.platform.records(mn, "2031")) == ["20251201000000"]


def test_minute_energy_equals_counter_difference_and_average_power(day: Day) -> None:
    checked = 0
    for mn in day.fleet.devices:
        minutes = day.platform.records(mn, "2051")
        realtime = day.platform.records(mn, "2011")
        previous_end: dict[str, float] = {}
        for data_time, values in minutes.items():
            begin = datetime.strptime(data_time, "%Y%m%d%H%M%S")
            end_key = (begin + timedelta(minutes=10)).strftime("%Y%m%d%H%M%S")
            for code, items in values.items():
                if not code.startswith("xe02"):
                    continue
                circuit = code[4:]
                cou, start, stop = _f(items["Cou"]), _f(items["Min"]), _f(items["Max"])
                avg_kw = _f(values[f"xe01{circuit}"]["Avg"])
                assert cou >= 0
                assert abs(cou - (stop - start)) <= 0.011
                assert abs(cou - avg_kw / 6) <= 0.01 * abs(cou) + 0.006
                if code in previous_end:
                    assert start == previous_end[code], "the counter continues"
                previous_end[code] = stop
                if end_key in realtime:
                    assert _f(realtime[end_key][code]["Rtd"]) == stop, "2011 reads the same counter"
                checked += 1
    assert checked > 6 * 140 * 3


def test_hour_energy_is_the_sum_of_its_minute_energy(day: Day) -> None:
    for mn in day.fleet.devices:
        minutes = day.platform.records(mn, "2051")
        for hour_time, values in day.platform.records(mn, "2061").items():
            parts = [v for t, v in minutes.items() if t[:10] == hour_time[:10]]
            assert len(parts) == 6
            for code, items in values.items():
                if code.startswith("xe02"):
                    total = sum(_f(p[code]["Cou"]) for p in parts)
                    assert abs(_f(items["Cou"]) - total) <= 0.01
                if code.startswith("xe01"):
                    assert _f(items["Max"]) == max(_f(p[code]["Max"]) for p in parts)
                    assert _f(items["Min"]) == min(_f(p[code]["Min"]) for p in parts)


def test_counter_follows_real_time_power_over_the_day(day: Day) -> None:
    checked = 0
    for mn, device in day.fleet.devices.items():
        realtime = list(day.platform.records(mn, "2011").values())
        for point in device.points:
            c = f"{point.circuit:02d}"
            counters = [_f(v[f"xe02{c}"]["Rtd"]) for v in realtime]
            assert all(b >= a for a, b in itertools.pairwise(counters))
            integral = sum(_f(v[f"xe01{c}"]["Rtd"]) for v in realtime[:-1]) / 60
            used = counters[-1] - counters[0]
            if integral == 0:  # a stand-by control facility of an ANY group
                assert used == 0
                continue
            assert abs(used - integral) <= 0.03 * used + 0.05
            checked += 1
    assert checked >= 6 * 3


def test_currents_voltages_and_power_factor_agree_with_power(day: Day) -> None:
    checked = 0
    for mn, device in day.fleet.devices.items():
        for values in day.platform.records(mn, "2011").values():
            for point in device.points:
                c = f"{point.circuit:02d}"
                power = _f(values[f"xe01{c}"]["Rtd"])
                pf = _f(values[f"xe03{c}"]["Rtd"])
                volts = [_f(values[f"xe2{k}{c}"]["Rtd"]) for k in (1, 2, 3)]
                amps = [_f(values[f"xe1{k}{c}"]["Rtd"]) for k in (1, 2, 3)]
                assert all(200 < v < 245 for v in volts)
                assert 0 <= pf <= 1
                if power > 5:
                    apparent = sum(v * i for v, i in zip(volts, amps, strict=True)) / 1000
                    assert abs(apparent * pf - power) <= 0.02 * power
                    checked += 1
                elif power == 0:
                    assert amps == [0.0, 0.0, 0.0]
    assert checked > 1000


def test_total_line_exceeds_the_sum_of_its_sub_circuits(day: Day) -> None:
    for mn, device in day.fleet.devices.items():
        total = next(p for p in device.points if p.point_type == "total")
        subs = [p for p in device.points if p.point_type != "total"]
        margins = []
        for values in day.platform.records(mn, "2011").values():
            total_kw = _f(values[f"xe01{total.circuit:02d}"]["Rtd"])
            sub_kw = sum(_f(values[f"xe01{p.circuit:02d}"]["Rtd"]) for p in subs)
            assert total_kw > sub_kw, "unmonitored base load on top"
            margins.append(total_kw - sub_kw)
        assert statistics.pstdev(margins) > 0


def test_production_follows_shifts_with_night_stops_and_ramps(day: Day) -> None:
    night_stops = 0
    for mn, device in day.fleet.devices.items():
        realtime = day.platform.records(mn, "2011")
        for point in device.points:
            if point.point_type != "production":
                continue
            c = f"{point.circuit:02d}"
            series = [_f(v[f"xe01{c}"]["Rtd"]) for v in realtime.values()]
            threshold = point.start_stop_kw or 0.0
            running = [p >= threshold for p in series]
            assert max(series) <= (point.rated_kw or 0) * 1.2
            if not all(running):
                night_stops += 1
                assert any(running), "a production facility runs on a Monday"
                starts = [i for i in range(1, len(series)) if running[i] and not running[i - 1]]
                for i in starts:  # ramping up: the first running minutes are below later ones
                    later = series[i + 15 : i + 45]
                    if len(later) == 30 and all(running[i : i + 45]):
                        assert series[i] < statistics.mean(later)
    assert night_stops >= 2, "some enterprises work in shifts"


def test_control_facilities_start_before_and_stop_after_production(day: Day) -> None:
    starts_seen = 0
    for mn, device in day.fleet.devices.items():
        realtime = list(day.platform.records(mn, "2011").values())
        by_facility = {p.facility_id: p for p in device.points if p.facility_id}

        def running(values: dict[str, dict[str, str]], fid: str, points: Any = by_facility) -> bool:
            point = points[fid]
            kw = _f(values[f"xe01{point.circuit:02d}"]["Rtd"])
            return bool(kw >= (point.start_stop_kw or 0.0))

        for group in day.fleet.groups_of_enterprise(device.enterprise_id or ""):
            for i, values in enumerate(realtime):
                producing = any(running(values, f) for f in group.production_ids)
                controls = [running(values, f) for f in group.control_ids]
                if producing:
                    assert all(controls) if group.mode == "all" else any(controls), (mn, i)
                was_producing = i > 0 and any(
                    running(realtime[i - 1], f) for f in group.production_ids
                )
                if producing and not was_producing and i > 0:
                    starts_seen += 1
                    before = realtime[i - 1]
                    ran_before = [running(before, f) for f in group.control_ids]
                    assert all(ran_before) if group.mode == "all" else any(ran_before)
    assert starts_seen >= 3, "the day contains production starts"
