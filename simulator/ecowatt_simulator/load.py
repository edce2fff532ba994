"""Load models: what every monitored circuit draws at any instant.

Everything here is a pure function of (seed, archive, time), so any instant can be computed
on its own (history, totals across devices, determinism). Physical consumption is modelled
per facility; meters then read it (a meter fault changes the reading, not the consumption).

* Each enterprise has a shift plan, drawn from the seed: continuous (24 h, one maintenance
  stop a week), two shifts (about 06:00–22:00, Sundays off) or a day shift (about 08:00–12:00
  and 13:00–17:30, weekends off); start and end times move by a few minutes every day.
* A production facility runs in its enterprise's shifts, starting up to 20 min late and
  stopping up to 15 min early (per facility and day), ramping up from 30 % over 5–15 min,
  at 55–85 % of its rated power with slow swings and ±3 % noise; stopped, it draws a
  standby load under 1.2 % of rated (below any start/stop threshold).
* A control facility runs whenever a production facility of one of its control groups
  runs: it starts 1–10 min before the first one starts and stops 2–15 min after the last
  one stops (groups with required mode ANY and several control facilities run one of them
  per day, alternating). Running, it draws 70–90 % of rated, with ±2 % noise.
* The total line reads the sum of every facility of the enterprise, auxiliary (indirect)
  circuits, and an unmonitored base load of 4–10 % of the rated sum (40 % of that outside
  the shifts), so it always exceeds the sum of the sub-meters.
* A power cut (fault `power_cut`) takes every circuit of the enterprise to nothing, voltages
  included; when the power returns, production lines ramp up again at once and control
  facilities follow after their restart delay.
* Voltages (per enterprise, 220–232 V with small per-phase offsets), power factor (lower at
  light load) and phase currents (I = P / (PF · ΣU), with a few % imbalance) follow power.

Why one module of ~640 lines: every quantity above is a pure function of the same per-unit
windows and constants (`_Unit`, the cached shift and run windows), and the fault plan and
the orders read those windows back (`FaultSchedule`, `OrderSchedule` are what the model asks
of them in turn, so neither module is imported here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol

from ecowatt_simulator.fleet import Fleet, PointSpec
from ecowatt_simulator.kinds import FaultKind
from ecowatt_simulator.rand import key_of, mix, uniform, unit
from ecowatt_simulator.timebase import LocalTime

__all__ = ["FaultSchedule", "LoadModel", "OrderSchedule", "Sample", "merge_windows"]


class FaultSchedule(Protocol):
    """What the model asks of the fault plan (`faults.FaultPlan`), which reasons about the
    model's windows in turn: the model depends on this, not on the plan's module."""

    def start_delay(self, control_id: str, production_start: float) -> float | None: ...

    def stop_advance(self, control_id: str, production_stop: float) -> float | None: ...

    def control_factor(self, control_id: str, t: float, model: LoadModel) -> float | None: ...

    def power_cut(
        self, enterprise_id: str, t: float, model: LoadModel
    ) -> tuple[float, float, float] | None: ...

    def powered(self, enterprise_id: str, t: float, model: LoadModel) -> bool: ...

    def meter_fault(
        self, point_id: str, t: float, model: LoadModel
    ) -> tuple[FaultKind, float] | None: ...


class OrderSchedule(Protocol):
    """What the model asks of the enterprises' responses to control orders
    (`orders.OrderBook`, which compares runs of the model in turn)."""

    def control_off(self, control_id: str, enterprise_id: str, t: float) -> bool: ...

    def production(
        self,
        facility_id: str,
        enterprise_id: str,
        t: float,
        *,
        power: float,
        standby: float,
        rated: float,
    ) -> float: ...


Window = tuple[float, float]
ShiftKind = Literal["continuous", "two_shift", "day_shift"]
MINUTE = 60.0
HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class Sample:
    """One meter reading: active power (kW), PF, phase currents (A) and voltages (V), switch."""

    power: float
    pf: float
    ia: float
    ib: float
    ic: float
    ua: float
    ub: float
    uc: float
    switch: int


@dataclass(frozen=True, slots=True)
class _Unit:
    """A consumer: a facility (or a point whose facility is not in the archive)."""

    id: str
    enterprise_id: str
    kind: Literal["production", "control"]
    rated: float
    key: int
    load_factor: float
    standby: float
    ramp_s: float
    phase1: float
    phase2: float


class _PointConsts(NamedTuple):
    key: int
    v_nom: float
    v_phase: float
    off_b: float
    off_c: float
    pf_run: float
    imb_a: float
    imb_b: float
    rated: float


def merge_windows(windows: list[Window]) -> list[Window]:
    """Union of time windows, sorted; touching windows are joined."""
    merged: list[Window] = []
    for s, e in sorted(windows):
        if merged and s <= merged[-1][1]:
            if e > merged[-1][1]:
                merged[-1] = (merged[-1][0], e)
        else:
            merged.append((s, e))
    return merged


def _find(windows: list[Window], t: float) -> Window | None:
    for window in windows:
        if window[0] <= t < window[1]:
            return window
    return None


class LoadModel:
    """Power and electrical quantities of every point of a fleet, at any instant."""

    def __init__(
        self,
        fleet: Fleet,
        *,
        seed: int,
        local: LocalTime | None = None,
        faults: FaultSchedule | None = None,
        orders: OrderSchedule | None = None,
    ) -> None:
        self.fleet = fleet
        self.seed = seed
        self.local = local or LocalTime()
        self.faults = faults
        self.orders = orders
        """Heavy-pollution-weather orders and how each enterprise responds (`orders.py`)."""
        self._units: dict[str, _Unit] = {}
        self._point_unit: dict[str, tuple[str, float] | None] = {}
        self._enterprise_units: dict[str, list[_Unit]] = {}
        self._cache: dict[tuple[str, str, int], list[Window]] = {}
        self._point_keys: dict[str, int] = {}
        self._point_consts: dict[str, _PointConsts] = {}
        self._memo: dict[tuple[str, float], float] = {}

    # ---------------------------------------------------------------------------- units

    def _unit(self, unit_id: str, enterprise_id: str, kind: str, rated: float | None) -> _Unit:
        found = self._units.get(unit_id)
        if found is not None:
            return found
        key = key_of(self.seed, "unit", unit_id)
        production = kind != "control"
        if not rated:
            rated = uniform(key, 1, 40.0, 200.0) if production else uniform(key, 1, 8.0, 50.0)
        made = _Unit(
            id=unit_id,
            enterprise_id=enterprise_id,
            kind="production" if production else "control",
            rated=rated,
            key=key,
            load_factor=uniform(key, 2, 0.55, 0.85) if production else uniform(key, 2, 0.7, 0.9),
            standby=uniform(key, 3, 0.0, 0.012) if production else 0.0,
            ramp_s=uniform(key, 4, 300.0, 900.0) if production else uniform(key, 4, 60.0, 180.0),
            phase1=uniform(key, 5, 0.0, 2 * math.pi),
            phase2=uniform(key, 6, 0.0, 2 * math.pi),
        )
        self._units[unit_id] = made
        return made

    def _resolve_point(self, point: PointSpec) -> tuple[str, float] | None:
        """(unit id, share of the unit's power) measured by a facility point."""
        if point.id in self._point_unit:
            return self._point_unit[point.id]
        result: tuple[str, float] | None = None
        if point.point_type in ("production", "control", "combined"):
            facility = self.fleet.facilities.get(point.facility_id or "")
            if facility is not None:
                siblings = [
                    p
                    for p in self.fleet.points_of_facility(facility.id)
                    if p.point_type in ("production", "control", "combined")
                ]
                rated = facility.rated_kw or sum(p.rated_kw or 0.0 for p in siblings) or None
                self._unit(facility.id, facility.enterprise_id, facility.kind, rated)
                total = sum(p.rated_kw or 0.0 for p in siblings)
                if total > 0 and point.rated_kw:
                    share = point.rated_kw / total
                else:
                    share = 1.0 / max(1, len(siblings))
                result = (facility.id, share)
            else:
                kind = "control" if point.point_type == "control" else "production"
                unit_id = f"point:{point.id}"
                self._unit(unit_id, point.enterprise_id, kind, point.rated_kw)
                result = (unit_id, 1.0)
        self._point_unit[point.id] = result
        return result

    def units_of_enterprise(self, enterprise_id: str) -> list[_Unit]:
        found = self._enterprise_units.get(enterprise_id)
        if found is None:
            for facility in self.fleet.facilities_of_enterprise(enterprise_id):
                rated = facility.rated_kw or (
                    sum(p.rated_kw or 0.0 for p in self.fleet.points_of_facility(facility.id))
                    or None
                )
                self._unit(facility.id, enterprise_id, facility.kind, rated)
            for point in self.fleet.points_of_enterprise(enterprise_id):
                self._resolve_point(point)
            found = sorted(
                (u for u in self._units.values() if u.enterprise_id == enterprise_id),
                key=lambda u: u.id,
            )
            self._enterprise_units[enterprise_id] = found
        return found

    def _point_key(self, point_id: str) -> int:
        key = self._point_keys.get(point_id)
        if key is None:
            key = self._point_keys[point_id] = key_of(self.seed, "point", point_id)
        return key

    # ------------------------------------------------------------------------ schedules

    def shift_kind(self, enterprise_id: str) -> ShiftKind:
        draw = unit(key_of(self.seed, "shift", enterprise_id), 0)
        if draw < 0.3:
            return "continuous"
        return "two_shift" if draw < 0.7 else "day_shift"

    def _cached(self, kind: str, subject: str, day: int, compute: object) -> list[Window]:
        cache_key = (kind, subject, day)
        found = self._cache.get(cache_key)
        if found is None:
            found = compute(subject, day)  # type: ignore[operator]
            if len(self._cache) > 500_000:
                self._cache.clear()
            self._cache[cache_key] = found
        return found

    def enterprise_raw(self, enterprise_id: str, day: int) -> list[tuple[float, float, bool, bool]]:
        """Shift windows of one local day: (start, end, start is real, end is real)."""
        start, end = self.local.day_bounds(day)
        key = key_of(self.seed, "shiftday", enterprise_id)
        weekday = self.local.weekday(day)
        kind = self.shift_kind(enterprise_id)
        if kind == "continuous":
            maintenance_day = int(unit(key, 0) * 7)
            if weekday != maintenance_day:
                return [(start, end, False, False)]
            m_start = start + 8 * HOUR + uniform(key, day, 0.0, 2 * HOUR)
            m_end = m_start + uniform(key, day + 1, 4 * HOUR, 8 * HOUR)
            return [(start, m_start, False, True), (m_end, end, True, False)]
        if kind == "two_shift":
            if weekday == 6:
                return []
            s = start + 6 * HOUR + uniform(key, day, -20 * MINUTE, 20 * MINUTE)
            e = start + 22 * HOUR + uniform(key, day + 1, -20 * MINUTE, 20 * MINUTE)
            return [(s, e, True, True)]
        if weekday >= 5:
            return []
        s1 = start + 8 * HOUR + uniform(key, day, -15 * MINUTE, 15 * MINUTE)
        e2 = start + 17.5 * HOUR + uniform(key, day + 1, -15 * MINUTE, 15 * MINUTE)
        return [(s1, start + 12 * HOUR, True, True), (start + 13 * HOUR, e2, True, True)]

    def enterprise_windows(self, enterprise_id: str, day: int) -> list[Window]:
        """The enterprise's shifts around local day `day` (days d-1..d+1, merged)."""
        return self._cached("ent", enterprise_id, day, self._enterprise_windows)

    def _enterprise_windows(self, enterprise_id: str, day: int) -> list[Window]:
        raw = [
            (s, e)
            for d in (day - 1, day, day + 1)
            for s, e, _, _ in self.enterprise_raw(enterprise_id, d)
        ]
        return merge_windows(raw)

    def _production_raw(self, unit_id: str, day: int) -> list[Window]:
        enterprise_id = self._enterprise_of(unit_id)
        key = key_of(self.seed, "stagger", unit_id)
        out: list[Window] = []
        for n, (s, e, real_s, real_e) in enumerate(self.enterprise_raw(enterprise_id, day)):
            if real_s:
                s += uniform(key, day * 8 + n, 0.0, 20 * MINUTE)
            if real_e:
                e -= uniform(key, day * 8 + n + 4, 0.0, 15 * MINUTE)
            if e > s:
                out.append((s, e))
        return out

    def production_windows(self, unit_id: str, day: int) -> list[Window]:
        """When a production facility runs, around local day `day` (merged over d-1..d+1)."""
        return self._cached("prod", unit_id, day, self._production_windows)

    def _production_windows(self, unit_id: str, day: int) -> list[Window]:
        return merge_windows(
            [w for d in (day - 1, day, day + 1) for w in self._production_raw(unit_id, d)]
        )

    def _groups_of(
        self, control_id: str
    ) -> list[tuple[str, tuple[str, ...], str, tuple[str, ...]]]:
        unit_ = self._units.get(control_id)
        enterprise_id = unit_.enterprise_id if unit_ else ""
        facility = self.fleet.facilities.get(control_id)
        if facility is not None:
            enterprise_id = facility.enterprise_id
        return [
            (g.id, g.production_ids, g.mode, g.control_ids)
            for g in self.fleet.groups_of_enterprise(enterprise_id)
            if control_id in g.control_ids
        ]

    def _group_windows(self, production_ids: tuple[str, ...], day: int) -> list[Window]:
        raw: list[Window] = []
        for fid in production_ids:
            raw.extend(w for d in (day - 1, day, day + 1) for w in self._production_raw(fid, d))
        return merge_windows(raw)

    def group_production_windows(self, control_id: str, day: int) -> list[Window]:
        """When production facilities guarded by `control_id` run (union), around `day`."""
        return self._cached("grp", control_id, day, self._group_production_windows)

    def _group_production_windows(self, control_id: str, day: int) -> list[Window]:
        groups = self._groups_of(control_id)
        if not groups:
            enterprise_id = self._enterprise_of(control_id)
            return self.enterprise_windows(enterprise_id, day)
        raw: list[Window] = []
        for _, production_ids, _, _ in groups:
            raw.extend(self._group_windows(production_ids, day))
        return merge_windows(raw)

    def _enterprise_of(self, unit_id: str) -> str:
        facility = self.fleet.facilities.get(unit_id)
        if facility is not None:
            return facility.enterprise_id
        found = self._units.get(unit_id)
        return found.enterprise_id if found else ""

    def group_production_events(
        self, control_id: str, start: float, end: float
    ) -> list[tuple[float | None, float | None]]:
        """Real production starts (s, None) and stops (None, e) guarded by a control facility."""
        events: set[tuple[float | None, float | None]] = set()
        for day in range(self.local.day_index(start), self.local.day_index(end) + 1):
            day_start, day_end = self.local.day_bounds(day)
            for s, e in self.group_production_windows(control_id, day):
                if day_start <= s < day_end and start <= s < end:
                    events.add((s, None))
                if day_start <= e < day_end and start <= e < end:
                    events.add((None, e))
        return sorted(events, key=lambda ev: ev[0] if ev[0] is not None else ev[1] or 0.0)

    def control_windows(self, control_id: str, day: int) -> list[Window]:
        """When a control facility runs, around local day `day`."""
        return self._cached("ctrl", control_id, day, self._control_windows)

    def _control_windows(self, control_id: str, day: int) -> list[Window]:
        key = key_of(self.seed, "lead", control_id)
        groups = self._groups_of(control_id)
        sources: list[tuple[str, str, tuple[str, ...], list[Window]]] = []
        if groups:
            for group_id, production_ids, mode, control_ids in groups:
                sources.append(
                    (group_id, mode, control_ids, self._group_windows(production_ids, day))
                )
        else:
            enterprise_id = self._enterprise_of(control_id)
            sources.append(("", "all", (control_id,), self.enterprise_windows(enterprise_id, day)))
        out: list[Window] = []
        for group_id, mode, control_ids, windows in sources:
            for s, e in windows:
                if mode == "any" and len(control_ids) > 1:
                    duty_draw = unit(key_of(self.seed, "duty", group_id), self.local.day_index(s))
                    if control_ids[int(duty_draw * len(control_ids))] != control_id:
                        continue
                cs = s - uniform(key, int(s), 1 * MINUTE, 10 * MINUTE)
                ce = e + uniform(key, int(e) + 1, 2 * MINUTE, 15 * MINUTE)
                if self.faults is not None:
                    delay = self.faults.start_delay(control_id, s)
                    if delay is not None:
                        cs = s + delay
                    advance = self.faults.stop_advance(control_id, e)
                    if advance is not None:
                        ce = e - advance
                if ce > cs:
                    out.append((cs, ce))
        return merge_windows(out)

    def point_running_windows(self, point_id: str, day: int) -> list[Window]:
        """When the load a point measures runs (the enterprise's shifts for a total line)."""
        point = self.fleet.points.get(point_id)
        if point is None:
            return []
        resolved = self._resolve_point(point)
        if resolved is None:
            return self.enterprise_windows(point.enterprise_id, day)
        unit_ = self._units[resolved[0]]
        if unit_.kind == "control":
            return self.control_windows(unit_.id, day)
        return self.production_windows(unit_.id, day)

    # ------------------------------------------------------------------------------ power

    def unit_power(self, unit_: _Unit, t: float) -> float:
        """Physical power (kW) of a facility at `t` (memoised: totals re-read facilities)."""
        memo_key = (unit_.id, t)
        found = self._memo.get(memo_key)
        if found is None:
            found = self._unit_power(unit_, t)
            if len(self._memo) > 50_000:
                self._memo.clear()
            self._memo[memo_key] = found
        return found

    def _unit_power(self, unit_: _Unit, t: float) -> float:
        day = self.local.day_index(t)
        ti = int(t)
        resumed = -math.inf  # when the unit got its power back after a cut
        if self.faults is not None:
            cut = self.faults.power_cut(unit_.enterprise_id, t, self)
            if cut is not None:
                resumed = cut[2] if unit_.kind == "control" else cut[1]
                if t < resumed:
                    return 0.0
        if unit_.kind == "control":
            if self.orders is not None and self.orders.control_off(
                unit_.id, unit_.enterprise_id, t
            ):
                return 0.0
            window = _find(self.control_windows(unit_.id, day), t)
            if window is None:
                return 0.0
            ramp = min(1.0, 0.3 + 0.7 * (t - max(window[0], resumed)) / unit_.ramp_s)
            level = unit_.rated * unit_.load_factor * ramp
            level *= 1.0 + 0.04 * (unit(unit_.key, ti) - 0.5)
            if self.faults is not None:
                factor = self.faults.control_factor(unit_.id, t, self)
                if factor is not None:
                    level *= factor
            return level
        window = _find(self.production_windows(unit_.id, day), t)
        noise = 1.0 + 0.06 * (unit(unit_.key, ti) - 0.5)
        if window is None:
            return unit_.rated * unit_.standby * noise
        ramp = min(1.0, 0.3 + 0.7 * (t - max(window[0], resumed)) / unit_.ramp_s)
        slow = (
            1.0
            + 0.08 * math.sin(2 * math.pi * t / 2222.0 + unit_.phase1)
            + 0.05 * math.sin(2 * math.pi * t / 15_000.0 + unit_.phase2)
        )
        power = unit_.rated * unit_.load_factor * ramp * slow * noise
        if self.orders is not None:
            power = self.orders.production(
                unit_.id,
                unit_.enterprise_id,
                t,
                power=power,
                standby=unit_.rated * unit_.standby * noise,
                rated=unit_.rated,
            )
        return power

    def physical_power(self, point: PointSpec, t: float) -> float:
        """What the circuit of `point` draws at `t` (kW), before any meter fault."""
        resolved = self._resolve_point(point)
        if resolved is not None:
            unit_id, share = resolved
            return self.unit_power(self._units[unit_id], t) * share
        if point.point_type == "indirect":
            return self._indirect_power(point, t)
        return self._total_power(point, t)

    def _indirect_power(self, point: PointSpec, t: float) -> float:
        if self.faults is not None and not self.faults.powered(point.enterprise_id, t, self):
            return 0.0
        key = self._point_key(point.id)
        rated = point.rated_kw or uniform(key, 1, 5.0, 20.0)
        local = self.local.local(t)
        hour = (local % 86400) / 3600
        workday = self.local.weekday(int(local // 86400)) < 5
        level = 0.6 if workday and 8 <= hour < 18 else 0.15
        return rated * level * (1.0 + 0.1 * (unit(key, int(t)) - 0.5))

    def _total_power(self, point: PointSpec, t: float) -> float:
        enterprise_id = point.enterprise_id
        if self.faults is not None and not self.faults.powered(enterprise_id, t, self):
            return 0.0
        units = self.units_of_enterprise(enterprise_id)
        load = sum(self.unit_power(u, t) for u in units)
        rated_sum = sum(u.rated for u in units)
        totals = 0
        for other in self.fleet.points_of_enterprise(enterprise_id):
            if other.point_type == "indirect":
                load += self._indirect_power(other, t)
                rated_sum += other.rated_kw or 10.0
            elif other.point_type == "total":
                totals += 1
        key = key_of(self.seed, "base", enterprise_id)
        in_shift = _find(self.enterprise_windows(enterprise_id, self.local.day_index(t)), t)
        base = (rated_sum or 50.0) * uniform(key, 0, 0.04, 0.10)
        base *= (1.0 if in_shift else 0.4) * (1.0 + 0.1 * (unit(key, int(t)) - 0.5))
        return load / max(1, totals) + base

    # ----------------------------------------------------------------------- meter reading

    def sample(self, point: PointSpec, t: float) -> Sample:
        """The meter reading of `point` at `t`, meter faults (constant, reversed CT) applied.

        In a power cut every circuit reads nothing, voltages included (the data logger, on
        its UPS, goes on reporting). A meter behind current/voltage transformers reads the
        secondary side: power ÷ (CT × PT), currents ÷ CT, voltages ÷ PT."""
        primary = self.primary_sample(point, t)
        ct, pt = point.ct_ratio, point.pt_ratio
        if ct == 1.0 and pt == 1.0:
            return primary
        return Sample(
            primary.power / (ct * pt),
            primary.pf,
            primary.ia / ct,
            primary.ib / ct,
            primary.ic / ct,
            primary.ua / pt,
            primary.ub / pt,
            primary.uc / pt,
            primary.switch,
        )

    def primary_sample(self, point: PointSpec, t: float) -> Sample:
        """What flows in the circuit of `point` at `t` (before any transformer)."""
        if self.faults is not None and not self.faults.powered(point.enterprise_id, t, self):
            return Sample(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0)
        fault = self.faults.meter_fault(point.id, t, self) if self.faults is not None else None
        if fault is not None:
            kind, since = fault
            if kind is FaultKind.CONSTANT_POWER:
                return self._reading(point, since, self.physical_power(point, since))
            reading = self._reading(point, t, self.physical_power(point, t))
            return Sample(
                -reading.power,
                reading.pf,
                reading.ia,
                reading.ib,
                reading.ic,
                reading.ua,
                reading.ub,
                reading.uc,
                reading.switch,
            )
        return self._reading(point, t, self.physical_power(point, t))

    def _constants(self, point: PointSpec) -> _PointConsts:
        found = self._point_consts.get(point.id)
        if found is None:
            key = self._point_key(point.id)
            bus = key_of(self.seed, "bus", point.enterprise_id)
            found = _PointConsts(
                key,
                uniform(bus, 0, 220.0, 232.0),
                uniform(bus, 1, 0.0, 2 * math.pi),
                uniform(key, 1, -0.01, 0.01),
                uniform(key, 2, -0.01, 0.01),
                uniform(key, 3, 0.86, 0.95),
                uniform(key, 4, -0.03, 0.03),
                uniform(key, 5, -0.03, 0.03),
                point.rated_kw or self.rated_of(point),
            )
            self._point_consts[point.id] = found
        return found

    def _reading(self, point: PointSpec, t: float, power: float) -> Sample:
        key, v_nom, v_phase, off_b, off_c, pf_run, imb_a, imb_b, rated = self._constants(point)
        bits = mix(key ^ mix(int(t) + 0x5EED))
        n1 = ((bits & 0xFFFF) / 65535.0) - 0.5
        n2 = (((bits >> 16) & 0xFFFF) / 65535.0) - 0.5
        n3 = (((bits >> 32) & 0xFFFF) / 65535.0) - 0.5
        slow_v = 0.01 * math.sin(2 * math.pi * t / 5400.0 + v_phase)
        ua = v_nom * (1.0 + slow_v + 0.006 * n1)
        ub = v_nom * (1.0 + slow_v + 0.006 * n2 + off_b)
        uc = v_nom * (1.0 + slow_v + 0.006 * n3 + off_c)
        magnitude = abs(power)
        if magnitude < 1e-6:
            return Sample(
                0.0, 0.0, 0.0, 0.0, 0.0, ua, ub, uc, 1 if point.point_type == "total" else 0
            )
        light = 0.2 * rated
        pf = pf_run if magnitude >= light else pf_run * (0.55 + 0.45 * magnitude / light)
        current = magnitude * 1000.0 / (pf * (ua + ub + uc))
        switch = 1
        if point.point_type in ("production", "combined"):
            switch = 1 if magnitude >= max(0.2, 0.02 * rated) else 0
        return Sample(
            power,
            pf,
            current * (1.0 + imb_a),
            current * (1.0 + imb_b),
            current * (1.0 - imb_a - imb_b),
            ua,
            ub,
            uc,
            switch,
        )

    def rated_of(self, point: PointSpec) -> float:
        """Rated power of what `point` measures (kW)."""
        resolved = self._resolve_point(point)
        if resolved is not None:
            return self._units[resolved[0]].rated * resolved[1]
        if point.point_type == "indirect":
            return point.rated_kw or 10.0
        return sum(u.rated for u in self.units_of_enterprise(point.enterprise_id)) or 50.0
