"""Every fault kind on one device each, for a simulated day: detectors that read only the
received frames and the archive find each fault on the devices the ground truth names, inside
its windows, and find nothing anywhere else."""

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
from ecowatt_simulator import (
    DeviceSettings,
    FaultConfig,
    FaultKind,
    Fleet,
    GroundTruth,
    SimClock,
    Simulator,
)

START = datetime(2025, 11, 30, 16, 0, tzinfo=UTC)  # Monday 2025-12-01 00:00 in Xi'an
CITY_SEED = 23
RTD = 300
SLACK = 600.0  # seconds around a fault window where its after-effects may still show


@dataclass
class Run:
    platform: Any
    fleet: Fleet
    sim: Simulator
    truth: GroundTruth

    def series(self, mn: str) -> list[tuple[float, dict[str, dict[str, str]]]]:
        """Real-time records as (UTC seconds, values)."""
        return [(_utc(t), v) for t, v in self.platform.records(mn, "2011").items()]

    def windows(self, mn: str, *kinds: FaultKind) -> list[tuple[float, float]]:
        return [
            (e.start, e.end)
            for e in self.truth.of_device(mn)
            if not kinds or FaultKind(e.kind) in kinds
        ]

    def explained(self, mn: str, t: float, *kinds: FaultKind) -> bool:
        return any(s - SLACK <= t <= e + SLACK for s, e in self.windows(mn, *kinds))


def _utc(data_time: str) -> float:
    local = datetime.strptime(data_time, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    return local.timestamp() - 8 * 3600


@pytest.fixture(scope="module")
async def run(mini_platform: Any) -> AsyncIterator[Run]:
    platform = await mini_platform().start()
    fleet = Fleet.synthetic(20, circuits=(4, 6), seed=CITY_SEED)
    faults = FaultConfig(shares={kind.value: 0.05 for kind in FaultKind})
    sim = Simulator(
        fleet,
        port=platform.port,
        faults=faults,
        clock=SimClock.fast(START),
        settings=DeviceSettings(rtd_interval_s=RTD, minute_interval_min=30, sample_s=60),
    )
    await sim.run(timedelta(days=1), drain_timeout=20)
    yield Run(platform, fleet, sim, sim.ground_truth)
    await platform.stop_listening()


def _kw(values: dict[str, dict[str, str]], circuit: int) -> float:
    return float(values[f"xe01{circuit:02d}"]["Rtd"])


def test_ground_truth_names_one_distinct_device_per_kind(run: Run) -> None:
    chosen = {kind: run.truth.devices_with(kind) for kind in FaultKind}
    assert all(len(mns) == 1 for mns in chosen.values()), chosen
    devices = [next(iter(mns)) for mns in chosen.values()]
    assert len(set(devices)) == len(FaultKind), "faults do not pile up on one device"
    assert {e.kind for e in run.truth.events} == {k.value for k in FaultKind}
    assert all(run.truth.start <= e.start < e.end <= run.truth.end for e in run.truth.events)


def _guarded(run: Run, mn: str) -> list[tuple[list[Any], list[Any]]]:
    """(production points, control points) of each control group a device measures."""
    device = run.fleet.devices[mn]
    by_facility = {p.facility_id: p for p in device.points if p.facility_id}
    groups = []
    for group in run.fleet.groups_of_enterprise(device.enterprise_id or ""):
        if group.mode == "any" and len(group.control_ids) > 1:
            continue  # a stand-by control facility is off by design
        groups.append(
            (
                [by_facility[f] for f in group.production_ids],
                [by_facility[f] for f in group.control_ids],
            )
        )
    return groups


def _producing(values: dict[str, dict[str, str]], points: list[Any]) -> bool:
    return any(_kw(values, p.circuit) >= (p.start_stop_kw or 0.0) for p in points)


def test_control_off_while_production_runs_only_where_the_truth_says(run: Run) -> None:
    causes = (FaultKind.CONTROL_OFF, FaultKind.LATE_START, FaultKind.EARLY_STOP)
    found: dict[str, list[float]] = {}
    for mn in run.fleet.devices:
        for t, values in run.series(mn):
            for production, controls in _guarded(run, mn):
                off = any(_kw(values, c.circuit) == 0.0 for c in controls)
                if off and _producing(values, production):
                    found.setdefault(mn, []).append(t)
                    # a frozen production reading also looks like production running;
                    # after a power cut the control facility restarts later
                    assert run.explained(mn, t, *causes, FaultKind.CONSTANT_POWER) or any(
                        e.start <= t <= e.detail["control_restart_at"] + SLACK
                        for e in run.truth.of_device(mn)
                        if e.kind == FaultKind.POWER_CUT
                    ), (mn, t)
    for kind in causes:
        (mn,) = run.truth.devices_with(kind)
        events = run.truth.of_kind(kind)
        assert events
        for event in events:
            hits = [t for t in found.get(mn, []) if event.start <= t < event.end]
            if event.end - event.start >= 2 * RTD:
                assert hits, (kind, event)
    control_off = run.truth.of_kind(FaultKind.CONTROL_OFF)[0]
    hits = [t for t in found[control_off.mn] if control_off.start <= t < control_off.end]
    assert len(hits) >= 0.9 * (control_off.end - control_off.start) / RTD - 1


def test_late_start_and_early_stop_shift_the_control_switching(run: Run) -> None:
    for kind in (FaultKind.LATE_START, FaultKind.EARLY_STOP):
        for event in run.truth.of_kind(kind):
            series = dict(run.series(event.mn))
            (circuit,) = event.circuits
            during = [v for t, v in series.items() if event.start <= t < event.end]
            after = [v for t, v in series.items() if event.end + SLACK <= t < event.end + 2 * SLACK]
            before = [
                v for t, v in series.items() if event.start - 2 * SLACK <= t < event.start - SLACK
            ]
            assert during and all(_kw(v, circuit) == 0.0 for v in during)
            if kind is FaultKind.LATE_START:
                assert event.end - event.start > 20 * 60, "beyond the start tolerance"
                assert after and all(_kw(v, circuit) > 0 for v in after)
            else:
                assert before and all(_kw(v, circuit) > 0 for v in before)


def test_low_load_shows_as_a_control_running_far_below_its_usual_power(run: Run) -> None:
    found: dict[str, list[float]] = {}
    for mn in run.fleet.devices:
        series = run.series(mn)
        for production, controls in _guarded(run, mn):
            for control in controls:
                running = [
                    _kw(v, control.circuit)
                    for _, v in series
                    if _producing(v, production) and _kw(v, control.circuit) > 0
                ]
                if not running:
                    continue
                usual = statistics.median(running)
                for t, v in series:
                    kw = _kw(v, control.circuit)
                    if _producing(v, production) and 0 < kw < 0.4 * usual:
                        found.setdefault(mn, []).append(t)
                        assert run.explained(mn, t), (mn, t, kw, usual)
    (event,) = run.truth.of_kind(FaultKind.LOW_LOAD)
    hits = [t for t in found[event.mn] if event.start <= t < event.end]
    assert len(hits) >= 0.9 * (event.end - event.start) / RTD - 1
    assert 0.12 <= event.detail["factor"] <= 0.25


def test_negative_power_and_energy_only_on_the_faulty_meters(run: Run) -> None:
    negative_power: dict[str, list[float]] = {}
    for mn in run.fleet.devices:
        for t, values in run.series(mn):
            for code, items in values.items():
                if code.startswith("xe01") and float(items["Rtd"]) < 0:
                    negative_power.setdefault(mn, []).append(t)
                    assert run.explained(mn, t, FaultKind.NEGATIVE_ENERGY), (mn, t)
        for data_time, values in run.platform.records(mn, "2051").items():
            for code, items in values.items():
                if code.startswith("xe02") and float(items["Cou"]) < 0:
                    begin = _utc(data_time)  # the interval's start; it lasts 30 minutes
                    assert any(
                        s < begin + 1800 and begin < e
                        for s, e in run.windows(
                            mn, FaultKind.NEGATIVE_ENERGY, FaultKind.METER_RESET
                        )
                    ), (mn, data_time)
    for event in run.truth.of_kind(FaultKind.NEGATIVE_ENERGY):
        hits = [t for t in negative_power.get(event.mn, []) if event.start <= t < event.end]
        assert len(hits) >= (event.end - event.start) / RTD - 2
        (circuit,) = event.circuits
        series = run.series(event.mn)
        inside = [
            float(v[f"xe02{circuit:02d}"]["Rtd"]) for t, v in series if event.start <= t < event.end
        ]
        assert inside[-1] < inside[0], "the counter runs backwards"


def test_meter_reset_drops_the_counter_to_zero_once(run: Run) -> None:
    drops: dict[str, list[tuple[float, float, float]]] = {}
    for mn in run.fleet.devices:
        series = run.series(mn)
        for (_, a), (t, b) in itertools.pairwise(series):
            for code, items in b.items():
                if code.startswith("xe02") and float(items["Rtd"]) < float(a[code]["Rtd"]):
                    drops.setdefault(mn, []).append((t, float(a[code]["Rtd"]), float(items["Rtd"])))
                    assert run.explained(mn, t, FaultKind.METER_RESET, FaultKind.NEGATIVE_ENERGY)
    (event,) = run.truth.of_kind(FaultKind.METER_RESET)
    resets = [d for d in drops[event.mn] if event.start - RTD <= d[0] <= event.end + RTD]
    assert len(resets) == 1
    _, before, after = resets[0]
    assert before > 1000 and after < 100


def test_constant_power_runs_for_hours_only_on_the_faulty_meter(run: Run) -> None:
    runs: dict[str, list[tuple[float, float]]] = {}
    for mn, device in run.fleet.devices.items():
        series = run.series(mn)
        for point in device.points:
            idle_kw = max(0.2, 0.02 * (point.rated_kw or 0.0))  # supervision §2.1
            start = 0
            for i in range(1, len(series) + 1):
                if i < len(series) and _kw(series[i][1], point.circuit) == _kw(
                    series[start][1], point.circuit
                ):
                    continue
                value = _kw(series[start][1], point.circuit)
                length = (i - start) * RTD
                if abs(value) > idle_kw and length >= 3600:
                    runs.setdefault(mn, []).append((series[start][0], series[i - 1][0]))
                start = i
    (event,) = run.truth.of_kind(FaultKind.CONSTANT_POWER)
    assert set(runs) == {event.mn}
    ((first, last),) = runs[event.mn]
    assert abs(first - event.start) <= RTD and abs(last - event.end) <= RTD
    assert last - first >= 4 * 3600


def test_offline_device_is_silent_exactly_in_its_window(run: Run) -> None:
    gaps: dict[str, list[tuple[float, float]]] = {}
    for mn in run.fleet.devices:
        times = [t for t, _ in run.series(mn)]
        assert times[0] <= START.timestamp() + RTD, "a clock running ahead starts late"
        assert times[-1] >= START.timestamp() + 86400 - RTD
        for a, b in itertools.pairwise(times):
            if b - a > RTD:
                gaps.setdefault(mn, []).append((a, b))
    (event,) = run.truth.of_kind(FaultKind.OFFLINE)
    assert set(gaps) == {event.mn}
    ((a, b),) = gaps[event.mn]
    assert a < event.start <= a + RTD and b - RTD < event.end <= b
    log = run.sim.log[event.mn]
    assert log.connects >= 2 and log.disconnects >= 1


def test_crc_faults_are_named_by_the_codec(run: Run) -> None:
    (modbus,) = run.truth.of_kind(FaultKind.MODBUS_CRC)
    (lower,) = run.truth.of_kind(FaultKind.LOWERCASE_CRC)
    expected = {
        "modbus_hi_lo": hj212.Reason.CRC_MODBUS_HI_LO,
        "modbus_lo_hi": hj212.Reason.CRC_MODBUS_LO_HI,
    }
    lettered = 0
    for received in run.platform.frames:
        frame = received.frame
        assert frame is not None and frame.verification.length.ok
        reason = frame.verification.crc.reason
        if frame.mn == modbus.mn:
            assert reason is expected[modbus.detail["variant"]] and not frame.ok
        else:
            assert reason is hj212.Reason.CRC_OK and frame.ok
        assert frame.crc_field is not None
        notes = {n.reason for n in frame.notes}
        if frame.mn == lower.mn:
            assert frame.crc_field == frame.crc_field.lower()
            if frame.crc_field != frame.crc_field.upper():
                assert hj212.Reason.CRC_LOWERCASE in notes
                lettered += 1
        else:
            assert hj212.Reason.CRC_LOWERCASE not in notes
    assert lettered > 10


def test_2005_frames_wrong_passwords_and_calibration_requests(run: Run) -> None:
    (old,) = run.truth.devices_with(FaultKind.FRAMES_2005)
    (wrong,) = run.truth.devices_with(FaultKind.WRONG_PASSWORD)
    (drift,) = run.truth.devices_with(FaultKind.CLOCK_DRIFT)
    calibration_requests = set()
    for frame in run.platform.decoded():
        mn = frame.mn or ""
        if mn == old:  # no QN; a Flag only on split parts (2005: D bit, no version bits)
            assert frame.qn is None and frame.flag in (None, 2)
            assert (frame.flag == 2) is (frame.pnum is not None)
            assert frame.version is hj212.ProtocolVersion.V2005
        else:
            assert frame.qn is not None and frame.flag in (5, 7)
        assert (frame.pw == device_password(CITY_SEED, mn)) is (mn != wrong)
        if frame.cn == "1013":
            calibration_requests.add(mn)
    assert calibration_requests == {drift}
    assert run.sim.log[old].ack_requested == 0 and run.sim.log[old].no_ack


def test_garbage_and_split_packets_only_from_their_devices(run: Run) -> None:
    (garbage,) = run.truth.devices_with(FaultKind.GARBAGE)
    (split,) = run.truth.devices_with(FaultKind.SPLIT_PACKETS)
    conn_mn = {c.id: c.mn for c in run.platform.conns}
    assert run.platform.rejected
    assert {conn_mn[conn] for conn, _ in run.platform.rejected} == {garbage}
    assert run.sim.log[garbage].garbage_bytes > 0
    for mn in run.fleet.devices:
        frames = run.platform.decoded(mn)
        if mn == split:
            assert all(f.is_split and len(f.segment) <= 300 for f in frames if f.cn != "1013")
        else:  # other devices split only what does not fit 1024 bytes: parts are well filled
            parts = [f for f in frames if f.is_split and f.pno != f.pnum]
            assert all(len(f.segment) > 600 for f in parts)
    assert sum(n for c, n in run.platform.partial_reads.items() if conn_mn[c] == split) > 0


def test_nothing_lost_under_faults(run: Run) -> None:
    received: dict[str, set[str]] = {}
    for frame in run.platform.decoded():
        received.setdefault(frame.mn or "", set()).add(frame.qn or "")
    for mn, qns in run.sim.log.all_qns().items():
        assert set(qns) <= received.get(mn, set())
    assert run.sim.log.unacked() == {}


def test_power_cut_takes_every_circuit_to_nothing_then_control_restarts_late(run: Run) -> None:
    events = run.truth.of_kind(FaultKind.POWER_CUT)
    assert events
    for event in events:
        assert event.end - event.start >= 600
        series = run.series(event.mn)
        device = run.fleet.devices[event.mn]
        assert set(event.point_ids) == {p.id for p in device.points}
        inside = [v for t, v in series if event.start <= t < event.end]
        assert inside
        for values in inside:
            for point in device.points:
                assert _kw(values, point.circuit) == 0.0
                assert float(values[f"xe21{point.circuit:02d}"]["Rtd"]) == 0.0  # phase A volts
        restart = event.detail["control_restart_at"]
        assert 600 <= restart - event.end <= 1500
        controls = [p for p in device.points if p.point_type == "control"]
        production = [p for p in device.points if p.point_type == "production"]
        gap = [v for t, v in series if event.end + RTD <= t < restart - RTD]
        for values in gap:  # power back: production runs, control still off
            assert all(_kw(values, p.circuit) == 0.0 for p in controls)
            assert float(values["xe2101"]["Rtd"]) > 200
        if gap:
            assert any(_kw(v, p.circuit) > 0 for v in gap for p in production)
    for mn in run.fleet.devices:  # no other enterprise ever loses its voltage
        if mn != events[0].mn:
            assert all(float(v["xe2101"]["Rtd"]) > 200 for _, v in run.series(mn))


def test_showcase_starts_control_off_where_production_runs_at_that_moment() -> None:
    fleet = Fleet.synthetic(60, circuits=3, seed=CITY_SEED)
    at = (START + timedelta(hours=10, minutes=7)).timestamp()  # 10:07 local, a Monday
    faults = {"control_off": 1.0}
    drawn = Simulator(fleet, faults=FaultConfig(shares=faults), clock=SimClock(START))
    shown = Simulator(
        fleet, faults=FaultConfig(shares=faults, showcase_from=at), clock=SimClock(START)
    )
    day_end = at + 14 * 3600
    drawn_off = {e.facility_id: e for e in drawn.plan.events(at - 36000, day_end, drawn.model)}
    shown_off = {e.facility_id: e for e in shown.plan.events(at - 36000, day_end, shown.model)}
    assert set(drawn_off) == set(shown_off)  # the same facilities, only the windows move
    moved = 0
    for facility, event in shown_off.items():
        day = shown.model.local.day_index(at)
        running = [
            (s, e)
            for s, e in shown.model.group_production_windows(facility, day)
            if s <= at and e - at >= 2400
        ]
        if running:
            moved += 1
            assert event.start == int(at), facility
            assert event.end - event.start >= 600
            assert drawn_off[facility].start != event.start
        else:
            assert event.start == drawn_off[facility].start, facility
    assert moved > 0  # some production runs at 10:07 on a Monday


def test_showcase_gives_control_off_to_facilities_running_at_that_moment() -> None:
    fleet = Fleet.synthetic(120, circuits=3, seed=CITY_SEED)
    at = (START + timedelta(hours=2, minutes=7)).timestamp()  # 02:07 local: few run at night
    config = FaultConfig(shares={"control_off": 0.05}, showcase_from=at)
    sim = Simulator(fleet, faults=config, clock=SimClock(START))
    day = sim.model.local.day_index(at)

    def running(facility: str) -> bool:
        windows = sim.model.group_production_windows(facility, day)
        return any(s <= at and e - at >= 2400 for s, e in windows)

    eligible = {
        fid for d in fleet.devices.values() for fid in sim.plan._eligible_control_facilities(d)
    }
    assert 0 < sum(map(running, eligible)) < len(eligible)  # the night splits them
    chosen = {f for f in eligible if FaultKind.CONTROL_OFF in sim.plan.facility_faults(f)}
    assert chosen and all(running(f) for f in chosen)
    events = sim.plan.events(at - 3600, at + 3 * 3600, sim.model)
    assert {e.facility_id for e in events if e.kind == "control_off"} == chosen
    assert all(e.start == int(at) for e in events if e.kind == "control_off")
