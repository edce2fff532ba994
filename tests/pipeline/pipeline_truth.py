"""What the platform should conclude from the simulator's ground truth.

The simulator records every fault it injects (`sim.ground_truth`: assignments and events with
kind, MN, enterprise, facility, points, start/end) and its load model says when every facility
runs. From those two, this module derives, for the simulated day D:

**Validation findings**, as (rule_code, subject_id, D) with the finding's subject (point,
device or enterprise), following `docs/data-quality-rules.md`:

* `negative_energy` (reversed CT on a point for 1–2 h) → `negative_energy` 电量为负 **and**
  `negative_power` 功率为负值 on the point: the counter runs backwards (ΔE < 0, Cou < 0) and
  P < 0 for 60–120 consecutive samples (3 are enough; §8, §12).
* `meter_reset` (the counter drops to 0 once) → `negative_energy` on the point, the day of the
  reset (a drop to ≤ 10 % of the previous reading is a reset, §8).
* `constant_power` (P, PF, I, U frozen for 5–7 h) → `constant_power` 功率为恒定值 on the point,
  the day its constant run reaches 4 h plus one sample (§13).
* `offline` (the logger silent 70–110 min) → `device_offline` 设备离线 on the MN (daily check:
  the longest silence exceeds 30 min, §17); its points' completeness drops by the silence.
* `power_cut`, `control_off`, `late_start`, `early_stop`, `low_load` → nothing: real
  consumption, correctly metered, is no data-quality problem.
* `garbage`, `split_packets` → nothing: transport faults that ingest absorbs.

Documented side effects, *tolerated* (neither required nor counted as false positives):
`sub_meters_exceed_total` of the enterprise on a day one of its points has `negative_energy`
or `constant_power` (a backward or frozen meter breaks the enterprise's energy balance), and
`device_offline` for a silence within two minutes of the 30-minute limit.

**Alarms**, as `ExpectedAlarm(rule, subject, start, end, suppressed)` (R1–R6 on the control
group; R4 once per group and day), derived from the facilities' true schedules rather than
from fault kinds, so that every consequence of a fault counts. P = the group's production
running (its production facilities' windows, without power cuts and without the time its
production or control logger is offline); C = its control facilities running (ALL: every one,
ANY: one), from the load model's control windows minus `control_off` windows (a control at
low load still runs), minus a power cut and the control's restart delay after it.

* R1 — a stretch of P without C of ≥ 33 min (confirmation 30 min); 27–33 min tolerated.
* R2 — at a production start (a P window beginning inside the day, also when the power
  returns), C starts more than `start_lead_min` + 2 min later, before P ends; from
  `start_lead_min` − 1 min tolerated.
* R3 — at a production stop, C stopped more than `stop_lag_min` + 2 min earlier after having
  run in that window; from `stop_lag_min` − 1 min tolerated.
* R4 — day D has ≥ 1.05 h of P and coverage |P ∩ C| ÷ |P| < 0.94; 0.94–0.96 (or 0.95–1.05 h
  of P) tolerated.
* R5 — a `low_load` window inside P of ≥ 63 min (confirmation 60 min); 57–63 min tolerated.
* R6 — the control logger offline, or its control point's readings invalid (frozen; see
  below), while production runs for ≥ 63 min; 57–63 min tolerated.
* R7 and OFFLINE — never: no fault makes unmonitored load, offline windows are under 2 h.

An expected alarm is *suppressed* when a power cut of its enterprise (with the 30 minutes of
grace after the power returns) or an approved outage filing for one of its facilities
overlaps it; within 5 minutes of a grace period's end either status is accepted.

Meter faults (`negative_energy`, `constant_power`) make a point's data invalid or misleading
for hours: any alarm of the groups of that point's facility, of its enterprise's total line
(R7) or of its logger (OFFLINE) from an hour before to three hours after the fault is
tolerated (a backward meter, or OFFLINE for a logger that measures nothing else), and alarms
of those groups in that time are not required either (a frozen control reading hides a late
restart) — with one exception the rules state: a control point frozen past validation's
`constant_power` window (4 h plus a sample) sends readings flagged invalid, so it sends no
valid data, and R6 (关联离线) is *required* for the time production runs meanwhile.

The simulated day is drawn clear of the thresholds (`conftest.py`: late starts of 17–23
minutes, early stops of 50–65), so the bands above tolerate nothing on it but a broken
meter's doing (`test_alarm.py` checks that).

**Facility states**, minute by minute: `power_loss` in a power cut; `offline` while the
facility's logger is offline; production `running` inside its windows (else `stopped`);
control `running` / `low_load` / `stopped` from its windows and faults. Facilities with a
meter fault are left out (their readings are wrong by design).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from alarm_city import ExpectedAlarm
from alarm_scores import score_alarms
from ecowatt_simulator import FaultKind, Fleet
from ecowatt_simulator.fleet import GroupSpec
from ecowatt_simulator.load import merge_windows
from ecowatt_validation import rules as VR
from pipeline_harness import PipelineRun

HARMLESS = ("garbage", "split_packets")
"""Fault kinds that must leave no trace past ingest: their devices count as healthy."""
Window = tuple[float, float]
MIN = 60.0
METER_FAULTS = {FaultKind.NEGATIVE_ENERGY.value, FaultKind.CONSTANT_POWER.value}
METER_FAULT = "meter fault"
"""How the cause of an alarm tolerated for a broken meter begins (`AlarmTruth`)."""


# --------------------------------------------------------------------------- windows


def clip(windows: Iterable[Window], lo: float, hi: float) -> list[Window]:
    return [(max(s, lo), min(e, hi)) for s, e in windows if e > lo and s < hi]


def subtract(windows: Iterable[Window], cuts: Iterable[Window]) -> list[Window]:
    out = list(windows)
    for c0, c1 in cuts:
        pieces: list[Window] = []
        for s, e in out:
            if c1 <= s or c0 >= e:
                pieces.append((s, e))
                continue
            if s < c0:
                pieces.append((s, c0))
            if c1 < e:
                pieces.append((c1, e))
        out = pieces
    return out


def intersect(a: Iterable[Window], b: Iterable[Window]) -> list[Window]:
    out: list[Window] = []
    bs = list(b)
    for s, e in a:
        for t0, t1 in bs:
            lo, hi = max(s, t0), min(e, t1)
            if hi > lo:
                out.append((lo, hi))
    return merge_windows(out)


def length(windows: Iterable[Window]) -> float:
    return sum(e - s for s, e in windows)


def inside(t: float, windows: Iterable[Window]) -> bool:
    return any(s <= t < e for s, e in windows)


def at(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


# ------------------------------------------------------------------------ the world


class World:
    """The fleet's true schedule on day D, from the simulator's load model and fault plan."""

    def __init__(self, run: PipelineRun) -> None:
        self.run = run
        self.fleet: Fleet = run.fleet
        self.model = run.sim.model
        self.plan = run.sim.plan
        self.lo = run.day_start.timestamp()
        self.hi = run.day_end.timestamp()
        self.end = run.truth.end
        self.days = [self.model.local.day_index(self.lo) - 1, self.model.local.day_index(self.lo)]
        self.events = run.truth.events
        self.by_kind: dict[str, list[Any]] = defaultdict(list)
        for e in self.events:
            self.by_kind[e.kind].append(e)

    def span(self, windows: Iterable[Window]) -> list[Window]:
        """Windows clipped to the simulated period (the day and its tail)."""
        return clip(merge_windows(list(windows)), self.lo, self.end)

    def offline(self, mn: str | None) -> list[Window]:
        return [(e.start, e.end) for e in self.by_kind["offline"] if e.mn == mn]

    def cuts(self, enterprise_id: str) -> list[tuple[float, float, float]]:
        """(cut start, power back, control restart) of the enterprise's power cuts."""
        return [
            (e.start, e.end, e.detail["control_restart_at"])
            for e in self.by_kind["power_cut"]
            if e.enterprise_id == enterprise_id
        ]

    def device_of(self, facility_id: str) -> str | None:
        points = self.fleet.points_of_facility(facility_id)
        return points[0].device_mn if points else None

    def production(self, facility_id: str) -> list[Window]:
        enterprise = self.fleet.facilities[facility_id].enterprise_id
        windows = self.span(
            w for d in self.days for w in self.model.production_windows(facility_id, d)
        )
        return subtract(windows, [(s, e) for s, e, _ in self.cuts(enterprise)])

    def control_faults(self, facility_id: str, kind: str) -> list[Window]:
        return [(e.start, e.end) for e in self.by_kind[kind] if e.facility_id == facility_id]

    def control(self, facility_id: str) -> list[Window]:
        """When the control facility runs (low load included)."""
        enterprise = self.fleet.facilities[facility_id].enterprise_id
        windows = self.span(
            w for d in self.days for w in self.model.control_windows(facility_id, d)
        )
        windows = subtract(windows, self.control_faults(facility_id, "control_off"))
        return subtract(windows, [(s, r) for s, _, r in self.cuts(enterprise)])

    def group_control(self, g: GroupSpec) -> list[Window]:
        per = [self.control(f) for f in g.control_ids]
        if g.mode == "all" or len(per) == 1:
            out = per[0]
            for other in per[1:]:
                out = intersect(out, other)
            return out
        return merge_windows([w for p in per for w in p])


# ----------------------------------------------------------------------- validation


INJECTABLE_RULES = {
    FaultKind.NEGATIVE_ENERGY.value: {VR.NEGATIVE_ENERGY, VR.NEGATIVE_POWER},
    FaultKind.METER_RESET.value: {VR.NEGATIVE_ENERGY},
    FaultKind.CONSTANT_POWER.value: {VR.CONSTANT_POWER},
    FaultKind.OFFLINE.value: {VR.DEVICE_OFFLINE},
}
"""Every validation rule the simulator can make fail, by the fault that does it. (Its other
faults are facility faults — real consumption, no data-quality problem — or transport
faults ingest absorbs; late live data it cannot make: what a back-fill brings is history.)"""


@dataclass
class FindingTruth:
    must: set[tuple[str, str, Any]] = field(default_factory=set)
    tolerated: dict[tuple[str, str, Any], str] = field(default_factory=dict)
    """Findings that may or may not occur, each with the cause."""


def expected_findings(run: PipelineRun) -> FindingTruth:
    day = run.options.day
    lo, hi = run.day_start.timestamp(), run.day_end.timestamp()
    interval = run.options.rtd_interval_s
    out = FindingTruth()
    for e in run.truth.events:
        if not (e.start < hi and e.end > lo):
            continue
        point = e.point_ids[0] if e.point_ids else ""
        balance = (VR.SUB_METERS_EXCEED_TOTAL, e.enterprise_id, day)
        if e.kind == FaultKind.NEGATIVE_ENERGY:
            out.must |= {(VR.NEGATIVE_ENERGY, point, day), (VR.NEGATIVE_POWER, point, day)}
            out.tolerated[balance] = "a backward meter breaks the enterprise's energy balance"
        elif e.kind == FaultKind.METER_RESET:
            if lo <= e.start < hi:
                out.must.add((VR.NEGATIVE_ENERGY, point, day))
        elif e.kind == FaultKind.CONSTANT_POWER:
            if lo <= e.start + 4 * 3600 + interval < hi:
                out.must.add((VR.CONSTANT_POWER, point, day))
            out.tolerated[balance] = "a frozen meter breaks the enterprise's energy balance"
        elif e.kind == FaultKind.OFFLINE:
            silence = e.end - e.start
            if silence >= 32 * MIN:
                out.must.add((VR.DEVICE_OFFLINE, e.mn, day))
            elif silence >= 28 * MIN:
                out.tolerated[(VR.DEVICE_OFFLINE, e.mn, day)] = "silence near 30 minutes"
    return out


def score_findings(run: PipelineRun, truth: FindingTruth) -> dict[str, Any]:
    """Strict precision counts every finding not required as false; the tolerated one leaves
    out those with a stated cause (listed by cause; their share is bounded by the test)."""
    day = run.options.day
    found = {f for f in run.findings if f[2] == day}
    hits = found & truth.must
    tolerated = {f: truth.tolerated[f] for f in found - truth.must if f in truth.tolerated}
    by_cause: dict[str, int] = defaultdict(int)
    for cause in tolerated.values():
        by_cause[cause] += 1
    counted = len(found) - len(tolerated)
    return {
        "expected": len(truth.must),
        "found": len(found),
        "tolerated": sorted(tolerated),
        "tolerated_by_cause": dict(by_cause),
        "tolerated_share": len(tolerated) / len(found) if found else 0.0,
        "precision": len(hits) / len(found) if found else 1.0,
        "precision_tolerated": len(hits) / counted if counted else 1.0,
        "recall": len(hits) / len(truth.must) if truth.must else 1.0,
        "false_positives": sorted(found - truth.must - set(tolerated)),
        "missed": sorted(truth.must - found),
    }


# -------------------------------------------------------------------------- alarms

CONSTANT_WINDOW_H = float(VR.RULES_BY_CODE[VR.CONSTANT_POWER].defaults["window_h"])
"""Validation's `constant_power` window: a reading frozen this long (plus one sample) is
flagged `constant_value` and invalid from then on (docs/data-quality-rules.md §13)."""
CONFIRM_MIN = {"R1": 30, "R5": 60, "R6": 60}
RECOVER_MIN = {"R1": 30, "R5": 30, "R6": 15}
SLACK_MIN = 3
"""Durations within this of a rule's threshold may go either way (sampling, confirmation)."""

TOLERATED_SHARE = 0.1
"""At most this share of the fired alarms may be tolerated extras (`score`)."""


@dataclass
class AlarmTruth:
    must: list[ExpectedAlarm] = field(default_factory=list)
    tolerated: list[tuple[ExpectedAlarm, str]] = field(default_factory=list)
    """Alarms that may or may not fire, each with the cause."""
    tolerated_groups: list[tuple[str, float, float, str]] = field(default_factory=list)
    """(group, total point or MN; from, to; cause): any alarm there may be a fault's doing."""


def expected_alarms(run: PipelineRun, filings: list[dict[str, Any]]) -> AlarmTruth:
    world = World(run)
    fleet = world.fleet
    lo, hi = world.lo, world.hi
    out = AlarmTruth()

    def suppressed(g: GroupSpec, start: float, end: float) -> bool:
        for s, e, _ in world.cuts(g.enterprise_id):
            if s <= end and start <= e + 30 * MIN:
                return True
        facilities = set(g.production_ids) | set(g.control_ids)
        for f in filings:
            if f["enterprise_id"] != g.enterprise_id:
                continue
            if f["facility_ids"] and not facilities & set(f["facility_ids"]):
                continue
            fs = datetime.fromisoformat(f["starts_at"]).timestamp()
            fe = datetime.fromisoformat(f["ends_at"]).timestamp()
            if fs <= end and start <= fe:
                return True
        return False

    # Meter faults: the data of a point is wrong for hours (see the module's docstring).
    invalid: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    """A control meter frozen past validation's `constant_power` window: its readings are
    invalid, so the control facility sends no valid data — offline to the alarm service, and
    R6 while production runs (docs/alarm-rules.md, R6 and §1 `offline`)."""
    for e in run.truth.events:
        if e.kind not in METER_FAULTS:
            continue
        span = (e.start - 3600, e.end + 3 * 3600)
        cause = f"{METER_FAULT} {e.kind} of {e.point_ids[0] if e.point_ids else e.mn}"
        out.tolerated_groups.append((e.mn, *span, cause))  # all its points invalid: OFFLINE
        for g in fleet.groups.values():
            if e.facility_id in g.production_ids or e.facility_id in g.control_ids:
                out.tolerated_groups.append((g.id, *span, cause))
        for p in fleet.points_of_enterprise(e.enterprise_id or ""):
            if p.point_type == "total" and p.id in e.point_ids:
                out.tolerated_groups.append((p.id, *span, cause))
        frozen_from = e.start + CONSTANT_WINDOW_H * 3600 + run.options.sample_s
        if e.kind == FaultKind.CONSTANT_POWER and frozen_from < e.end:
            for g in fleet.groups.values():
                if e.facility_id in g.control_ids:
                    invalid[g.id].append((frozen_from, e.end, cause))

    def required_despite(rule: str, g: GroupSpec, start: float) -> str:
        """The meter fault whose invalid data are this very alarm's condition (R6)."""
        if rule != "R6":
            return ""
        for s0, s1, why in invalid[g.id]:
            if s0 - MIN <= start < s1:
                return why
        return ""

    def add(
        rule: str, g: GroupSpec, start: float, end: float, *, must: bool, cause: str = ""
    ) -> None:
        if start >= hi:
            return
        own = required_despite(rule, g, start)
        for x, s0, s1, why in out.tolerated_groups:
            if x == g.id and s0 <= end and start <= s1 and why != own:
                must, cause = False, why  # a meter fault of the group may hide or change it
        alarm = ExpectedAlarm(rule, g.id, at(start), at(end), suppressed(g, start, end))
        if must:
            out.must.append(alarm)
        else:
            out.tolerated.append((alarm, cause))
        if _near_grace_end(world, g, start, end):  # a borderline suppression: accept either
            flipped = ExpectedAlarm(rule, g.id, at(start), at(end), not alarm.suppressed)
            out.tolerated.append((flipped, "suppression decided within minutes of a grace end"))

    for g in sorted(fleet.groups.values(), key=lambda g: g.id):
        if not g.production_ids or not g.control_ids:
            continue
        running = merge_windows([w for f in g.production_ids for w in world.production(f)])
        running = subtract(
            running, [w for f in g.production_ids for w in world.offline(world.device_of(f))]
        )
        silent = merge_windows(
            [w for f in g.control_ids for w in world.offline(world.device_of(f))]
            + [(s0, s1) for s0, s1, _ in invalid[g.id]]
        )
        prod = subtract(running, silent)
        ctrl = world.group_control(g)
        lows = [w for f in g.control_ids for w in world.control_faults(f, "low_load")]
        # One episode, one alarm: R1 (production without control), R5 (low load inside
        # production) and R6 (the control logger silent while production runs) that touch
        # are one episode; its alarm is the rule that confirms first, from its start.
        windows = (
            [("R1", s, e) for s, e in subtract(prod, ctrl) if s < hi]
            + [("R5", s, e) for s, e in intersect(prod, merge_windows(lows))]
            + [("R6", s, e) for s, e in intersect(running, silent)]
        )
        for episode in _episodes(windows):
            _add_episode(episode, g, add)
        # R2 and R3 at production starts and stops: an alarm of their own when shorter than
        # R1's confirmation, else a facet of the R1 episode (counted there).
        for ps, pe in running:
            if lo < ps < hi and not inside(ps, ctrl):
                starts = [s for s, _ in ctrl if ps < s < pe]
                if starts:
                    _add_event("R2", g, ps, starts[0], g.start_lead_min, add)
            if pe < min(hi, world.end) and not inside(pe - 1, ctrl):
                ran = [(s, e) for s, e in ctrl if s < pe and e > ps]
                if ran:
                    stop = max(e for _, e in ran)
                    _add_event("R3", g, stop, pe, g.stop_lag_min, add)
        # R4: the day's coverage.
        day_prod = clip(prod, lo, hi)
        hours = length(day_prod) / 3600
        if hours >= 0.95:
            coverage = length(intersect(day_prod, ctrl)) / length(day_prod)
            first, last = day_prod[0][0], day_prod[-1][1]
            if hours >= 1.05 and coverage < 0.94:
                add("R4", g, first, last, must=True)
            elif coverage < 0.96:
                add("R4", g, first, last, must=False, cause="coverage near 95 %")
    return out


def _episodes(windows: list[tuple[str, float, float]]) -> list[list[tuple[str, float, float]]]:
    """Condition windows of one group chained into episodes: a window that begins before the
    current episode's end plus the recovery time of its rule continues it."""
    episodes: list[list[tuple[str, float, float]]] = []
    for rule, s, e in sorted(windows, key=lambda w: w[1]):
        if episodes:
            last = episodes[-1]
            end = max(w[2] for w in last)
            primary = min(last, key=lambda w: w[1] + CONFIRM_MIN[w[0]] * MIN)
            if s <= end + RECOVER_MIN[primary[0]] * MIN:
                last.append((rule, s, e))
                continue
        episodes.append([(rule, s, e)])
    return episodes


def _add_episode(episode: list[tuple[str, float, float]], g: GroupSpec, add: Any) -> None:
    confirmed = [w for w in episode if (w[2] - w[1]) / MIN >= CONFIRM_MIN[w[0]] + SLACK_MIN]
    borderline = [w for w in episode if (w[2] - w[1]) / MIN >= CONFIRM_MIN[w[0]] - SLACK_MIN]
    end = max(w[2] for w in episode)
    if confirmed:
        rule, start, _ = min(confirmed, key=lambda w: w[1] + CONFIRM_MIN[w[0]] * MIN)
        add(rule, g, start, end, must=True)
        for other, s, _ in borderline:
            if (other, s) != (rule, start) and s + CONFIRM_MIN[other] * MIN < (
                start + CONFIRM_MIN[rule] * MIN
            ):
                add(other, g, s, end, must=False, cause="episode opened by a borderline rule")
    else:
        for rule, s, _ in borderline:
            add(rule, g, s, end, must=False, cause=f"{rule} duration near its confirmation")


def _add_event(rule: str, g: GroupSpec, start: float, end: float, allowed: int, add: Any) -> None:
    """R2 (late start) or R3 (early stop) of `(end − start)` minutes against the group's
    allowance: its own alarm between the allowance and R1's confirmation, borderline near
    either (the R1 episode may or may not confirm), a facet of R1 beyond."""
    minutes = (end - start) / MIN
    r1 = CONFIRM_MIN["R1"]
    if allowed + SLACK_MIN - 1 < minutes < r1 - SLACK_MIN:
        add(rule, g, start, end, must=True)
    elif allowed - 1 <= minutes <= allowed + SLACK_MIN - 1:
        add(rule, g, start, end, must=False, cause=f"{rule} near the group's allowance")
    elif r1 - SLACK_MIN <= minutes < r1 + SLACK_MIN:
        add(rule, g, start, end, must=False, cause=f"{rule} alone or a facet of R1")


def _near_grace_end(world: World, g: GroupSpec, start: float, end: float) -> bool:
    """Whether a power cut's grace period ends (or the cut starts) within 5 minutes of the
    alarm: suppression is then decided by minutes either way."""
    return any(
        abs(start - (e + 30 * MIN)) < 5 * MIN or abs(end - s) < 5 * MIN
        for s, e, _ in world.cuts(g.enterprise_id)
    )


def _subject(alarm: dict[str, Any]) -> str:
    return str(alarm["group_id"] if alarm["rule_code"] == "R4" else alarm["subject_id"])


def score(run: PipelineRun, truth: AlarmTruth) -> dict[str, Any]:
    """`score_alarms` over the alarms raised during day D (retracted ones are not raised).

    Strict precision counts every fired alarm that matches nothing required as false;
    tolerated precision leaves out those a stated cause may explain (listed by cause in
    `tolerated_by_cause`), and `tolerated_share` says how many of the fired alarms needed
    one (bounded by the test: `TOLERATED_SHARE`)."""
    fired = [a for a in run.alarms if a["first_at"] < run.day_end]
    result = score_alarms(truth.must, fired)
    slack = timedelta(minutes=20)

    def cause_of(a: dict[str, Any]) -> str | None:
        end = a.get("recovered_at") or a["last_at"]
        for exp, cause in truth.tolerated:
            if (
                exp.rule_code == a["rule_code"]
                and exp.subject_id == _subject(a)
                and (a["status"] == "suppressed") == exp.suppressed
                and a["first_at"] <= exp.end + slack
                and exp.start <= end + slack
            ):
                return cause
        for subject, s, e, cause in truth.tolerated_groups:
            if subject in (a["subject_id"], a["group_id"]) and at(s) <= a["first_at"] <= at(e):
                return cause
        return None

    tolerated: dict[str, list[dict[str, Any]]] = defaultdict(list)
    false = []
    for a in result["extra"]:
        cause = cause_of(a)
        if cause is None:
            false.append(a)
        else:
            tolerated[cause].append(a)
    count = sum(len(v) for v in tolerated.values())
    counted = len(fired) - count
    result["tolerated_by_cause"] = {k: len(v) for k, v in sorted(tolerated.items())}
    result["tolerated"] = [a for v in tolerated.values() for a in v]
    result["tolerated_share"] = count / len(fired) if fired else 0.0
    result["extra"] = false
    result["precision_tolerated"] = result["matched"] / counted if counted else 1.0
    return result


# ---------------------------------------------------------------------- facility states


def facility_truth(run: PipelineRun) -> dict[str, list[tuple[datetime, str]]]:
    world = World(run)
    fleet = world.fleet
    faulty = {e.facility_id for e in run.truth.events if e.kind in METER_FAULTS}
    out: dict[str, list[tuple[datetime, str]]] = {}
    start, end = int(world.lo + 10 * MIN), int(world.hi)
    for fid, facility in sorted(fleet.facilities.items()):
        if fid in faulty or not fleet.points_of_facility(fid):
            continue
        mn = world.device_of(fid)
        silent = world.offline(mn)
        cuts = world.cuts(facility.enterprise_id)
        control = facility.kind == "control"
        on = world.control(fid) if control else world.production(fid)
        low = world.control_faults(fid, "low_load") if control else []
        series: list[tuple[datetime, str]] = []
        for t in range(start, end, 60):
            if inside(t, silent):
                state = "offline"
            elif any(s <= t < e for s, e, _ in cuts):
                state = "power_loss"
            elif inside(t, on):
                state = "low_load" if inside(t, low) else "running"
            else:
                state = "stopped"
            series.append((at(t), state))
        out[fid] = series
    return out


def healthy_enterprises(run: PipelineRun, harmless: Iterable[str] = ()) -> set[str]:
    """Enterprises none of whose loggers has a fault (besides `harmless` kinds)."""
    allowed = set(harmless)
    faulty = {
        run.fleet.devices[mn].enterprise_id
        for mn, kinds in run.truth.assignments.items()
        if set(kinds) - allowed
    }
    return {d.enterprise_id for d in run.fleet.devices.values() if d.enterprise_id} - faulty
