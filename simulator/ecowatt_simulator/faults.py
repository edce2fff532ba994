"""Fault injection: which devices get which fault, when, and the ground truth of it.

Each fault kind has a share of the devices eligible for it (`FaultConfig`). The devices are
chosen deterministically from the seed: exactly `round(share × eligible)` of them (at least
one when the share is positive), preferring devices that have no fault yet so that faults do
not pile up on one device (`power_cut`, which takes a whole enterprise, prefers enterprises
none of whose devices has a fault). When a fault is active is a pure function of (seed,
target, local day), so ground truth can be computed for any period (`FaultPlan.events`).

Kinds (the effects and ground-truth records are tabled in `simulator/README.md`):

* on a control facility (a device with a control point in a control group, mode ALL or a
  single control facility): `control_off`, `late_start`, `early_stop`, `low_load`;
* on one point of the device (reading faults; consumption is unchanged): `negative_energy`,
  `meter_reset`, `constant_power`;
* on the device: `offline`, `modbus_crc`, `lowercase_crc`, `frames_2005`, `garbage`,
  `split_packets`, `wrong_password`, `clock_drift`;
* on the device's enterprise (every circuit of all its devices): `power_cut`.

Why one module of ~640 lines: the assignment of faults to devices and the windows in which
each is active are read together by the load model, the devices and the ground truth
(`events`), and each window is computed from the assignment's own seeded draws.
"""

from __future__ import annotations

import json
import math
import random
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ecowatt_simulator.fleet import DeviceSpec, Fleet, PointSpec
from ecowatt_simulator.kinds import FaultKind
from ecowatt_simulator.load import LoadModel
from ecowatt_simulator.rand import key_of, uniform, unit
from ecowatt_simulator.timebase import LocalTime

__all__ = ["FaultConfig", "FaultEvent", "FaultKind", "FaultPlan", "GroundTruth"]


CONTROL_FAULTS = frozenset(
    {FaultKind.CONTROL_OFF, FaultKind.LATE_START, FaultKind.EARLY_STOP, FaultKind.LOW_LOAD}
)
METER_FAULTS = frozenset(
    {FaultKind.NEGATIVE_ENERGY, FaultKind.METER_RESET, FaultKind.CONSTANT_POWER}
)
HOUR = 3600.0


@dataclass
class FaultConfig:
    """Share of eligible devices per fault kind, and the fault windows' parameters.

    `FaultConfig(shares={"control_off": 0.05, "garbage": 0.01})` or, from CLI flags,
    `FaultConfig.parse(["control_off=0.05", "garbage=0.01"])`. Durations are seconds of
    simulated time.
    """

    shares: Mapping[str, float] = field(default_factory=dict)
    seed: int | None = None
    """Seed of the assignment and the windows (default: the simulator's seed)."""
    control_off_s: tuple[float, float] = (1 * HOUR, 3 * HOUR)
    late_start_extra_s: tuple[float, float] = (20 * 60.0, 60 * 60.0)
    early_stop_extra_s: tuple[float, float] = (20 * 60.0, 60 * 60.0)
    low_load_s: tuple[float, float] = (2 * HOUR, 4 * HOUR)
    low_load_factor: tuple[float, float] = (0.12, 0.25)
    negative_energy_s: tuple[float, float] = (1 * HOUR, 2 * HOUR)
    meter_reset_after_s: tuple[float, float] = (0.5 * HOUR, 6 * HOUR)
    constant_power_s: tuple[float, float] = (5 * HOUR, 7 * HOUR)
    offline_s: tuple[float, float] = (30 * 60.0, 2 * HOUR)
    power_cut_s: tuple[float, float] = (30 * 60.0, 90 * 60.0)
    power_restart_s: tuple[float, float] = (10 * 60.0, 25 * 60.0)
    """After a power cut, control facilities restart this much later than production."""
    garbage_probability: float = 0.35
    split_segment_size: int = 300
    clock_offset_s: tuple[float, float] = (60.0, 300.0)
    clock_drift_s_per_hour: tuple[float, float] = (5.0, 30.0)
    showcase_from: float | None = None
    """UTC seconds: `control_off` goes first to facilities whose production runs then (and
    for 40 minutes more), and their window of that local day starts there instead of at its
    drawn time. A demonstration city (`make run`) then raises its first R1 alarms one confirmation
    period after it starts, whatever the hour."""

    def __post_init__(self) -> None:
        shares: dict[str, float] = {}
        for name, share in self.shares.items():
            kind = FaultKind(name)  # ValueError names an unknown kind
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"share of {name} must be within 0..1, got {share}")
            shares[kind.value] = float(share)
        self.shares = shares

    @classmethod
    def parse(cls, flags: Iterable[str], **options: Any) -> FaultConfig:
        """From `kind=share` strings (`control_off=0.05`); `all=0.02` sets every kind."""
        shares: dict[str, float] = {}
        for flag in flags:
            name, sep, value = flag.partition("=")
            if not sep:
                raise ValueError(f"fault {flag!r}: use kind=share, e.g. control_off=0.05")
            if name.strip() == "all":
                for kind in FaultKind:
                    shares[kind.value] = float(value)
            else:
                shares[FaultKind(name.strip()).value] = float(value)
        return cls(shares=shares, **options)

    def share(self, kind: FaultKind) -> float:
        return self.shares.get(kind.value, 0.0)


@dataclass(frozen=True, slots=True)
class FaultEvent:
    """One fault occurrence: which device/point/facility, from when to when (UTC seconds)."""

    kind: str
    mn: str
    start: float
    end: float
    enterprise_id: str | None = None
    facility_id: str | None = None
    point_ids: tuple[str, ...] = ()
    circuits: tuple[int, ...] = ()
    detail: Mapping[str, Any] = field(default_factory=dict)

    def overlaps(self, start: float, end: float) -> bool:
        return self.start < end and start < self.end

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["start_iso"] = datetime.fromtimestamp(self.start, UTC).isoformat()
        data["end_iso"] = datetime.fromtimestamp(self.end, UTC).isoformat()
        data["detail"] = dict(self.detail)
        return data


@dataclass
class GroundTruth:
    """Which device got which fault when, over a simulated period."""

    start: float
    end: float
    assignments: dict[str, list[str]]
    """Fault kinds by MN (devices without a fault are absent)."""
    events: list[FaultEvent]

    def devices_with(self, kind: FaultKind | str) -> set[str]:
        return {mn for mn, kinds in self.assignments.items() if str(kind) in kinds}

    def of_kind(self, kind: FaultKind | str) -> list[FaultEvent]:
        return [e for e in self.events if e.kind == str(kind)]

    def of_device(self, mn: str) -> list[FaultEvent]:
        return [e for e in self.events if e.mn == mn]

    def to_json(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "assignments": self.assignments,
            "events": [e.to_json() for e in self.events],
        }

    def write(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), ensure_ascii=False, indent=1))


@dataclass(frozen=True, slots=True)
class _Target:
    kind: FaultKind
    mn: str
    facility_id: str | None = None
    point: PointSpec | None = None


class FaultPlan:
    """Assignment of faults to devices and the pure functions that say when they are active."""

    def __init__(
        self,
        fleet: Fleet,
        config: FaultConfig | None,
        *,
        seed: int,
        local: LocalTime | None = None,
    ) -> None:
        self.config = config or FaultConfig()
        self.seed = self.config.seed if self.config.seed is not None else seed
        self.fleet = fleet
        self._model_seed = seed  # the load model's (for `showcase_from`)
        self._local = local
        self.anchor = 0.0
        """Start of the simulated period (set by the simulator; meter resets follow it)."""
        self._targets: dict[str, list[_Target]] = defaultdict(list)
        self._by_facility: dict[str, dict[FaultKind, _Target]] = defaultdict(dict)
        self._by_point: dict[str, dict[FaultKind, _Target]] = defaultdict(dict)
        self._by_enterprise: dict[str, dict[FaultKind, _Target]] = defaultdict(dict)
        self._window_cache: dict[tuple[FaultKind, str, int], tuple[float, float] | None] = {}
        self._assign()

    # ------------------------------------------------------------------------ assignment

    def _eligible_control_facilities(self, device: DeviceSpec) -> list[str]:
        found: list[str] = []
        for point in device.points:
            if point.point_type != "control" or not point.facility_id:
                continue
            for group in self.fleet.groups_of_enterprise(point.enterprise_id):
                if point.facility_id in group.control_ids and (
                    group.mode == "all" or len(group.control_ids) == 1
                ):
                    if point.facility_id not in found:
                        found.append(point.facility_id)
                    break
        return found

    def _eligible(self, kind: FaultKind, device: DeviceSpec) -> bool:
        if kind in CONTROL_FAULTS:
            return bool(self._eligible_control_facilities(device))
        if kind in METER_FAULTS:
            return bool(device.points)
        if kind is FaultKind.MODBUS_CRC:
            return device.crc_variant == "standard"
        if kind is FaultKind.FRAMES_2005:
            return device.protocol_version != "2005"
        if kind is FaultKind.POWER_CUT:  # one device stands for its enterprise
            if not device.enterprise_id:
                return False
            mns = {p.device_mn for p in self.fleet.points_of_enterprise(device.enterprise_id)} | {
                device.mn
            }
            return device.mn == min(m for m in mns if m)
        return True

    def _assign(self) -> None:
        faulted: dict[str, int] = defaultdict(int)
        for kind in FaultKind:
            share = self.config.share(kind)
            if share <= 0:
                continue
            eligible = [
                d for mn, d in sorted(self.fleet.devices.items()) if self._eligible(kind, d)
            ]
            if not eligible:
                continue
            count = min(len(eligible), max(1, round(share * len(eligible))))
            key = key_of(self.seed, "assign", kind.value)

            def load(device: DeviceSpec, kind: FaultKind = kind) -> int:
                if kind is not FaultKind.POWER_CUT:
                    return faulted[device.mn]
                # an enterprise-wide fault prefers enterprises none of whose devices has one
                # (only devices with an enterprise are eligible: `_eligible`)
                owner = device.enterprise_id
                points = self.fleet.points_of_enterprise(owner) if owner is not None else []
                mns = {p.device_mn for p in points}
                return sum(faulted[m] for m in mns | {device.mn} if m)

            showcased = self._showcased() if kind is FaultKind.CONTROL_OFF else None

            def showcase_rank(device: DeviceSpec, showcased: set[str] | None = showcased) -> int:
                if showcased is None:
                    return 0
                return 0 if showcased & set(self._eligible_control_facilities(device)) else 1

            eligible.sort(key=lambda d: (showcase_rank(d), load(d), unit(key, key_of(d.mn))))
            for device in eligible[:count]:
                faulted[device.mn] += 1
                rng = random.Random(key_of(self.seed, kind.value, device.mn))
                target = _Target(kind, device.mn)
                if kind in CONTROL_FAULTS:
                    candidates = self._eligible_control_facilities(device)
                    if showcased is not None and showcased & set(candidates):
                        candidates = [f for f in candidates if f in showcased]
                    fid = rng.choice(candidates)
                    target = _Target(kind, device.mn, facility_id=fid)
                    self._by_facility[fid][kind] = target
                elif kind in METER_FAULTS:
                    point = rng.choice(list(device.points))
                    target = _Target(kind, device.mn, facility_id=point.facility_id, point=point)
                    self._by_point[point.id][kind] = target
                elif kind is FaultKind.POWER_CUT and device.enterprise_id:
                    self._by_enterprise[device.enterprise_id][kind] = target
                self._targets[device.mn].append(target)

    def _showcased(self) -> set[str] | None:
        """Control facilities whose production runs at `showcase_from` for 40 minutes more
        (None without a showcase): `control_off` goes to them first."""
        at = self.config.showcase_from
        if at is None:
            return None
        model = LoadModel(self.fleet, seed=self._model_seed, local=self._local)
        day = model.local.day_index(at)
        return {
            fid
            for device in self.fleet.devices.values()
            for fid in self._eligible_control_facilities(device)
            if any(s <= at and e - at >= 2400 for s, e in model.group_production_windows(fid, day))
        }

    # --------------------------------------------------------------------------- queries

    def kinds_of(self, mn: str) -> set[FaultKind]:
        return {t.kind for t in self._targets.get(mn, ())}

    def has(self, mn: str, kind: FaultKind) -> bool:
        return any(t.kind is kind for t in self._targets.get(mn, ()))

    def assignments(self) -> dict[str, list[str]]:
        return {
            mn: sorted(t.kind.value for t in targets)
            for mn, targets in sorted(self._targets.items())
            if mn in self.fleet.devices
        }

    def facility_faults(self, facility_id: str) -> Mapping[FaultKind, _Target]:
        return self._by_facility.get(facility_id, {})

    def point_faults(self, point_id: str) -> Mapping[FaultKind, _Target]:
        return self._by_point.get(point_id, {})

    # ------------------------------------------------------------- persistent schedule faults

    def start_delay(self, control_id: str, production_start: float) -> float | None:
        """Seconds the control facility starts after production (late_start), else None."""
        target = self._by_facility.get(control_id, {}).get(FaultKind.LATE_START)
        if target is None:
            return None
        key = key_of(self.seed, "late", control_id)
        extra = uniform(key, int(production_start), *self.config.late_start_extra_s)
        return self._lead_min(control_id, "start") * 60.0 + extra

    def stop_advance(self, control_id: str, production_stop: float) -> float | None:
        """Seconds the control facility stops before production (early_stop), else None."""
        target = self._by_facility.get(control_id, {}).get(FaultKind.EARLY_STOP)
        if target is None:
            return None
        key = key_of(self.seed, "early", control_id)
        extra = uniform(key, int(production_stop), *self.config.early_stop_extra_s)
        return self._lead_min(control_id, "stop") * 60.0 + extra

    def _lead_min(self, control_id: str, which: str) -> int:
        tolerances = [
            g.start_lead_min if which == "start" else g.stop_lag_min
            for g in self.fleet.groups.values()
            if control_id in g.control_ids
        ]
        return max(tolerances, default=5)

    # ------------------------------------------------------------------ daily fault windows

    def control_factor(self, control_id: str, t: float, model: LoadModel) -> float | None:
        """0 inside a control_off window, the low-load factor inside a low_load window."""
        faults = self._by_facility.get(control_id)
        if not faults:
            return None
        day = model.local.day_index(t)
        if FaultKind.CONTROL_OFF in faults:
            window = self._daily_window(FaultKind.CONTROL_OFF, control_id, day, model)
            if window and window[0] <= t < window[1]:
                return 0.0
        if FaultKind.LOW_LOAD in faults:
            window = self._daily_window(FaultKind.LOW_LOAD, control_id, day, model)
            if window and window[0] <= t < window[1]:
                return uniform(
                    key_of(self.seed, "lowf", control_id), day, *self.config.low_load_factor
                )
        return None

    def meter_fault(
        self, point_id: str, t: float, model: LoadModel
    ) -> tuple[FaultKind, float] | None:
        """(constant_power, frozen-at time) or (negative_energy, window start) at `t`."""
        faults = self._by_point.get(point_id)
        if not faults:
            return None
        day = model.local.day_index(t)
        for kind in (FaultKind.CONSTANT_POWER, FaultKind.NEGATIVE_ENERGY):
            if kind in faults:
                window = self._daily_window(kind, point_id, day, model)
                if window and window[0] <= t < window[1]:
                    return kind, window[0]
                if kind is FaultKind.CONSTANT_POWER:  # a frozen value may outlast midnight
                    prev = self._daily_window(kind, point_id, day - 1, model)
                    if prev and prev[0] <= t < prev[1]:
                        return kind, prev[0]
        return None

    def meter_reset_at(self, point_id: str) -> float | None:
        if FaultKind.METER_RESET not in self._by_point.get(point_id, {}):
            return None
        after = uniform(key_of(self.seed, "reset", point_id), 0, *self.config.meter_reset_after_s)
        return float(int(self.anchor + after))

    def power_cut(
        self, enterprise_id: str, t: float, model: LoadModel
    ) -> tuple[float, float, float] | None:
        """(cut start, power back, control restart) of the enterprise's latest power cut
        that began at or before `t` (today's or yesterday's), else None."""
        faults = self._by_enterprise.get(enterprise_id)
        if not faults or FaultKind.POWER_CUT not in faults:
            return None
        day = model.local.day_index(t)
        for d in (day, day - 1):
            window = self._daily_window(FaultKind.POWER_CUT, enterprise_id, d, model)
            if window and window[0] <= t:
                return window[0], window[1], window[1] + self.restart_delay(enterprise_id, d)
        return None

    def powered(self, enterprise_id: str, t: float, model: LoadModel) -> bool:
        """False inside a power cut of the enterprise."""
        cut = self.power_cut(enterprise_id, t, model)
        return cut is None or t >= cut[1]

    def restart_delay(self, enterprise_id: str, day: int) -> float:
        """Seconds after the power returns that control facilities start again."""
        return uniform(
            key_of(self.seed, "restart", enterprise_id), day, *self.config.power_restart_s
        )

    def offline_window(self, mn: str, day: int, model: LoadModel) -> tuple[float, float] | None:
        if not self.has(mn, FaultKind.OFFLINE):
            return None
        return self._daily_window(FaultKind.OFFLINE, mn, day, model)

    def offline_at(self, mn: str, t: float, model: LoadModel) -> tuple[float, float] | None:
        """The offline window containing `t`, if any."""
        if not self.has(mn, FaultKind.OFFLINE):
            return None
        day = model.local.day_index(t)
        for d in (day - 1, day):
            window = self._daily_window(FaultKind.OFFLINE, mn, d, model)
            if window and window[0] <= t < window[1]:
                return window
        return None

    def _daily_window(
        self, kind: FaultKind, subject: str, day: int, model: LoadModel
    ) -> tuple[float, float] | None:
        cache_key = (kind, subject, day)
        if cache_key in self._window_cache:
            return self._window_cache[cache_key]
        window = self._compute_window(kind, subject, day, model)
        if len(self._window_cache) > 200_000:
            self._window_cache.clear()
        self._window_cache[cache_key] = window
        return window

    def _compute_window(
        self, kind: FaultKind, subject: str, day: int, model: LoadModel
    ) -> tuple[float, float] | None:
        config = self.config
        key = key_of(self.seed, kind.value, subject)
        day_start, day_end = model.local.day_bounds(day)
        if kind is FaultKind.OFFLINE:
            start = day_start + uniform(key, day, 1 * HOUR, 20 * HOUR)
            return start, start + uniform(key, day + 7, *config.offline_s)
        durations = {
            FaultKind.CONTROL_OFF: config.control_off_s,
            FaultKind.LOW_LOAD: config.low_load_s,
            FaultKind.CONSTANT_POWER: config.constant_power_s,
            FaultKind.NEGATIVE_ENERGY: config.negative_energy_s,
            FaultKind.POWER_CUT: config.power_cut_s,
        }[kind]
        if kind in CONTROL_FAULTS:
            pieces = model.group_production_windows(subject, day)
        elif kind is FaultKind.POWER_CUT:
            pieces = model.enterprise_windows(subject, day)
        else:
            pieces = model.point_running_windows(subject, day)
        pieces = [(max(s, day_start), min(e, day_end)) for s, e in pieces]
        pieces = [(s, e) for s, e in pieces if e - s >= 1800]
        if not pieces:
            return None
        length = uniform(key, day + 7, *durations)
        showcase = config.showcase_from
        if (
            kind is FaultKind.CONTROL_OFF
            and showcase is not None
            and model.local.day_index(showcase) == day
        ):
            for s, e in pieces:
                if s <= showcase and e - showcase >= 2400:
                    return float(int(showcase)), float(int(min(showcase + length, e - 60)))
        s, e = max(pieces, key=lambda p: (p[1] - p[0], -p[0]))
        start = s + (e - s) * uniform(key, day, 0.1, 0.4)
        if kind is FaultKind.CONSTANT_POWER:
            return float(int(start)), float(int(start + length))  # the frozen value may outlast e
        end = min(start + length, e - 60)
        if end - start < 600:
            return None
        return float(int(start)), float(int(end))

    # ------------------------------------------------------------------------ ground truth

    def events(self, start: float, end: float, model: LoadModel) -> list[FaultEvent]:
        """Every fault occurrence overlapping [start, end), clipped to it."""
        out: list[FaultEvent] = []
        first_day = model.local.day_index(start) - 1
        last_day = model.local.day_index(end)
        for mn, targets in sorted(self._targets.items()):
            device = self.fleet.devices.get(mn)
            if device is None:
                continue
            for target in targets:
                out.extend(self._events_of(target, device, start, end, first_day, last_day, model))
        out.sort(key=lambda e: (e.start, e.mn, e.kind))
        return out

    def _events_of(
        self,
        target: _Target,
        device: DeviceSpec,
        start: float,
        end: float,
        first_day: int,
        last_day: int,
        model: LoadModel,
    ) -> Iterable[FaultEvent]:
        kind = target.kind
        base: dict[str, Any] = {
            "kind": kind.value,
            "mn": device.mn,
            "enterprise_id": device.enterprise_id,
        }
        if target.facility_id and kind in CONTROL_FAULTS:
            points = self.fleet.points_of_facility(target.facility_id)
            base.update(
                facility_id=target.facility_id,
                point_ids=tuple(p.id for p in points),
                circuits=tuple(p.circuit for p in points if p.device_mn == device.mn),
            )
        elif target.point is not None:
            base.update(
                facility_id=target.point.facility_id,
                point_ids=(target.point.id,),
                circuits=(target.point.circuit,),
            )

        def clipped(s: float, e: float, **detail: Any) -> FaultEvent | None:
            if e <= start or s >= end:
                return None
            return FaultEvent(start=max(s, start), end=min(e, end), detail=detail, **base)

        results: list[FaultEvent | None] = []
        if kind in (FaultKind.CONTROL_OFF, FaultKind.LOW_LOAD) and target.facility_id:
            for day in range(first_day, last_day + 1):
                window = self._daily_window(kind, target.facility_id, day, model)
                if window:
                    detail: dict[str, Any] = {"window_start": window[0], "window_end": window[1]}
                    if kind is FaultKind.LOW_LOAD:
                        detail["factor"] = uniform(
                            key_of(self.seed, "lowf", target.facility_id),
                            day,
                            *self.config.low_load_factor,
                        )
                    results.append(clipped(*window, **detail))
        elif kind in (FaultKind.LATE_START, FaultKind.EARLY_STOP) and target.facility_id:
            fid = target.facility_id
            for prod_start, prod_stop in model.group_production_events(fid, start, end):
                if kind is FaultKind.LATE_START and prod_start is not None:
                    delay = self.start_delay(fid, prod_start) or 0.0
                    results.append(
                        clipped(
                            prod_start,
                            prod_start + delay,
                            production_start=prod_start,
                            delay_s=delay,
                        )
                    )
                if kind is FaultKind.EARLY_STOP and prod_stop is not None:
                    advance = self.stop_advance(fid, prod_stop) or 0.0
                    results.append(
                        clipped(
                            prod_stop - advance,
                            prod_stop,
                            production_stop=prod_stop,
                            advance_s=advance,
                        )
                    )
        elif kind in (FaultKind.CONSTANT_POWER, FaultKind.NEGATIVE_ENERGY) and target.point:
            for day in range(first_day, last_day + 1):
                window = self._daily_window(kind, target.point.id, day, model)
                if window:
                    results.append(clipped(*window))
        elif kind is FaultKind.METER_RESET and target.point:
            at = self.meter_reset_at(target.point.id)
            if at is not None:
                results.append(clipped(at, at + 1.0, reset_at=at))
        elif kind is FaultKind.OFFLINE:
            for day in range(first_day, last_day + 1):
                window = self._daily_window(kind, device.mn, day, model)
                if window:
                    results.append(clipped(*window))
        elif kind is FaultKind.POWER_CUT and device.enterprise_id:
            eid = device.enterprise_id
            points = self.fleet.points_of_enterprise(eid)
            base.update(
                point_ids=tuple(p.id for p in points),
                circuits=tuple(p.circuit for p in points if p.device_mn == device.mn),
            )
            for day in range(first_day, last_day + 1):
                window = self._daily_window(kind, eid, day, model)
                if window:
                    delay = self.restart_delay(eid, day)
                    results.append(
                        clipped(
                            *window,
                            devices=sorted({p.device_mn for p in points if p.device_mn}),
                            control_restart_s=delay,
                            control_restart_at=window[1] + delay,
                        )
                    )
        else:
            detail = {}
            if kind is FaultKind.MODBUS_CRC:
                detail["variant"] = self.modbus_variant(device.mn)
            elif kind is FaultKind.CLOCK_DRIFT:
                offset, rate = self.clock_drift(device.mn)
                detail.update(initial_offset_s=offset, drift_s_per_hour=rate)
            results.append(clipped(start, end, **detail))
        return [r for r in results if r is not None]

    # ------------------------------------------------------------------- device-level knobs

    def modbus_variant(self, mn: str) -> str:
        return "modbus_hi_lo" if unit(key_of(self.seed, "modbus", mn), 0) < 0.5 else "modbus_lo_hi"

    def clock_drift(self, mn: str) -> tuple[float, float]:
        """Initial clock offset (s) and drift (s per hour) of a clock_drift device."""
        key = key_of(self.seed, "drift", mn)
        sign = 1.0 if unit(key, 0) < 0.5 else -1.0
        offset = sign * uniform(key, 1, *self.config.clock_offset_s)
        rate = sign * uniform(key, 2, *self.config.clock_drift_s_per_hour)
        return math.floor(offset), rate

    def wrong_password(self, mn: str, real: str) -> str:
        value = int(unit(key_of(self.seed, "pw", mn), 0) * 1_000_000)
        pw = f"{value:06d}"
        return pw if pw != real else f"{(value + 1) % 1_000_000:06d}"
