"""A small synthetic city with injected faults and ground truth, for the alarm tests, the
worked-example charts of docs/alarm-rules.md and `make bench-alarm` (kept out of the alarm
package: the code that states what is true does not live in the code it judges).

This is the alarm service's own stand-in for the device simulator + ingest + validation
pipeline: it produces the registry snapshots and the `PointReading` stream that pipeline
would produce, and says what the alarm service should conclude. Tests are written against
the `CitySource` interface, so they can be re-pointed at the real pipeline after the merge:

- `registry_changes()` — archive snapshots to publish on `registry.changes`;
- `readings()` — `PointReading`s in data-time order (what `telemetry.points` would carry);
- `filings()` / `control_tasks()` — planned-outage filings to file and approve, stop orders;
- `ground_truth()` — `ExpectedAlarm(rule_code, subject_id, start, end, suppressed)`: the
  subject is the control group for R1–R6 (R4: the group, one per local day), the total-line
  point for R7 and the device MN for OFFLINE;
- `quiet_enterprises()` — enterprises that must raise no unsuppressed alarm (healthy, planned
  outage, power cut);
- `facility_truth()` — the true state of every facility minute by minute.

Every enterprise has one production facility (100 kW), one control facility (30 kW; low-load
threshold 9 kW, start/stop 3 kW by default), an incoming line (200 kW rated), one control
group (ALL, start lead 10 min, stop lag 10 min) and two devices: `…-A` (total line and
production) and `…-B` (control). Production normally runs 18:00–23:30 local time and the
control facility 17:57–23:33; the stream covers 17:00 to 00:20 the next day, one sample a
minute.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from ecowatt_kernel.contracts import (
    Contact,
    ControlGroupSnapshot,
    ControlTaskChanged,
    DeviceSnapshot,
    EnterpriseSnapshot,
    FacilitySnapshot,
    PointReading,
    PointSnapshot,
    RegistryChange,
    Snapshot,
)

__all__ = ["CitySource", "ExpectedAlarm", "Filing", "SyntheticCity"]

TZ = ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True)
class ExpectedAlarm:
    rule_code: str
    subject_id: str
    start: datetime
    end: datetime
    suppressed: bool = False


@dataclass(frozen=True)
class Filing:
    enterprise_id: str
    facility_ids: tuple[str, ...]
    start: datetime
    end: datetime
    reason: str


class CitySource(Protocol):
    def registry_changes(self) -> list[RegistryChange]: ...
    def readings(self) -> Iterator[PointReading]: ...
    def filings(self) -> list[Filing]: ...
    def control_tasks(self) -> list[ControlTaskChanged]: ...
    def ground_truth(self) -> list[ExpectedAlarm]: ...
    def quiet_enterprises(self) -> list[str]: ...
    def facility_truth(self) -> dict[str, list[tuple[datetime, str]]]: ...


@dataclass
class _Ent:
    id: str
    scenario: str
    district: str
    # minute offsets from 17:00 → values
    prod_on: tuple[int, int] = (60, 390)  # 18:00–23:30
    ctrl_on: tuple[int, int] = (57, 393)
    ctrl_off: list[tuple[int, int]] = field(default_factory=list)
    ctrl_low: list[tuple[int, int]] = field(default_factory=list)
    silent_b: list[tuple[int, int]] = field(default_factory=list)
    silent_all: list[tuple[int, int]] = field(default_factory=list)
    cut: list[tuple[int, int]] = field(default_factory=list)
    total_extra: list[tuple[int, int]] = field(default_factory=list)
    plant_stop: list[tuple[int, int]] = field(default_factory=list)
    expected: list[tuple[str, str, int, int, bool]] = field(default_factory=list)
    filings: list[tuple[str, int, int]] = field(default_factory=list)  # (scope, start, end)
    stop_order: tuple[int, int] | None = None

    @property
    def group(self) -> str:
        return f"{self.id}-G"

    @property
    def pf(self) -> str:
        return f"{self.id}-PF"

    @property
    def cf(self) -> str:
        return f"{self.id}-CF"


def _inside(minute: int, spans: list[tuple[int, int]]) -> bool:
    return any(a <= minute < b for a, b in spans)


SCENARIOS: dict[str, dict[str, Any]] = {
    "healthy": {},
    "r1_pos": {
        "ctrl_off": [(120, 245)],
        "expected": [("R1", "G", 120, 245, False), ("R4", "G", 60, 390, False)],
    },
    "r1_neg": {"ctrl_off": [(120, 130)]},
    "r1_sup": {
        "ctrl_off": [(120, 245)],
        "stop_order": (90, 300),
        "expected": [("R1", "G", 120, 245, True), ("R4", "G", 60, 390, True)],
    },
    "r2_pos": {
        "ctrl_on": (85, 393),
        "expected": [("R2", "G", 60, 85, False), ("R4", "G", 60, 390, False)],
    },
    "r2_neg": {"ctrl_on": (68, 393)},
    "r2_sup": {
        "ctrl_on": (85, 393),
        "filings": [("CF", 30, 100)],
        "expected": [("R2", "G", 60, 85, True), ("R4", "G", 60, 390, True)],
    },
    "r3_pos": {
        "ctrl_on": (57, 365),
        "expected": [("R3", "G", 365, 390, False), ("R4", "G", 60, 390, False)],
    },
    "r3_neg": {"ctrl_on": (57, 385)},
    "r3_sup": {
        "ctrl_on": (57, 365),
        "filings": [("ALL", 345, 405)],
        "expected": [("R3", "G", 365, 390, True), ("R4", "G", 60, 390, True)],
    },
    "r4_pos": {
        "ctrl_off": [(120, 140), (180, 200), (240, 260)],
        "expected": [("R4", "G", 60, 390, False)],
    },
    "r4_neg": {"ctrl_off": [(120, 125), (180, 185)]},
    "r4_sup": {
        "ctrl_off": [(120, 140), (180, 200), (240, 260)],
        "filings": [("CF", 120, 150)],
        "expected": [("R4", "G", 60, 390, True)],
    },
    "r5_pos": {"ctrl_low": [(120, 240)], "expected": [("R5", "G", 120, 240, False)]},
    "r5_neg": {"ctrl_low": [(120, 160)]},
    "r5_sup": {
        "ctrl_low": [(120, 240)],
        "filings": [("CF", 90, 270)],
        "expected": [("R5", "G", 120, 240, True)],
    },
    "r6_pos": {"silent_b": [(120, 210)], "expected": [("R6", "G", 120, 210, False)]},
    "r6_neg": {"silent_b": [(120, 150)]},
    "r6_sup": {
        "silent_b": [(120, 210)],
        "filings": [("CF", 105, 240)],
        "expected": [("R6", "G", 120, 210, True)],
    },
    "r7_pos": {
        "prod_on": (0, 0),
        "ctrl_on": (0, 0),
        "total_extra": [(120, 240)],
        "expected": [("R7", "T", 120, 240, False)],
    },
    "r7_neg": {"prod_on": (0, 0), "ctrl_on": (0, 0), "total_extra": [(120, 160)]},
    "r7_sup": {
        "prod_on": (0, 0),
        "ctrl_on": (0, 0),
        "total_extra": [(120, 240)],
        "filings": [("ALL", 90, 270)],
        "expected": [("R7", "T", 120, 240, True)],
    },
    "offline_pos": {
        "silent_all": [(180, 10_000)],
        "expected": [("OFFLINE", "A", 180, 450, False), ("OFFLINE", "B", 180, 450, False)],
    },
    "offline_sup": {
        "silent_all": [(180, 10_000)],
        "filings": [("ALL", 150, 1440)],
        "expected": [("OFFLINE", "A", 180, 450, True), ("OFFLINE", "B", 180, 450, True)],
    },
    # One episode, one alarm: R1 is the alarm, the late start / early stop / the control
    # point going offline afterwards are facets of it.
    "r2_long": {
        "ctrl_on": (110, 393),
        "expected": [("R1", "G", 60, 110, False), ("R4", "G", 60, 390, False)],
    },
    "r3_long": {
        "ctrl_on": (57, 340),
        "expected": [("R1", "G", 340, 390, False), ("R4", "G", 60, 390, False)],
    },
    "r1_offline": {
        "ctrl_off": [(120, 200)],
        "silent_b": [(200, 280)],
        "expected": [("R1", "G", 120, 280, False), ("R4", "G", 60, 390, False)],
    },
    "planned_outage": {"plant_stop": [(120, 300)], "filings": [("ALL", 110, 310)]},
    "power_cut": {
        "cut": [(180, 240)],
        "ctrl_on": (57, 393),
        "ctrl_off": [(240, 260)],
        "expected": [("R2", "G", 240, 260, True), ("R4", "G", 60, 390, True)],
    },
}
QUIET = ("healthy", "planned_outage", "power_cut")


class SyntheticCity:
    """The scenario city (`scenarios` names from SCENARIOS; repeats allowed)."""

    MINUTES = 440  # 17:00 → 00:20

    def __init__(
        self,
        prefix: str,
        day: date,
        *,
        scenarios: list[str] | None = None,
        healthy: int = 2,
        seed: int = 7,
        districts: tuple[str, ...] = ("610113", "610102"),
    ) -> None:
        self.prefix = prefix
        self.start = datetime(day.year, day.month, day.day, 17, 0, tzinfo=TZ).astimezone(UTC)
        names = scenarios if scenarios is not None else [s for s in SCENARIOS if s != "healthy"]
        names = ["healthy"] * healthy + names
        self.rng = random.Random(seed)
        self.enterprises: list[_Ent] = []
        for i, name in enumerate(names):
            spec = dict(SCENARIOS[name])
            ent = _Ent(id=f"{prefix}-{name}-{i}", scenario=name, district=districts[i % 2])
            for key, value in spec.items():
                setattr(ent, key, value)
            self.enterprises.append(ent)

    @property
    def end(self) -> datetime:
        return self.at(self.MINUTES)

    def at(self, minute: int) -> datetime:
        return self.start + timedelta(minutes=minute)

    def enterprise(self, scenario: str) -> _Ent:
        return next(e for e in self.enterprises if e.scenario == scenario)

    # ---------------------------------------------------------------------------- archive

    def snapshots(self) -> list[tuple[str, Snapshot]]:
        now = self.start
        out: list[tuple[str, Snapshot]] = []
        for e in self.enterprises:
            out.append(
                (
                    "enterprise",
                    EnterpriseSnapshot(
                        id=e.id,
                        updated_at=now,
                        name=f"合成企业{e.id[-6:]}",
                        district_code=e.district,
                        zone="高新区",
                        industry_code="3311",
                        contacts=(Contact(name="张环保", phone="13800000000", role="环保负责人"),),
                    ),
                )
            )
            out.append(
                (
                    "facility",
                    FacilitySnapshot(
                        id=e.pf,
                        updated_at=now,
                        enterprise_id=e.id,
                        kind="production",
                        name="生产线1",
                        rated_kw=100,
                    ),
                )
            )
            out.append(
                (
                    "facility",
                    FacilitySnapshot(
                        id=e.cf,
                        updated_at=now,
                        enterprise_id=e.id,
                        kind="control",
                        name="除尘器1",
                        rated_kw=30,
                    ),
                )
            )
            out.append(
                (
                    "control_group",
                    ControlGroupSnapshot(
                        id=e.group,
                        updated_at=now,
                        enterprise_id=e.id,
                        name="1号治理线",
                        production_facility_ids=(e.pf,),
                        control_facility_ids=(e.cf,),
                        required_mode="all",
                        start_lead_min=10,
                        stop_lag_min=10,
                    ),
                )
            )
            for mn in (f"{e.id}-A", f"{e.id}-B"):
                out.append(
                    ("device", DeviceSnapshot(id=mn, mn=mn, updated_at=now, enterprise_id=e.id))
                )
            out.append(
                (
                    "point",
                    PointSnapshot(
                        id=f"{e.id}-T",
                        updated_at=now,
                        enterprise_id=e.id,
                        point_type="total",
                        name="总电",
                        device_mn=f"{e.id}-A",
                        circuit=1,
                        rated_kw=200,
                    ),
                )
            )
            out.append(
                (
                    "point",
                    PointSnapshot(
                        id=f"{e.id}-P",
                        updated_at=now,
                        enterprise_id=e.id,
                        facility_id=e.pf,
                        point_type="production",
                        name="生产线1主电机",
                        device_mn=f"{e.id}-A",
                        circuit=2,
                        rated_kw=100,
                    ),
                )
            )
            out.append(
                (
                    "point",
                    PointSnapshot(
                        id=f"{e.id}-C",
                        updated_at=now,
                        enterprise_id=e.id,
                        facility_id=e.cf,
                        point_type="control",
                        name="除尘风机",
                        device_mn=f"{e.id}-B",
                        circuit=1,
                        rated_kw=30,
                    ),
                )
            )
        return out

    def registry_changes(self) -> list[RegistryChange]:
        return [
            RegistryChange(
                entity=entity,
                entity_id=snap.id,
                operation="upsert",
                revision=1,
                changed_at=self.start,
                snapshot=snap.model_dump(mode="json"),
            )
            for entity, snap in self.snapshots()
        ]

    def filings(self) -> list[Filing]:
        out = []
        for e in self.enterprises:
            for scope, a, b in e.filings:
                facilities = () if scope == "ALL" else ((e.cf,) if scope == "CF" else (e.pf,))
                out.append(Filing(e.id, facilities, self.at(a), self.at(b), "计划检修"))
        return out

    def control_tasks(self) -> list[ControlTaskChanged]:
        return [
            ControlTaskChanged(
                task_id=f"{e.id}-TASK",
                alert_id=f"{self.prefix}-ALERT",
                enterprise_id=e.id,
                change="issued",
                valid_from=self.at(e.stop_order[0]),
                valid_to=self.at(e.stop_order[1]),
                measures=[{"action": "STOP", "target_kind": "facility", "target_ids": [e.pf]}],
            )
            for e in self.enterprises
            if e.stop_order
        ]

    # ----------------------------------------------------------------------------- truth

    def _truth(self, e: _Ent, minute: int) -> tuple[str, str, float, float, float, bool, bool]:
        """(production state, control state, P_prod, P_ctrl, P_total, silent_A, silent_B)."""
        silent_all = _inside(minute, e.silent_all)
        silent_b = silent_all or _inside(minute, e.silent_b)
        if _inside(minute, e.cut):
            return "power_loss", "power_loss", 0.0, 0.0, 0.0, silent_all, silent_b
        stop = _inside(minute, e.plant_stop)
        prod = e.prod_on[0] <= minute < e.prod_on[1] and not stop
        ctrl = (
            e.ctrl_on[0] <= minute < e.ctrl_on[1] and not stop and not _inside(minute, e.ctrl_off)
        )
        if prod:
            p, ps = 80.0, "running"
        elif e.prod_on[0] - 30 <= minute < e.prod_on[1] + 30 and not stop:
            p, ps = 4.0, "standby"  # warming up / winding down
        else:
            p, ps = 0.0, "stopped"
        if ctrl and _inside(minute, e.ctrl_low):
            c, cs = 6.0, "low_load"
        elif ctrl:
            c, cs = 24.0, "running"
        else:
            c, cs = 0.0, "stopped"
        if silent_b:
            cs = "offline"
        if silent_all:
            ps = "offline"
        total = p + c + 5.0 + (55.0 if _inside(minute, e.total_extra) else 0.0)
        return ps, cs, p, c, total, silent_all, silent_b

    def facility_truth(self) -> dict[str, list[tuple[datetime, str]]]:
        out: dict[str, list[tuple[datetime, str]]] = {}
        for e in self.enterprises:
            prod, ctrl = [], []
            for m in range(self.MINUTES):
                ps, cs, *_ = self._truth(e, m)
                prod.append((self.at(m), ps))
                ctrl.append((self.at(m), cs))
            out[e.pf], out[e.cf] = prod, ctrl
        return out

    def ground_truth(self) -> list[ExpectedAlarm]:
        out = []
        for e in self.enterprises:
            for rule, subject, a, b, suppressed in e.expected:
                sid = {"G": e.group, "T": f"{e.id}-T", "A": f"{e.id}-A", "B": f"{e.id}-B"}[subject]
                out.append(ExpectedAlarm(rule, sid, self.at(a), self.at(b), suppressed))
        return out

    def quiet_enterprises(self) -> list[str]:
        return [e.id for e in self.enterprises if e.scenario in QUIET]

    # --------------------------------------------------------------------------- stream

    def readings(self) -> Iterator[PointReading]:
        for m in range(self.MINUTES):
            for e in self.enterprises:
                yield from self._minute(e, m)

    def _minute(self, e: _Ent, m: int) -> Iterator[PointReading]:
        _, _, p, c, total, silent_a, silent_b = self._truth(e, m)
        cut = _inside(m, e.cut)
        volts = 0.0 if cut else 228.0
        t = self.at(m) + timedelta(seconds=self.rng.randint(0, 5))
        jitter = self.rng.uniform

        def reading(pid: str, mn: str, circuit: int, kw: float) -> PointReading:
            kw = max(0.0, kw * jitter(0.96, 1.04)) if kw else 0.0
            return PointReading(
                enterprise_id=e.id,
                point_id=pid,
                mn=mn,
                cn="2011",
                circuit=circuit,
                data_time=t,
                values={
                    "active_power_kw": round(kw, 3),
                    "voltage_v:A": volts,
                    "energy_delta_kwh": round(kw / 60, 4),
                },
                source_key=f"{mn}|2011|{t.isoformat()}|{circuit}",
            )

        if not silent_a:
            yield reading(f"{e.id}-P", f"{e.id}-A", 2, p)
        if not silent_b:
            yield reading(f"{e.id}-C", f"{e.id}-B", 1, c)
        if not silent_a:
            yield reading(f"{e.id}-T", f"{e.id}-A", 1, total)
