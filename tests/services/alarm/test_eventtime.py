"""Event time (issue 19), in memory: watermarks and the frontier, the lateness bound, late
data re-opening the judgement (amendments, retractions, late findings), and the same city
giving the same alarms whether its data arrive in order, skewed and in bursts, or after an
outage all at once."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import date

from alarm_city import SyntheticCity
from alarm_engine import EngineRig
from ecowatt_kernel.contracts import PointReading

DAY = date(2026, 11, 20)
MIN = 60.0


def minutes(city: SyntheticCity) -> dict[float, list[PointReading]]:
    """The city's readings by data minute."""
    out: dict[float, list[PointReading]] = defaultdict(list)
    for r in city.readings():
        out[r.data_time.timestamp()].append(r)
    return dict(sorted(out.items()))


def play_in_order(rig: EngineRig) -> None:
    """Live: every minute arrives 30 s after its data time, the timer runs every minute."""
    for t, batch in minutes(rig.city).items():
        rig.offer(batch, t + 30)
        rig.tick(t + 45)
    rig.tick(rig.city.end.timestamp() + rig.eventtime.lateness_s + 600)


def play_skewed(rig: EngineRig, lag_min: int, burst_min: int, seed: int = 3) -> None:
    """As fast as possible, an hour after the data (a catch-up): bursts of `burst_min`
    minutes, every enterprise's second device (`…-B`) `lag_min` behind its first,
    enterprises shuffled within a burst."""
    rng = random.Random(seed)
    by_minute = minutes(rig.city)
    times = list(by_minute)
    clock = rig.city.end.timestamp() + 3600  # a replay: the service clock is past the data
    for i in range(0, len(times) + lag_min, burst_min):
        batch: list[PointReading] = []
        for t in times[i : i + burst_min]:
            batch.extend(r for r in by_minute[t] if not r.mn.endswith("-B"))
        for t in times[max(0, i - lag_min) : max(0, i - lag_min + burst_min)]:
            batch.extend(r for r in by_minute[t] if r.mn.endswith("-B"))
        rng.shuffle(batch)
        clock += 5  # seconds of service time per burst
        for chunk in range(0, len(batch), 97):
            part = sorted(batch[chunk : chunk + 97], key=lambda r: r.data_time)
            rig.offer(part, clock)
    rig.tick(clock + rig.eventtime.lateness_s + 1)


def play_outage(rig: EngineRig, enterprises: set[str], start: int, end: int) -> None:
    """Live, but the devices of `enterprises` are cut off from minute `start` to `end`: they
    keep their data and send them, oldest first, once the link is back (then live again)."""
    city = rig.city
    held: list[PointReading] = []
    for t, batch in minutes(city).items():
        minute = (t - city.start.timestamp()) / MIN
        cut = start <= minute < end
        now = t + 30
        if cut:
            held.extend(r for r in batch if r.enterprise_id in enterprises)
            batch = [r for r in batch if r.enterprise_id not in enterprises]
        elif held:
            for i in range(0, len(held), 300):  # the backlog, in uploads of its own
                rig.offer(held[i : i + 300], now)
            held = []
        rig.offer(batch, now)
        rig.tick(t + 45)
    rig.tick(city.end.timestamp() + rig.eventtime.lateness_s + 600)


def alarm_set(rig: EngineRig) -> set[tuple[str, str, int]]:
    """(rule, subject, start minute) of every alarm in force."""
    return {(a["rule_code"], a["subject_id"], round(a["first_at"] / MIN)) for a in rig.alarms()}


def same(a: set[tuple[str, str, int]], b: set[tuple[str, str, int]]) -> bool:
    """Equal, starts within a minute."""
    unmatched = set(b)
    for rule, subject, minute in a:
        hit = next(
            (x for x in unmatched if x[:2] == (rule, subject) and abs(x[2] - minute) <= 1), None
        )
        if hit is None:
            return False
        unmatched.discard(hit)
    return not unmatched


# ------------------------------------------------------------------------------ frontier


def test_the_frontier_waits_for_the_slowest_reporting_device() -> None:
    """Device B's data lag A's by 8 minutes: the enterprise is judged up to B's watermark, so
    B's point never looks offline and A's data wait."""
    city = SyntheticCity("W", DAY, scenarios=[], healthy=1)
    rig = EngineRig(city)
    by_minute = list(minutes(city).items())
    e = city.enterprises[0].id
    for i in range(8, 60):
        t, batch = by_minute[i]
        lagging = [r for r in by_minute[i - 8][1] if r.mn.endswith("-B")]
        rig.offer([r for r in batch if r.mn.endswith("-A")] + lagging, t + 30)
        rig.tick(t + 45)
    seq = rig.runtime(e).seq
    assert seq["frontier"] == seq["devices"][f"{e}-B"]["wm"] == by_minute[51][0]
    assert seq["devices"][f"{e}-A"]["wm"] == by_minute[59][0]
    assert len(seq["pending"]) == 8 * 2, "A's last 8 minutes (2 points) wait"
    assert not [s for s in rig.states if s.state == "offline"]
    assert seq["checkpoint"] is None, "no gap, nothing kept"


def test_a_silent_device_is_judged_without_after_the_lateness_bound() -> None:
    city = SyntheticCity("L", DAY, scenarios=[], healthy=1)
    rig = EngineRig(city)
    e = city.enterprises[0].id
    by_minute = list(minutes(city).items())
    for t, batch in by_minute[:100]:
        rig.offer(batch, t + 30)
    last_b = by_minute[99][0]
    for t, batch in by_minute[100:130]:
        rig.offer([r for r in batch if r.mn.endswith("-A")], t + 30)
        seq = rig.runtime(e).seq
        if t + 30 - (last_b + 30) <= rig.eventtime.lateness_s:
            assert seq["frontier"] == last_b, "within the bound: wait for B"
    seq = rig.runtime(e).seq
    assert seq["frontier"] == by_minute[129][0], "past the bound: judged without B"
    assert seq["checkpoint"]["at"] == last_b, "a checkpoint before B's gap"
    offline = [s for s in rig.states if s.state == "offline" and s.subject_kind == "point"]
    assert [(s.subject_id, s.since) for s in offline] == [(f"{e}-C", last_b + 60)]


def test_a_device_never_heard_of_holds_its_enterprise_up_to_the_bound() -> None:
    city = SyntheticCity("N", DAY, scenarios=[], healthy=1)
    rig = EngineRig(city)
    e = city.enterprises[0].id
    by_minute = list(minutes(city).items())
    t0 = by_minute[0][0]
    for t, batch in by_minute[:10]:
        rig.offer([r for r in batch if r.mn.endswith("-A")], t + 30)
    assert rig.runtime(e).seq["frontier"] is None, "B may still come"
    rig.tick(t0 + 30 + rig.eventtime.lateness_s + 10)  # the bound after A was first heard of
    assert rig.runtime(e).seq["frontier"] == by_minute[9][0]


def test_a_late_sample_inside_a_judged_series_changes_nothing() -> None:
    city = SyntheticCity("D", DAY, scenarios=[], healthy=1)
    rig = EngineRig(city)
    e = city.enterprises[0].id
    by_minute = list(minutes(city).items())
    held = [r for r in by_minute[30][1] if r.point_id == f"{e}-P"]
    for t, batch in by_minute[:60]:
        rig.offer([r for r in batch if r not in held], t + 30)
    rig.offer(held, by_minute[59][0] + 40)
    seq = rig.runtime(e).seq
    assert seq["late_dropped"] == 1 and seq["checkpoint"] is None and rig.replays == 0


# --------------------------------------------------------------------- re-judgement


def test_backfill_after_an_outage_retracts_offline_and_finds_the_hidden_r1() -> None:
    """Both devices cut off 18:40–22:00 (200 minutes) while the control facility is off
    19:00–21:05: live, OFFLINE opens for both at 20:40 and no R1 can be seen; the back-fill
    retracts both OFFLINE alarms, with the reason, and R1 is found as a late finding."""
    city = SyntheticCity("O", DAY, scenarios=["r1_pos"], healthy=0)
    rig = EngineRig(city)
    e = city.enterprises[0].id
    play_outage(rig, {e}, 100, 300)
    retracted = rig.retracted()
    assert {op["rule_code"] for op in retracted} == {"OFFLINE"} and len(retracted) == 2
    assert all("迟到/补传数据" in op["reason"] and "撤回" in op["reason"] for op in retracted)
    live = {a["rule_code"]: a for a in rig.alarms()}
    assert set(live) == {"R1", "R4"}
    r1 = live["R1"]
    assert r1["late"] is True and r1["first_at"] == city.at(120).timestamp() + 2
    assert r1["recovered_at"] is not None and r1["opened_at"] >= city.at(300).timestamp()
    assert "自动恢复" in r1["closing_explanation"]
    checkpoint = rig.runtime(e).seq["checkpoint"]  # the data stop at 00:20: a new one
    assert checkpoint["at"] > city.at(300).timestamp(), "the outage's released once filled"
    withdrawn = {(w[1], w[2]) for w in rig.withdrawn}
    assert (f"{e}-C", "offline") in withdrawn and (e + "-CF", "offline") in withdrawn


def test_late_data_amend_an_alarm_they_change() -> None:
    """The production device is cut off 20:30–21:30 inside a 19:00–21:05 control stop: live,
    production looks offline, so R1 ends at 20:30 (level 1); the back-fill shows production
    running to 21:05, and the same R1 is amended — end and level — not doubled."""
    city = SyntheticCity("A", DAY, scenarios=["r1_pos"], healthy=0)
    rig = EngineRig(city)
    e = city.enterprises[0].id
    held: list[PointReading] = []
    for t, batch in minutes(city).items():
        minute = (t - city.start.timestamp()) / MIN
        a = [r for r in batch if r.mn == f"{e}-A"]
        if 210 <= minute < 270:
            held.extend(a)
            batch = [r for r in batch if r not in a]
        elif held:
            rig.offer(held, t + 20)
            held = []
        rig.offer(batch, t + 30)
        rig.tick(t + 45)
    rig.tick(city.end.timestamp() + 1200)
    amended = [op for op in rig.ops if op["op"] == "amend"]
    assert [op["id"] for op in amended] == [a["id"] for a in rig.alarms() if a["rule_code"] == "R1"]
    assert "恢复时间" in amended[0]["amendment"] and "级别 1 → 2" in amended[0]["amendment"]
    (r1,) = [a for a in rig.alarms() if a["rule_code"] == "R1"]
    assert abs(r1["recovered_at"] - city.at(245).timestamp()) < 120 and r1["level"] == 2


def test_late_data_older_than_any_checkpoint_are_counted_not_judged() -> None:
    city = SyntheticCity("U", DAY, scenarios=[], healthy=1)
    rig = EngineRig(city, horizon_s=1800)
    e = city.enterprises[0].id
    by_minute = list(minutes(city).items())
    held = [r for t, b in by_minute[100:200] for r in b if r.mn.endswith("-B")]
    for t, batch in by_minute[:300]:
        rig.offer([r for r in batch if r not in held], t + 30)
        rig.tick(t + 45)
    assert rig.runtime(e).seq["checkpoint"] is None, "released past the horizon"
    rig.offer(held, by_minute[299][0] + 60)
    assert rig.runtime(e).seq["late_unjudged"] == len(held)


# --------------------------------------------------------------- the same alarms, always


def test_the_same_city_gives_the_same_alarms_however_its_data_arrive() -> None:
    """In order; as fast as possible with every second device 15 minutes behind in bursts of
    20 minutes; with a 3-hour outage of five enterprises followed by their back-fill."""
    city = SyntheticCity("Q", DAY)
    in_order = EngineRig(city)
    play_in_order(in_order)
    expected = alarm_set(in_order)
    assert len(expected) >= 20
    assert not in_order.retracted() and not [a for a in in_order.alarms() if a.get("late")]

    skewed = EngineRig(city)
    play_skewed(skewed, lag_min=15, burst_min=20)
    assert same(alarm_set(skewed), expected), sorted(alarm_set(skewed) ^ expected)

    cut = {e.id for e in city.enterprises if e.scenario in ("r1_pos", "r2_pos", "r5_pos",
                                                             "healthy", "r6_pos")}  # fmt: skip
    outage = EngineRig(city)
    play_outage(outage, cut, 110, 290)
    assert same(alarm_set(outage), expected), sorted(alarm_set(outage) ^ expected)
    offline = {op["subject_id"] for op in outage.retracted() if op["rule_code"] == "OFFLINE"}
    assert offline == {f"{e}-{d}" for e in cut for d in "AB"}, "every device's OFFLINE withdrawn"
    late = {a["rule_code"] for a in outage.alarms() if a.get("late")}
    assert {"R1", "R5", "R6"} <= late
