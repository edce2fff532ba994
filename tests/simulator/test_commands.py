"""Platform commands sent by the test server and answered by simulated devices (paced mode:
two simulated minutes per wall second)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import ecowatt_hj212 as hj212
import pytest
from ecowatt_hj212 import commands
from ecowatt_simulator import DeviceSettings, FaultConfig, Fleet, SimClock, Simulator

CITY_SEED = 41


@pytest.fixture
async def live(platform: Any) -> AsyncIterator[tuple[Any, Simulator]]:
    fleet = Fleet.synthetic(2, circuits=2, seed=CITY_SEED)
    sim = Simulator(
        fleet,
        port=platform.port,
        faults=FaultConfig(shares={"clock_drift": 0.5}),
        clock=SimClock(datetime(2025, 12, 1, 2, 0), speed=120),
        settings=DeviceSettings(
            rtd_interval_s=60, minute_interval_min=1, sample_s=15, drift_limit_s=30
        ),
    )
    async with sim:
        yield platform, sim


def _device(sim: Simulator, *, drifting: bool) -> commands.Device:
    (mn,) = [
        mn
        for mn in sim.fleet.devices
        if (mn in sim.ground_truth.devices_with("clock_drift")) is drifting
    ]
    return commands.Device(mn=mn, pw=sim.fleet.devices[mn].password)


_QNS = iter(range(1, 1_000_000))


def _qn() -> str:
    """A fresh QN: commands sent within one millisecond must not share one."""
    return commands.new_qn(datetime(2025, 1, 1) + timedelta(milliseconds=next(_QNS)))


def _answers(platform: Any, mn: str, qn: str) -> list[hj212.Frame]:
    return [f for f in platform.decoded(mn) if f.qn == qn and f.cn not in ("2011", "2051")]


async def _flow(platform: Any, mn: str, message: hj212.Message, count: int) -> list[hj212.Frame]:
    await platform.send(mn, message)
    await platform.wait_until(lambda: len(_answers(platform, mn, message.qn or "")) >= count)
    return _answers(platform, mn, message.qn or "")


def _latest(platform: Any, mn: str) -> datetime:
    return max(f.data_time for f in platform.decoded(mn, "2011"))


async def test_get_and_set_time_answered_9011_then_9012_by_qn(live: tuple[Any, Simulator]) -> None:
    platform, sim = live
    device = _device(sim, drifting=False)
    await platform.wait_until(lambda: len(platform.decoded(device.mn, "2011")) >= 2)
    flow = await _flow(platform, device.mn, commands.get_time(device, qn=_qn()), 3)
    assert [f.cn for f in flow] == ["9011", "1011", "9012"]
    assert flow[0].params["QnRtn"] == "1" and flow[2].params["ExeRtn"] == "1"
    # the sent log lists the data reply with the answers (by the request's QN), not as a
    # frame without QN
    assert ("1011", flow[1].qn) in sim.log[device.mn].answers
    assert not sim.log[device.mn].no_ack
    assert flow[0].st == "91" and flow[0].flag == 4
    reported = hj212.parse_hj212_time(flow[1].params["SystemTime"])
    assert (
        reported is not None
        and abs((reported - _latest(platform, device.mn)).total_seconds()) <= 120
    )

    later = _latest(platform, device.mn) + timedelta(hours=1)
    flow = await _flow(platform, device.mn, commands.set_time(device, later, qn=_qn()), 2)
    assert [(f.cn, f.params.get("QnRtn") or f.params.get("ExeRtn")) for f in flow] == [
        ("9011", "1"),
        ("9012", "1"),
    ]
    await platform.wait_until(lambda: _latest(platform, device.mn) >= later)
    flow = await _flow(
        platform, device.mn, commands.set_time(device, datetime(2031, 1, 1), qn=_qn()), 2
    )
    assert flow[-1].params["ExeRtn"] == "3", "a jump far from the simulated clock is refused"


async def test_realtime_interval_and_start_stop(live: tuple[Any, Simulator]) -> None:
    platform, sim = live
    device = _device(sim, drifting=False)
    await platform.wait_until(lambda: len(platform.decoded(device.mn, "2011")) >= 1)
    flow = await _flow(
        platform, device.mn, commands.set_realtime_interval(device, 120, qn=_qn()), 2
    )
    assert flow[-1].params["ExeRtn"] == "1"
    changed_at = _latest(platform, device.mn)
    await platform.wait_until(
        lambda: (
            len([f for f in platform.decoded(device.mn, "2011") if f.data_time > changed_at]) >= 3
        )
    )
    times = sorted(
        f.data_time for f in platform.decoded(device.mn, "2011") if f.data_time > changed_at
    )
    assert {(b - a).total_seconds() for a, b in itertools.pairwise(times[1:])} == {120.0}
    flow = await _flow(platform, device.mn, commands.get_realtime_interval(device, qn=_qn()), 3)
    assert [f.cn for f in flow] == ["9011", "1061", "9012"]
    assert flow[1].params["RtdInterval"] == "120"
    bad = hj212.Message(
        cn="1062",
        qn=_qn(),
        st="31",
        pw=device.pw,
        mn=device.mn,
        flag=5,
        cp=(("RtdInterval", "5"),),
    )
    flow = await _flow(platform, device.mn, bad, 2)
    assert flow[-1].params["ExeRtn"] == "3"

    flow = await _flow(platform, device.mn, commands.stop_realtime_data(device, qn=_qn()), 1)
    assert [f.cn for f in flow] == ["9013"]
    stopped_at = len(platform.decoded(device.mn, "2011"))
    minutes = len(platform.records(device.mn, "2051"))
    await platform.wait_until(lambda: len(platform.records(device.mn, "2051")) >= minutes + 4)
    assert len(platform.decoded(device.mn, "2011")) == stopped_at, "no real-time data while stopped"
    flow = await _flow(platform, device.mn, commands.start_realtime_data(device, qn=_qn()), 2)
    assert [f.cn for f in flow] == ["9011", "9012"]
    await platform.wait_until(lambda: len(platform.decoded(device.mn, "2011")) > stopped_at)


async def test_backfill_returns_the_requested_range_from_history(
    live: tuple[Any, Simulator],
) -> None:
    platform, sim = live
    device = _device(sim, drifting=False)
    await platform.wait_until(lambda: len(platform.records(device.mn, "2051")) >= 6)
    original = platform.records(device.mn, "2051")
    times = list(original)[1:4]
    begin, end = (datetime.strptime(t, "%Y%m%d%H%M%S") for t in (times[0], times[-1]))
    request = commands.get_minute_data(device, begin, end, qn=_qn())
    seen_before = len(platform.frames)
    await platform.send(device.mn, request)
    await platform.wait_until(
        lambda: any(f.cn == "9012" for f in _answers(platform, device.mn, request.qn))
    )
    flow = [
        r.frame
        for r in platform.frames[seen_before:]
        if r.frame.mn == device.mn and r.frame.cn != "2011"
    ]
    cns = [f.cn for f in flow]
    assert cns[0] == "9011" and cns[-1] == "9012" and flow[-1].params["ExeRtn"] == "1"
    uploads = [
        f for f in flow if f.cn == "2051" and f.qn != request.qn and begin <= f.data_time <= end
    ]
    assert sorted({f.params["DataTime"] for f in uploads}) == times
    assert all(f.qn != request.qn and f.ack_requested for f in uploads), (
        "each upload has its own QN"
    )
    resent: dict[str, dict[str, dict[str, str]]] = {}
    for frame in uploads:
        for code, items in frame.codes.items():
            resent.setdefault(frame.params["DataTime"], {}).setdefault(code, {}).update(items)
    assert resent == {t: original[t] for t in times}, "the same values as sent the first time"
    assert sim.log[device.mn].by_kind["backfill"] == len(uploads)

    empty = commands.get_hour_data(device, datetime(2020, 1, 1), datetime(2020, 1, 2), qn=_qn())
    flow = await _flow(platform, device.mn, empty, 2)
    assert [f.cn for f in flow] == ["9011", "9012"] and flow[-1].params["ExeRtn"] == "100"


async def test_wrong_password_unknown_command_and_time_calibration(
    live: tuple[Any, Simulator],
) -> None:
    platform, sim = live
    device = _device(sim, drifting=False)
    drifting = _device(sim, drifting=True)
    await platform.wait_until(lambda: platform.decoded(drifting.mn, "1013") != [])
    await platform.wait_until(lambda: len(platform.decoded(drifting.mn, "2011")) >= 1)
    await platform.wait_until(lambda: len(platform.decoded(device.mn, "2011")) >= 1)
    wrong = commands.Device(mn=device.mn, pw="000000" if device.pw != "000000" else "111111")
    flow = await _flow(platform, device.mn, commands.get_time(wrong, qn=_qn()), 1)
    assert [(f.cn, f.params["QnRtn"]) for f in flow] == [("9011", "3")]
    unknown = hj212.Message(cn="3011", qn=_qn(), st="31", pw=device.pw, mn=device.mn, flag=5)
    flow = await _flow(platform, device.mn, unknown, 1)
    assert [(f.cn, f.params["QnRtn"]) for f in flow] == [("9011", "8")]

    # the drifting device asked for calibration (1013, answered 9013 by the platform); its
    # clock is minutes off the well-set device; set it to the well-set device's time
    offset = (_latest(platform, drifting.mn) - _latest(platform, device.mn)).total_seconds()
    assert abs(offset) >= 30
    flow = await _flow(
        platform,
        drifting.mn,
        commands.set_time(drifting, _latest(platform, device.mn), qn=_qn()),
        2,
    )
    assert flow[-1].params["ExeRtn"] == "1"
    flow = await _flow(platform, drifting.mn, commands.get_time(drifting, qn=_qn()), 3)
    reported = hj212.parse_hj212_time(flow[1].params["SystemTime"])
    assert reported is not None
    assert abs((reported - _latest(platform, device.mn)).total_seconds()) <= 90
    assert sim.log[drifting.mn].by_cn["1013"] >= 1 and sim.log[device.mn].by_cn["1013"] == 0
