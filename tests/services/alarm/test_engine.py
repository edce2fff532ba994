"""The engine in isolation (no infrastructure): the state model, one episode one alarm, what
R4 judges, OFFLINE's clock and levels, explanations frozen per event."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from alarm_city import SyntheticCity
from alarm_engine import EngineRig
from alarm_scores import score_states
from ecowatt_alarm.engine import Effects, EnterpriseRuntime, Sample
from ecowatt_kernel.contracts import PointReading

DAY = date(2026, 11, 20)


def live(rig: EngineRig, readings: list[PointReading], delay_s: float = 30.0) -> None:
    """Readings arriving minute by minute, `delay_s` after their data time."""
    minute: list[PointReading] = []
    for reading in readings:
        if minute and reading.data_time != minute[0].data_time:
            rig.offer(minute, minute[0].data_time.timestamp() + delay_s)
            minute = []
        minute.append(reading)
    if minute:
        rig.offer(minute, minute[0].data_time.timestamp() + delay_s)


def finish(rig: EngineRig) -> None:
    rig.tick(rig.city.end.timestamp() + rig.eventtime.lateness_s + 600)


def of(rig: EngineRig, rule: str) -> list[dict[str, Any]]:
    return [a for a in rig.alarms() if a["rule_code"] == rule]


def test_hysteresis_and_confirmation() -> None:
    city = SyntheticCity("U", DAY, scenarios=[], healthy=1)
    rig = EngineRig(city)
    e = city.enterprises[0].id
    model = rig.models.get(e)
    assert model is not None
    rt, fx, t0 = EnterpriseRuntime(e), Effects(), city.start.timestamp()
    point = f"{e}-P"  # production: T = 20 kW (20 % of 100 kW), off below 16 kW
    for i, kw in enumerate([30, 30, 18, 17, 30, 17, 18, 5, 30, 5, 5]):
        rig.engine.apply(rt, model, Sample(t0 + 60 * i, point, kw, 228.0), fx)
    states = [s.state for s in fx.states if s.subject_id == point]
    # 18 and 17 kW stay "running" (≥ 0.8 T); one 5 kW sample is not confirmed; two are.
    assert states == ["running", "standby"]
    change = next(s for s in fx.states if s.subject_id == point and s.state == "standby")
    assert change.since == t0 + 60 * 9, "since = the first sample of the confirmed change"
    assert change.evidence["threshold_source"] == "default"


def test_silence_is_judged_in_data_time_and_offline_levels_follow_it() -> None:
    """A 3-hour silence is OFFLINE level 1 (2 h), escalated only when data time reaches 24 h
    and 72 h — never on service time the data did not have."""
    city = SyntheticCity("S", DAY, scenarios=["offline_pos"], healthy=0)
    rig = EngineRig(city)
    live(rig, list(city.readings()))
    e = city.enterprises[0]
    silent_from = city.at(180).timestamp()
    rig.tick(silent_from + 3 * 3600)
    offline = of(rig, "OFFLINE")
    assert {a["subject_id"] for a in offline} == {f"{e.id}-A", f"{e.id}-B"}, "every silent device"
    assert {a["level"] for a in offline} == {1}
    opened = [op for op in rig.ops if op["op"] == "open" and op["rule_code"] == "OFFLINE"]
    assert all(0 <= op["decided_at"] - op["first_at"] - 2 * 3600 < 60 for op in opened), [
        (op["first_at"], op["decided_at"]) for op in opened
    ]
    assert all("已离线 2.0 小时" in op["explanation"] for op in opened)
    rig.tick(silent_from + 25 * 3600)
    assert {a["level"] for a in of(rig, "OFFLINE")} == {2}
    rig.tick(silent_from + 73 * 3600)
    assert {a["level"] for a in of(rig, "OFFLINE")} == {3}


def test_offline_in_a_backlog_says_how_long_the_data_were_silent() -> None:
    """Yesterday's data replayed hours late: OFFLINE opens with the duration of the silence
    in the data (2 h), and is a late finding; no level from the hours of backlog."""
    city = SyntheticCity("B", DAY, scenarios=["offline_pos"], healthy=0)
    rig = EngineRig(city)
    live(rig, list(city.readings()), delay_s=6 * 3600)
    rig.tick(city.end.timestamp() + 6 * 3600 + 3600)
    opened = [op for op in rig.ops if op["op"] == "open" and op["rule_code"] == "OFFLINE"]
    assert len(opened) == 2 and all(op["level"] == 1 for op in opened)
    assert all("已离线 2.0 小时" in op["explanation"] for op in opened)
    assert all(op["at"] - op["decided_at"] > rig.eventtime.lateness_s for op in opened), (
        "decided hours after its data time: a late finding"
    )


def test_one_episode_one_alarm() -> None:
    """A late start or early stop long enough for R1, and a control meter cut off after its
    facility stopped, each make one alarm with the other findings as its facets."""
    city = SyntheticCity(
        "P", DAY, scenarios=["r2_long", "r3_long", "r1_offline", "r2_pos"], healthy=0
    )
    rig = EngineRig(city)
    live(rig, list(city.readings()))
    finish(rig)
    by = {e.scenario: e.id for e in city.enterprises}

    def episode(scenario: str) -> list[tuple[str, list[str]]]:
        return sorted(
            (a["rule_code"], [f["rule_code"] for f in a.get("detail", {}).get("facets", [])])
            for a in rig.alarms()
            if a["enterprise_id"] == by[scenario] and a["rule_code"] != "R4"
        )

    assert episode("r2_long") == [("R1", ["R2"])]
    assert episode("r3_long") == [("R1", ["R3"])]
    assert episode("r1_offline") == [("R1", ["R6"])]
    assert episode("r2_pos") == [("R2", [])], "a late start shorter than R1's confirmation"
    r1 = next(a for a in rig.alarms() if a["enterprise_id"] == by["r1_offline"])
    held = r1["recovered_at"] - city.at(280).timestamp()
    assert 0 <= held < 60, "held while the R6 facet held"


def test_r4_judges_only_metered_groups() -> None:
    """A control facility without a meter is an archive gap (validation reports it): its
    group raises no R4 (nor R1), however long production runs."""
    city = SyntheticCity("M", DAY, scenarios=[], healthy=1)
    e = city.enterprises[0].id
    rig = EngineRig(city, drop=lambda change: change.entity_id == f"{e}-C")
    live(rig, [r for r in city.readings() if r.point_id != f"{e}-C"])
    finish(rig)
    assert rig.alarms() == []


def test_r4_judges_the_last_day_when_the_data_stop() -> None:
    """The data stop before midnight: once the devices are known to be silent the frontier
    passes midnight and the day is judged (before: only data crossing midnight did it)."""
    city = SyntheticCity("D", DAY, scenarios=["r4_pos"], healthy=0)
    rig = EngineRig(city)
    before_midnight = city.at(415).timestamp()  # 23:55
    live(rig, [r for r in city.readings() if r.data_time.timestamp() < before_midnight])
    assert of(rig, "R4") == []
    rig.tick(before_midnight + rig.eventtime.lateness_s + 3600)
    (r4,) = of(rig, "R4")
    assert r4["subject_id"].endswith("@2026-11-20")


def test_explanations_are_frozen_per_event() -> None:
    """Opening, escalation and recovery each say what held at their moment; the recovery of
    low load does not repeat the low-load sentence with the values of the recovery."""
    city = SyntheticCity("X", DAY, scenarios=["r5_pos", "r1_pos"], healthy=0)
    rig = EngineRig(city)
    live(rig, list(city.readings()))
    finish(rig)
    r5 = [op for op in rig.ops if op["rule_code"] == "R5"]
    opening = next(op for op in r5 if op["op"] == "open")
    recovery = next(op for op in r5 if op["op"] == "recover")
    assert "< 低负荷阈值 9.0 kW" in opening["explanation"]
    value = float(opening["explanation"].split("除尘风机 ")[1].split(" kW")[0])
    assert value < 9.0, "the value shown is the one below the threshold"
    assert "低负荷阈值" not in recovery["explanation"] and "自动恢复" in recovery["explanation"]
    r1 = [op for op in rig.ops if op["rule_code"] == "R1"]
    escalation = next(op for op in r1 if op["op"] == "escalate")
    assert "较重" in escalation["explanation"] and "除尘器1[停运]" in escalation["explanation"]
    assert "除尘风机 0.0 kW" in escalation["explanation"], "the stopped facility's own value"
    (row,) = [a for a in rig.alarms() if a["rule_code"] == "R1"]
    assert row["explanation"] == next(op for op in r1 if op["op"] == "open")["explanation"]


def test_r5_fires_when_the_power_ratio_collapses_against_its_learned_median() -> None:
    city = SyntheticCity("V", DAY, scenarios=[], healthy=1)
    group = city.enterprises[0].group
    # Learned: control draws 0.3 × production. Now 10 kW against 80 kW (0.125 < 0.5 × 0.3),
    # above the low-load threshold (9 kW), so only the ratio test can see it.
    rig = EngineRig(city, group_ratio={group: 0.3}.get)
    e = city.enterprises[0].id
    t0 = city.start
    readings = []
    for i in range(90):
        t = t0 + timedelta(minutes=i)
        for suffix, mn, kw in (("P", "A", 80.0), ("C", "B", 24.0 if i < 10 else 10.0),
                               ("T", "A", 100.0)):  # fmt: skip
            readings.append(
                PointReading(
                    enterprise_id=e,
                    point_id=f"{e}-{suffix}",
                    mn=f"{e}-{mn}",
                    cn="2011",
                    data_time=t,
                    values={"active_power_kw": kw, "voltage_v:A": 228.0},
                )
            )
    live(rig, readings)
    (r5,) = rig.alarms()
    assert r5["rule_code"] == "R5" and "30 日中位数" in r5["explanation"]
    assert r5["first_at"] == t0.timestamp() + 600


def test_state_score_keeps_the_recorded_order_of_simultaneous_changes() -> None:
    """At a power restoration the engine records "stopped" then "running" with the same
    `since`; the scorer must take the last one recorded, not the alphabetically last."""
    t0 = datetime(2026, 11, 20, 10, tzinfo=UTC)
    truth = {"F": [(t0 + timedelta(minutes=m), "running") for m in range(30)]}
    changes = {"F": [(t0, "power_loss"), (t0, "stopped"), (t0, "running")]}
    score = score_states(truth, changes)
    assert score["precision"] == 1.0 and score["recall"] == 1.0, score
